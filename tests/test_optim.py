"""Optimizer construction: parameter groups, coupled L2 vs AdamW, schedules, clipping, accumulation."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hypersign_jax.training import optim


def cfgs(**opt):
  o = ml_collections.ConfigDict(dict(name="adam", lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                                     weight_decay_mode="coupled", clip_grad_norm=0.0, grad_accum_steps=1,
                                     groups={}))
  o.update(opt)
  s = ml_collections.ConfigDict(dict(name="constant", unit="step", milestones=(), gamma=0.1, total=1.0,
                                     eta_min_ratio=0.0, warmup=0))
  return o, s


PARAMS = {"encoder": {"w": jnp.array([1.0, -2.0, 3.0])}, "mapper": {"w": jnp.array([0.5, 0.25])},
          "head": {"b": jnp.array([4.0])}}
GRADS = {"encoder": {"w": jnp.array([0.1, 0.2, -0.3])}, "mapper": {"w": jnp.array([-1.0, 2.0])},
         "head": {"b": jnp.array([0.5])}}


def adam_first_step(p, g, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
  """PyTorch Adam(weight_decay=wd), first step, by hand: g' = g + wd p; m = (1-b1) g'; v = (1-b2) g'^2."""
  g = g + wd * p
  m_hat = (1 - b1) * g / (1 - b1)
  v_hat = (1 - b2) * g * g / (1 - b2)
  return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def test_groups_and_coupled_l2_match_hand_computation():
  o, s = cfgs(weight_decay=0.1, groups={"mapper": {"pattern": "^mapper/", "lr": 2e-1},
                                        "head": {"pattern": "head", "lr": 1e-3}})
  tx, _ = optim.make_optimizer(o, s, PARAMS, steps_per_epoch=10)
  updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
  new = optax.apply_updates(PARAMS, updates)
  for group, lr in (("encoder", 1e-2), ("mapper", 2e-1), ("head", 1e-3)):
    (k, p), = PARAMS[group].items()
    expected = adam_first_step(np.asarray(p), np.asarray(GRADS[group][k]), lr, 0.1)
    np.testing.assert_allclose(np.asarray(new[group][k]), expected, rtol=1e-5, atol=2e-6, err_msg=group)  # float32


def test_coupled_l2_differs_from_adamw_over_steps():
  o, s = cfgs(weight_decay=0.1, weight_decay_mode="decoupled")
  tx, _ = optim.make_optimizer(o, s, PARAMS, 10)
  updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
  new = optax.apply_updates(PARAMS, updates)
  ref_tx = optax.adamw(1e-2, weight_decay=0.1)
  ref_updates, _ = ref_tx.update(GRADS, ref_tx.init(PARAMS), PARAMS)
  ref = optax.apply_updates(PARAMS, ref_updates)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_unmatched_group_pattern_is_an_error():
  o, s = cfgs(groups={"x": {"pattern": "nothing_like_this", "lr": 1.0}})
  with pytest.raises(ValueError, match="optimizer.groups.x"):
    optim.make_optimizer(o, s, PARAMS, 10)


def test_multistep_per_epoch_like_pytorch():
  _, s = cfgs()
  s.update(dict(name="multistep", unit="epoch", milestones=(40, 60), gamma=0.2))
  sched = optim.make_schedule(s, 1e-4, steps_per_epoch=10)
  lrs = {epoch: float(sched(epoch * 10 + 3)) for epoch in (0, 39, 40, 59, 60, 79)}
  assert lrs[0] == pytest.approx(1e-4) and lrs[39] == pytest.approx(1e-4)
  assert lrs[40] == pytest.approx(2e-5) and lrs[59] == pytest.approx(2e-5)
  assert lrs[60] == pytest.approx(4e-6) and lrs[79] == pytest.approx(4e-6)


def test_cosine_per_epoch_is_constant_within_an_epoch():
  _, s = cfgs()
  s.update(dict(name="cosine", unit="epoch", total=40, eta_min_ratio=0.0))
  sched = optim.make_schedule(s, 1.0, steps_per_epoch=5)
  assert float(sched(0)) == pytest.approx(1.0) and float(sched(4)) == pytest.approx(1.0)
  assert float(sched(5)) == pytest.approx(0.5 * (1 + np.cos(np.pi / 40)))
  assert float(sched(20 * 5)) == pytest.approx(0.5, abs=1e-6)


def test_clipping_and_accumulation():
  o, s = cfgs(name="sgd", lr=1.0, clip_grad_norm=0.5, grad_accum_steps=2)
  params = {"w": jnp.zeros(2)}
  tx, _ = optim.make_optimizer(o, s, params, 10)
  st = tx.init(params)
  u1, st = tx.update({"w": jnp.array([3.0, 4.0])}, st, params)
  np.testing.assert_allclose(u1["w"], 0.0)                       # accumulating, no update yet
  u2, st = tx.update({"w": jnp.array([0.0, 0.1])}, st, params)
  # Like PyTorch accumulation + clip_grad_norm_: the mean gradient is clipped, then applied.
  mean = np.array([1.5, 2.05])
  np.testing.assert_allclose(u2["w"], -mean * 0.5 / np.linalg.norm(mean), rtol=1e-6)
  u3, st = tx.update({"w": jnp.array([0.1, 0.0])}, st, params)
  u4, st = tx.update({"w": jnp.array([0.1, 0.2])}, st, params)   # mean norm < 0.5: unclipped
  np.testing.assert_allclose(u3["w"], 0.0)
  np.testing.assert_allclose(u4["w"], -np.array([0.1, 0.1]), rtol=1e-6)


def test_epoch_offset_reproduces_a_scheduler_stepped_at_epoch_start():
  _, s = cfgs()
  s.update(dict(name="cosine", unit="epoch", total=40, eta_min_ratio=0.0, offset=1))
  sched = optim.make_schedule(s, 1.0, steps_per_epoch=5)
  assert float(sched(0)) == pytest.approx(0.5 * (1 + np.cos(np.pi / 40)))   # epoch 0
  assert float(sched(39 * 5 + 4)) == pytest.approx(0.0, abs=1e-7)           # last epoch: 0
