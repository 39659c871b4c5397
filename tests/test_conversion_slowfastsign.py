"""SlowFastSign `.pt` <-> our CSLR model: bit-exact round trip, logits equal to a PyTorch SLRModel reference with the
original's key names (tiny widths), and one-line errors for malformed checkpoints."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import test_cslr_layers_vs_torch as layers_ref
import test_slowfast as sf_ref
from checkpoints_conversion import engine
from checkpoints_conversion import slowfastsign as sfs_conv
from hypersign_jax.models import cslr

HIDDEN, CLASSES = 16, 7
BACKBONE = sf_ref.TINY


class TorchNormLinear(nn.Module):
  def __init__(self, d_in, d_out):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(d_in, d_out))

  def forward(self, x):
    return x @ torch.nn.functional.normalize(self.weight, dim=0)


class TorchBiLSTM(nn.Module):
  def __init__(self, d_in, hidden):
    super().__init__()
    self.rnn = nn.LSTM(d_in, hidden // 2, num_layers=2, bidirectional=True, dropout=0.3)

  def forward(self, x, lengths):  # (T, B, C)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, _ = self.rnn(packed)
    return nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])[0]


class TorchSLRModel(nn.Module):
  """The original's SLRModel layout (conv2d / conv1d.{main,slow,fast}_temporal_conv + fc / temporal_model /
  classifier), eval path: main branch only, conv1d.fc[i] IS classifier[i]."""

  def __init__(self, cfg, hidden, classes):
    super().__init__()
    self.conv2d = sf_ref.TorchSlowFast(cfg)
    c_s, c_f = cfg.out_dims
    self.conv1d = nn.Module()
    for name, width in (('main', c_s + c_f), ('slow', c_s), ('fast', c_f)):
      self.conv1d.add_module(f'{name}_temporal_conv', layers_ref._torch_temporal_conv(width, hidden))
    self.temporal_model = nn.ModuleList([TorchBiLSTM(hidden, hidden) for _ in range(3)])
    self.classifier = nn.ModuleList([TorchNormLinear(hidden, classes) for _ in range(3)])
    self.conv1d.fc = self.classifier  # share_classifier=1

  def forward(self, video, lengths):  # (B, C, T, H, W)
    feat = self.conv2d(video)                                    # (B, C_s + C_f, T)
    x = self.conv1d.main_temporal_conv(feat)                     # (B, hidden, T')
    lgt = layers_ref._torch_update_lgt(lengths.float()).int()
    x = x.permute(2, 0, 1)                                       # (T', B, hidden)
    conv_logits = self.conv1d.fc[0](x)
    seq_logits = self.classifier[0](self.temporal_model[0](x, lgt))
    return conv_logits, seq_logits, lgt


def _randomize(ref: TorchSLRModel, seed: int) -> None:
  sf_ref.randomize(ref.conv2d, seed)  # BN stats, nonzero BFF scalars
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, t in ref.named_parameters():
      if name.startswith('conv2d.'):
        continue
      t.copy_(torch.randn(t.shape, generator=g) * (0.5 if t.ndim < 2 else 1.0 / math.sqrt(math.prod(t.shape[1:]))))
    for name, t in ref.named_buffers():
      if name.startswith('conv1d.') and name.endswith('running_mean'):
        t.copy_(0.2 * torch.randn(t.shape, generator=g))
      elif name.startswith('conv1d.') and name.endswith('running_var'):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))


def _abstract_model(num_classes=CLASSES, **kw):
  cfg = cslr.SlowFastSignConfig(num_classes=num_classes, backbone=BACKBONE, hidden_size=HIDDEN, **kw)
  return nnx.eval_shape(lambda: cslr.SlowFastSign(cfg, rngs=nnx.Rngs(0)))


@pytest.fixture(scope='module')
def reference():
  torch.manual_seed(0)
  ref = TorchSLRModel(BACKBONE, HIDDEN, CLASSES).eval()
  _randomize(ref, 3)
  return ref


@pytest.fixture(scope='module')
def ckpt_path(reference, tmp_path_factory):
  path = str(tmp_path_factory.mktemp('sfs') / 'phoenix_dev.pt')
  sd = {f'module.{k}': v for k, v in reference.state_dict().items()}  # DataParallel prefix, as saved on GPUs
  torch.save({'epoch': 3, 'model_state_dict': sd, 'optimizer_state_dict': {}}, path)
  return path


def test_state_dict_has_the_original_aliases(reference):
  sd = reference.state_dict()
  assert 'conv1d.fc.2.weight' in sd and 'classifier.2.weight' in sd
  assert sd['conv1d.fc.2.weight'].data_ptr() == sd['classifier.2.weight'].data_ptr()
  assert 'temporal_model.1.rnn.weight_ih_l1_reverse' in sd


def test_round_trip_is_bit_exact(reference):
  sd = {k: v.numpy() for k, v in reference.state_dict().items()}
  model = _abstract_model()
  pure, report = sfs_conv.convert(reference.state_dict(), model)
  assert report.ok and not report.kept_init
  assert set(report.aliased) == {f'conv1d.fc.{i}.weight' for i in range(3)}
  assert all(k.endswith('num_batches_tracked') for k in report.skipped)
  back = engine.to_state_dict(sfs_conv.table_for(model), pure)
  assert set(back) == set(sd)
  for k, v in sd.items():
    if k.endswith('num_batches_tracked'):
      assert back[k].dtype == np.int64 and back[k].shape == ()   # a counter, written as 0
      continue
    assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
    np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_logits_match_pytorch_reference(reference, ckpt_path):
  model = _abstract_model()
  report = sfs_conv.load(ckpt_path, model)
  assert len(report.mapped) == len(jax.tree.leaves(engine.model_variables(model)))
  sf_ref.seed_rng_state(model)
  model.eval()
  assert float(np.abs(np.asarray(model.conv2d.s2_fuse.weight_s[...])).min()) > 0.4  # BFF is active
  rng = np.random.default_rng(0)
  b, t = 2, 28
  video = rng.standard_normal((b, t, 32, 32, 3)).astype(np.float32)
  lengths = np.array([28, 20])
  got = nnx.jit(lambda m, v, n: m(v, n))(model, jnp.asarray(video), jnp.asarray(lengths))
  with torch.no_grad():
    conv_want, seq_want, lgt = reference(sf_ref._to_torch(video), torch.tensor(lengths))
  np.testing.assert_array_equal(np.asarray(got['feat_lengths']), lgt.numpy())
  seq_got = np.asarray(got['sequence_logits']['main'])
  seq_want = seq_want.numpy().transpose(1, 0, 2)
  assert np.abs(seq_want).max() > 0.1
  np.testing.assert_allclose(seq_got, seq_want, atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(got['conv_logits']['main']), conv_want.numpy().transpose(1, 0, 2),
                             atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- malformed inputs
def test_wrong_class_count_names_the_config_key(reference):
  with pytest.raises(engine.ConversionError, match=r"classifier\.0\.weight.*data\.dir"):
    sfs_conv.convert(reference.state_dict(), _abstract_model(num_classes=CLASSES + 2))


def test_missing_and_unexpected_keys_are_named(reference):
  sd = dict(reference.state_dict())
  del sd['temporal_model.0.rnn.bias_hh_l1_reverse']
  with pytest.raises(engine.MissingKeysError, match=r'temporal_model\.0\.rnn\.bias_hh_l1_reverse'):
    sfs_conv.convert(sd, _abstract_model())
  # A PFE checkpoint into a model without PFE: the extra paths are unexpected, with the config key to change.
  with pytest.raises(engine.ConversionError, match=r"unexpected.*model\.pfe"):
    sfs_conv.convert(reference.state_dict(), _abstract_model(pfe=False))
  # ... unless the user says to ignore them.
  pure, report = sfs_conv.convert(reference.state_dict(), _abstract_model(pfe=False),
                                  ignore=['conv1d.slow_*', 'conv1d.fast_*', 'temporal_model.[12].*',
                                          'classifier.[12].*'])
  assert report.ok and 'temporal_model.2.rnn.weight_ih_l0' in report.ignored


def test_inconsistent_shared_classifier_is_an_error(reference):
  sd = {k: v.clone() for k, v in reference.state_dict().items()}
  sd['conv1d.fc.1.weight'] += 1.0
  with pytest.raises(engine.ConversionError, match=r'conv1d\.fc\.1\.weight.*classifier\.1\.weight'):
    sfs_conv.convert(sd, _abstract_model())


def test_truncated_and_wrong_type_files(ckpt_path, tmp_path):
  data = open(ckpt_path, 'rb').read()
  cut = tmp_path / 'cut.pt'
  cut.write_bytes(data[:len(data) // 2])
  with pytest.raises(engine.ConversionError, match='not a readable PyTorch checkpoint'):
    sfs_conv.load(str(cut), _abstract_model())
  txt = tmp_path / 'notes.pt'
  txt.write_text('hello')
  with pytest.raises(engine.ConversionError, match='notes.pt'):
    sfs_conv.load(str(txt), _abstract_model())
  other = tmp_path / 'other.pt'
  torch.save([1, 2, 3], other)
  with pytest.raises(engine.ConversionError, match="expected a SlowFastSign checkpoint"):
    sfs_conv.load(str(other), _abstract_model())
  with pytest.raises(engine.ConversionError, match='no such file'):
    sfs_conv.load(os.path.join(tmp_path, 'nope.pt'), _abstract_model())
