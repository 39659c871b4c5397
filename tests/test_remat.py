"""Rematerialisation (models/remat.py) changes memory, not numbers: gradients and state updates with remat equal
those without, for a tiny SlowFast (BatchNorm in train mode, every granularity) and a tiny mBART (dropout on),
and parameter paths stay the same."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hypersign_jax.models import mbart, remat
from hypersign_jax.models import slowfast as sf

TINY_SF = sf.slowfast_tiny(width_per_group=8, blocks=(1, 2, 1, 1),
                           num_block_temp_kernel=((1, 1), (1, 1), (1, 1), (1, 1)), conv_impl='frames')
TINY_MBART = mbart.MBartConfig(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=2,
                               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                               decoder_ffn_dim=32, dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
                               max_position_embeddings=32)


FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _build(cls, cfg, state=None):
  """The model with the given state (same parameter paths), or freshly initialised in one fast-compiled program."""
  build = lambda: cls(cfg, rngs=nnx.Rngs(0))
  graphdef = nnx.graphdef(nnx.eval_shape(build))
  if state is None:
    state = jax.jit(lambda: nnx.state(build())).lower().compile(FAST)()
  return nnx.merge(graphdef, state, copy=True)


def _grads(model, loss_fn, *inputs):
  """(loss, grads, new non-parameter state, jaxpr text) of ``loss_fn(model, *inputs)`` wrt the parameters."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def f(params, rest, *inputs):
    m = nnx.merge(graphdef, params, rest, copy=True)
    loss = loss_fn(m, *inputs)
    return loss, nnx.state(m, nnx.Not(nnx.Param))

  traced = jax.jit(jax.value_and_grad(f, has_aux=True)).trace(params, rest, *inputs)
  (loss, new_rest), grads = traced.lower().compile(FAST)(params, rest, *inputs)
  is_key = lambda x: jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
  new_rest = jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, new_rest)
  return loss, grads, new_rest, str(traced.jaxpr)


def _paths(tree):
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _assert_trees_close(a, b, rtol, atol):
  assert _paths(a) == _paths(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind in 'iub':
      np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
    else:
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


# ------------------------------------------------------------------------------------------------------ SlowFast
@pytest.fixture(scope='module')
def slowfast_reference():
  video = jax.random.normal(jax.random.key(1), (2, 8, 32, 32, 3), jnp.float32)
  weights = jax.random.normal(jax.random.key(2), (2, 8, sum(TINY_SF.out_dims)), jnp.float32)
  model = _build(sf.SlowFast, TINY_SF)
  # Non-zero final-BN scales and fusion weights, so every branch carries gradient.
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param) and path[-1] in ('weight_s', 'weight_f'):
      var[...] = jnp.full(var.shape, 0.5, jnp.float32)
    if isinstance(var, nnx.Param) and len(path) > 1 and path[-2] == 'c_bn' and path[-1] == 'scale':
      var[...] = jnp.full(var.shape, 0.7, jnp.float32)
  state = nnx.state(model)

  def loss_fn(m, video):
    return jnp.sum(m(video)['fused'] * weights)

  def run(cfg):
    m = _build(sf.SlowFast, cfg, state)
    m.train()
    return _grads(m, loss_fn, video)

  return run, run(TINY_SF)


@pytest.mark.parametrize('mode,policy', [('block', ''), ('stage', 'dots_saveable')])
def test_slowfast_remat_gradients_equal(slowfast_reference, mode, policy):
  run, (loss0, grads0, state0, jaxpr0) = slowfast_reference
  loss, grads, state, jaxpr = run(dataclasses.replace(TINY_SF, remat=mode, remat_policy=policy))
  assert 'remat' in jaxpr and 'remat' not in jaxpr0  # remat really is (and was not) in the program
  assert float(loss) == pytest.approx(float(loss0), rel=1e-6)
  _assert_trees_close(grads, grads0, rtol=1e-5, atol=1e-6)
  _assert_trees_close(state, state0, rtol=1e-6, atol=1e-7)  # BatchNorm running statistics
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads0))


def test_remat_keeps_parameter_paths():
  plain = nnx.eval_shape(lambda: sf.SlowFast(TINY_SF, rngs=nnx.Rngs(0)))
  for mode in ('block', 'stage'):
    other = nnx.eval_shape(lambda: sf.SlowFast(dataclasses.replace(TINY_SF, remat=mode), rngs=nnx.Rngs(0)))
    assert _paths(nnx.state(other)) == _paths(nnx.state(plain))
  m_plain = nnx.eval_shape(lambda: mbart.MBartForConditionalGeneration(TINY_MBART, rngs=nnx.Rngs(0)))
  m_remat = nnx.eval_shape(lambda: mbart.MBartForConditionalGeneration(
      dataclasses.replace(TINY_MBART, remat='layer'), rngs=nnx.Rngs(0)))
  assert _paths(nnx.state(m_remat)) == _paths(nnx.state(m_plain))


def test_remat_config_errors():
  with pytest.raises(ValueError, match='SlowFastConfig.remat'):
    sf.slowfast_tiny(remat='layer')
  with pytest.raises(ValueError, match='remat_policy'):
    sf.slowfast_tiny(remat='block', remat_policy='save_everything')
  with pytest.raises(ValueError, match='MBartConfig.remat'):
    mbart.MBartConfig(remat='block')
  assert remat.policy_fn('') is None
  assert remat.policy_fn('dots_saveable') is jax.checkpoint_policies.dots_saveable


def test_remat_shrinks_saved_activations():
  """The point of it: the backward pass keeps far fewer forward activations (abstract evaluation, nothing runs)."""
  video = jax.ShapeDtypeStruct((2, 16, 64, 64, 3), jnp.float32)

  def saved(cfg):
    model = nnx.eval_shape(lambda: sf.SlowFast(cfg, rngs=nnx.Rngs(0)))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest, video):
      return jnp.sum(nnx.merge(graphdef, params, rest, copy=True)(video)['fused'])

    return remat.saved_residual_bytes(loss, params, rest, video)

  plain = saved(TINY_SF)
  block = saved(dataclasses.replace(TINY_SF, remat='block'))
  stage = saved(dataclasses.replace(TINY_SF, remat='stage'))
  assert block < 0.4 * plain and stage <= block, (plain, block, stage)


# --------------------------------------------------------------------------------------------------------- mBART
def test_mbart_remat_gradients_equal_with_dropout():
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(3, 40, (2, 7)), jnp.int32)
  mask = jnp.asarray([[1] * 7, [1] * 5 + [0] * 2], jnp.int32)
  dec = jnp.asarray(rng.integers(3, 40, (2, 5)), jnp.int32)
  targets = jnp.asarray(rng.integers(3, 40, (2, 5)), jnp.int32)

  def loss_fn(m, ids, mask, dec, targets):
    logits = m(ids, mask, dec)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))

  init = nnx.state(_build(mbart.MBartForConditionalGeneration, TINY_MBART))

  def run(cfg):
    model = _build(mbart.MBartForConditionalGeneration, cfg, init)
    model.train()
    return _grads(model, loss_fn, ids, mask, dec, targets)

  loss0, grads0, state0, jaxpr0 = run(TINY_MBART)
  for policy in ('', 'dots_saveable'):
    loss, grads, state, jaxpr = run(dataclasses.replace(TINY_MBART, remat='layer', remat_policy=policy))
    assert 'remat' in jaxpr and 'remat' not in jaxpr0
    assert float(loss) == pytest.approx(float(loss0), rel=1e-6)
    _assert_trees_close(grads, grads0, rtol=1e-5, atol=1e-7)
    _assert_trees_close(state, state0, rtol=0, atol=0)  # dropout RNG counters advance identically
  # Dropout was really on: the eval-mode loss differs.
  model = _build(mbart.MBartForConditionalGeneration, TINY_MBART, init)
  model.eval()
  assert abs(float(loss_fn(model, ids, mask, dec, targets)) - float(loss0)) > 1e-3
