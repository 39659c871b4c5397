"""PySlowFast Caffe2 `.pkl` -> our SlowFast with SlowFastSign's surgery (SLOWFASTSIGN.md §6), on a synthetic blob
dictionary with PySlowFast's names and upstream shapes (FuseFastToSlow widths, 2x fast fuse channels)."""
import pickle
import re

import jax
import numpy as np
import pytest
from flax import nnx

import test_slowfast as sf_ref
from checkpoints_conversion import engine, pyslowfast
from hypersign_jax.models import slowfast as sf

CFG = sf_ref.TINY  # blocks (1, 1, 2, 1); res4 block 1 has temporal kernel 1
BN_SUFFIX = {'weight': 's', 'bias': 'b', 'running_mean': 'rm', 'running_var': 'riv'}


def _concrete(ctor):
  """An abstract model given concrete stand-in 'init' values (random; BFF scalars 0 as at init): building the real
  initialisers costs a compilation, and only the values' identity matters here."""
  model = nnx.eval_shape(ctor)
  rng = np.random.default_rng(7)
  pure = jax.tree.map(lambda v: rng.standard_normal(v.shape).astype(np.float32), engine.model_variables(model))
  for k in range(1, 5):
    for w in ('weight_s', 'weight_f'):
      pure[f's{k}_fuse'][w] = np.zeros((1,), np.float32)
  engine.load_into_model(model, pure)
  return model


def c2_name(key: str) -> str:
  """SlowFastSign backbone key (no 'conv2d.') -> PySlowFast Caffe2 blob name."""
  if m := re.fullmatch(r's1\.pathway(\d)_stem\.conv\.weight', key):
    return ('t_' if m[1] == '1' else '') + 'conv1_w'
  if m := re.fullmatch(r's1\.pathway(\d)_stem\.bn\.(\w+)', key):
    return ('t_' if m[1] == '1' else '') + f'res_conv1_bn_{BN_SUFFIX[m[2]]}'
  if m := re.fullmatch(r's(\d)\.pathway(\d)_res(\d+)\.(branch1|branch2\.[abc])(_bn)?\.(\w+)', key):
    t = 't_' if m[2] == '1' else ''
    branch = m[4].replace('.', '')
    return f'{t}res{m[1]}_{m[3]}_{branch}' + (f'_bn_{BN_SUFFIX[m[6]]}' if m[5] else '_w')
  if m := re.fullmatch(r's(\d)_fuse\.(conv_f2s\.weight|bn\.(\w+))', key):
    k = int(m[1])
    base = 't_pool1_subsample' if k == 1 else f't_res{k}_{CFG.stage_blocks[k - 2] - 1}_branch2c_bn_subsample'
    return base + ('_w' if m[3] is None else f'_bn_{BN_SUFFIX[m[3]]}')
  raise AssertionError(key)


@pytest.fixture(scope='module')
def setup():
  """(model with init values, its PyTorch-layout init tensors, synthetic blobs, expected adaptations)."""
  model = _concrete(lambda: sf.SlowFast(CFG, rngs=nnx.Rngs(0)))
  init = pyslowfast._torch_view(pyslowfast._table(model), engine.model_variables(model))
  rng = np.random.default_rng(0)
  blobs, expect = {}, {}
  for key, t in init.items():
    name = key[len('conv2d.'):]
    if re.search(r'_fuse\.(conv_s2f|bn2|weight_)', name):
      continue  # new in BFF: PySlowFast has no such blobs
    shape = list(t.shape)
    if m := re.fullmatch(r's(\d)\.pathway0_res0\.(branch1|branch2\.a)\.weight', name):
      shape[1] += 2 * CFG.fast_width(int(m[1]) - 1)  # FuseFastToSlow concatenation widened the slow input
      expect[key] = 'input channels sliced'
    elif m := re.fullmatch(r's(\d)_fuse\.conv_f2s\.weight', name):
      shape[0] = 2 * CFG.fast_width(int(m[1]))
      expect[key] = 'kept_init'
    elif m := re.fullmatch(r's(\d)_fuse\.bn\.\w+', name):
      shape = [2 * CFG.fast_width(int(m[1]))]
      expect[key] = f'tiled x{CFG.beta_inv // 2}'
    elif name == 's4.pathway0_res1.branch2.a.weight':
      assert shape[2] == 1
      shape[2] = 3
      expect[key] = 'kept temporal slice 0 of 3'
    blobs[c2_name(name)] = rng.standard_normal(shape).astype(np.float32)
  blobs.update({'pred_w': rng.standard_normal((10, 640)).astype(np.float32), 'pred_b': np.zeros(10, np.float32),
                'nonlocal_conv4_5_theta_w': np.zeros((4, 4, 1, 1, 1), np.float32),
                'res2_0_branch2a_w_momentum': np.zeros((1,), np.float32), 'lr': np.float32(0.1),
                'model_iter': np.int64(100)})
  return model, init, blobs, expect


def test_surgery_adaptations_are_exact_and_reported(setup, tmp_path):
  model, init, blobs, expect = setup
  path = tmp_path / 'SLOWFAST_64x2_R101_50_50.pkl'
  with open(path, 'wb') as f:
    pickle.dump({'blobs': blobs, 'model_iter': 100}, f, protocol=2)
  report = pyslowfast.load(str(path), model)
  got = pyslowfast.to_torch(model)  # the reverse direction: SlowFastSign names and layouts
  assert set(got) - {k for k in got if k.endswith('num_batches_tracked')} == set(init)
  for key, desc in expect.items():
    if desc == 'kept_init':
      assert key in report.kept_init and 'output channels' in report.kept_init[key]
    else:
      assert desc in report.adapted[key], (key, report.adapted.get(key))
  assert len(report.adapted) == sum(d != 'kept_init' for d in expect.values())
  for key, t in init.items():
    name = key[len('conv2d.'):]
    if re.search(r'_fuse\.(conv_s2f|bn2|weight_)', name) or expect.get(key) == 'kept_init':
      np.testing.assert_array_equal(got[key], t, err_msg=key)  # left at init
      continue
    blob = blobs[c2_name(name)]
    desc = expect.get(key, '')
    want = (blob[:, :t.shape[1]] if 'sliced' in desc else np.tile(blob, CFG.beta_inv // 2) if 'tiled' in desc
            else blob[:, :, :1] if 'temporal' in desc else blob)
    np.testing.assert_array_equal(got[key], want, err_msg=key)
  assert np.all(got['conv2d.s2_fuse.weight_s'] == 0.0)  # BFF starts as the identity, as in SlowFastSign
  assert set(report.skipped) == {'pred_w', 'pred_b', 'nonlocal_conv4_5_theta_w', 'res2_0_branch2a_w_momentum',
                                 'lr', 'model_iter'}
  kept = [re.fullmatch(r'(conv2d\.)?s(\d)_fuse\.(conv_f2s|conv_s2f|bn2|weight_s|weight_f)\b.*', k) for k in report.kept_init]
  assert all(kept) and {m[2] for m in kept} == {'1', '2', '3', '4'}
  text = report.format()
  assert 'tiled x2' in text and 'input channels sliced' in text and 'kept_init' in text


def test_bad_blobs_and_files_fail_with_a_message(setup, tmp_path):
  model, _, blobs, _ = setup
  bad = dict(blobs, res9_0_branch2a_w=np.zeros((1,), np.float32))
  with pytest.raises(engine.ConversionError, match=r'res9_0_branch2a_w'):
    pyslowfast.convert(bad, model)
  missing = {k: v for k, v in blobs.items() if k != 't_res3_0_branch2b_w'}
  with pytest.raises(engine.MissingKeysError, match=r's3\.pathway1_res0\.branch2\.b\.kernel'):
    pyslowfast.convert(missing, model)
  wrong = dict(blobs, res_conv1_bn_s=np.zeros((5,), np.float32))  # 5 does not divide 16
  with pytest.raises(engine.ConversionError, match=r's1\.pathway0_stem\.bn\.weight.*res_conv1_bn_s'):
    pyslowfast.convert(wrong, model)
  path = tmp_path / 'x.pkl'
  with open(path, 'wb') as f:
    pickle.dump({'blobs': blobs}, f, protocol=2)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(engine.ConversionError, match='not a readable Caffe2 pickle'):
    pyslowfast.read_pkl(str(path))
  with open(path, 'wb') as f:
    pickle.dump({'model_state': {}}, f)
  with pytest.raises(engine.ConversionError, match="'blobs'"):
    pyslowfast.read_pkl(str(path))
  with open(path, 'wb') as f:
    pickle.dump({'blobs': {'x': engine.Report('evil')}}, f)  # not an array: refused, nothing executed
  with pytest.raises(engine.ConversionError, match='refusing to load'):
    pyslowfast.read_pkl(str(path))
  with pytest.raises(engine.ConversionError, match='must be concrete'):
    pyslowfast.convert(blobs, nnx.eval_shape(lambda: sf.SlowFast(CFG, rngs=nnx.Rngs(0))))
