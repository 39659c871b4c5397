"""HyperSign S2T building blocks equal small PyTorch references written after the original's structure.

Each reference below uses the original's module/attribute names, so its `state_dict()` goes through one generic
name rule (`_torch_to_nnx`) into our modules: that is also a check that our parameter paths map one to one.
Weights are random and non-default; float32; tolerance 1e-5.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from flax import nnx

from hypersign_jax.losses import hypersign as hs_losses
from hypersign_jax.models import fusion, psc, sparsemax, sst, visual_head

TOL = 1e-5
torch.set_default_dtype(torch.float32)

# Jitted entry points: one compilation per shape instead of many eager ops (state updates go through nnx.jit).
_head = nnx.jit(lambda m, x, mask: m(x, mask))


# ---------------------------------------------------------------------------------------------------------------
# Helpers: state-dict conversion and weight randomisation
# ---------------------------------------------------------------------------------------------------------------
def _torch_to_nnx(state_dict) -> dict:
  """PyTorch state dict -> nested pure dict for `nnx.replace_by_pure_dict` (the converter's name rules)."""
  out: dict = {}
  for key, tensor in state_dict.items():
    parts = key.split('.')
    leaf, value = parts[-1], tensor.detach().cpu().numpy()
    if leaf in ('num_batches_tracked',) or key.endswith('pe.pe'):
      continue
    if leaf == 'weight':
      if value.ndim == 1:  # LayerNorm / BatchNorm
        leaf = 'scale'
      else:  # Linear (out, in) -> (in, out); Conv1d (out, in, k) -> (k, in, out)
        leaf, value = 'kernel', value.T if value.ndim == 2 else value.transpose(2, 1, 0)
    elif leaf == 'running_mean':
      leaf = 'mean'
    elif leaf == 'running_var':
      leaf = 'var'
    node = out
    for p in parts[:-1]:
      node = node.setdefault(int(p) if p.isdigit() else p, {})
    node[leaf] = jnp.asarray(value)
  return out


def _load(module: nnx.Module, torch_module: torch.nn.Module) -> dict:
  pure = _torch_to_nnx(torch_module.state_dict())
  state = nnx.state(module)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(module, state)
  return pure


def _flat_keys(tree: dict, prefix=()) -> set:
  keys = set()
  for k, v in tree.items():
    if isinstance(v, dict):
      keys |= _flat_keys(v, prefix + (k,))
    else:
      keys.add(prefix + (k,))
  return keys


def _assert_params_covered(module: nnx.Module, pure: dict):
  """Every trainable parameter of ours comes from exactly one PyTorch tensor."""
  ours = _flat_keys(nnx.to_pure_dict(nnx.state(module, nnx.Param)))
  assert ours == _flat_keys(pure) - {k for k in _flat_keys(pure) if k[-1] in ('mean', 'var')}


def _randomise(module: torch.nn.Module, seed: int):
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in list(module.named_parameters()) + list(module.named_buffers()):
      if name.endswith('num_batches_tracked') or name.endswith('pe.pe'):
        continue
      noise = torch.randn(p.shape, generator=gen)
      if name.endswith('running_var'):
        p.copy_(0.5 + torch.rand(p.shape, generator=gen))
      elif p.ndim == 1 and name.endswith('weight'):  # norm scales
        p.copy_(1.0 + 0.2 * noise)
      else:
        p.copy_(0.4 * noise)


def _np(x) -> np.ndarray:
  return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch references (original structure and names)
# ---------------------------------------------------------------------------------------------------------------
class TMaskedNorm(torch.nn.Module):
  """Batch norm of valid frames in training (padded frames untouched), running statistics for all in eval."""

  def __init__(self, n):
    super().__init__()
    self.norm = torch.nn.BatchNorm1d(n, eps=1e-5, momentum=0.1)
    self.n = n

  def forward(self, x, mask):
    b = x.shape[0]
    flat = x.reshape(-1, self.n)
    if self.training:
      keep = mask.reshape(-1, 1) > 0
      selected = torch.masked_select(flat, keep).reshape(-1, self.n)
      return flat.masked_scatter(keep, self.norm(selected)).reshape(b, -1, self.n)
    return self.norm(flat).reshape(b, -1, self.n)


class TPositionalEncoding(torch.nn.Module):

  def __init__(self, d, max_len=64):
    super().__init__()
    pe = torch.zeros(max_len, d)
    pos = torch.arange(0, max_len).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    self.register_buffer('pe', pe.unsqueeze(0))

  def forward(self, x):
    return x + self.pe[:, :x.shape[1]]


class TPositionwiseFeedForward(torch.nn.Module):

  def __init__(self, d, ff, k, p):
    super().__init__()
    self.layer_norm = torch.nn.LayerNorm(d, eps=1e-6)
    self.pwff_layer = torch.nn.Sequential(
        torch.nn.Conv1d(d, ff, kernel_size=k, stride=1, padding='same'), torch.nn.ReLU(), torch.nn.Dropout(p),
        torch.nn.Conv1d(ff, d, kernel_size=k, stride=1, padding='same'), torch.nn.Dropout(p))

  def forward(self, x):
    h = self.layer_norm(x)
    return self.pwff_layer(h.transpose(1, 2)).transpose(1, 2) + x


class TVisualHead(torch.nn.Module):

  def __init__(self, cls_num, input_size, hidden, ff, k=3, p=0.1):
    super().__init__()
    self.fc1 = torch.nn.Linear(input_size, hidden)
    self.bn1 = TMaskedNorm(hidden)
    self.relu1 = torch.nn.ReLU()
    self.pe = TPositionalEncoding(hidden)
    self.dropout1 = torch.nn.Dropout(p)
    self.feedforward = TPositionwiseFeedForward(hidden, ff, k, p)
    self.layer_norm = torch.nn.LayerNorm(hidden, eps=1e-6)
    self.gloss_output_layer = torch.nn.Linear(hidden, cls_num)

  def forward(self, x, mask):
    x = self.dropout1(self.pe(self.relu1(self.bn1(self.fc1(x), mask))))
    x = self.layer_norm(self.feedforward(x))
    logits = self.gloss_output_layer(x)
    return {'gloss_feature': x, 'gloss_logits': logits, 'gloss_log_probs': logits.log_softmax(-1),
            'gloss_probs': logits.softmax(-1)}


def _t_hypernet(d_in, d_hidden, d_out, p):
  return torch.nn.Sequential(torch.nn.Linear(d_in, d_hidden), torch.nn.ReLU(), torch.nn.Dropout(p),
                             torch.nn.Linear(d_hidden, d_out))


def _t_gate(d):
  return torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU())


class TDSG(torch.nn.Module):

  def __init__(self, d, p):
    super().__init__()
    self.gamma_hypernet = _t_hypernet(2 * d, d, d, p)
    self.beta_hypernet = _t_hypernet(2 * d, d, d, p)
    self.layernorm = torch.nn.LayerNorm(d)

  def forward(self, g, l):
    h = torch.cat([g, l], dim=-1)
    return self.gamma_hypernet(h) * self.layernorm(g * l) + self.beta_hypernet(h)


class TDShG(torch.nn.Module):

  def __init__(self, d, p=0.5):
    super().__init__()
    self.hypernet = _t_hypernet(2 * d, d, 2 * d, p)
    self.layernorm = torch.nn.LayerNorm(d)

  def forward(self, g, l):
    gamma, beta = self.hypernet(torch.cat([g, l], dim=-1)).chunk(2, dim=-1)
    return gamma * self.layernorm(g * l) + beta


class TPIG(torch.nn.Module):

  def __init__(self, d):
    super().__init__()
    self.gamma_hypernet_rgb, self.beta_hypernet_rgb = _t_gate(d), _t_gate(d)
    self.gamma_hypernet_local, self.beta_hypernet_local = _t_gate(d), _t_gate(d)
    self.layernorm = torch.nn.LayerNorm(d)

  def forward(self, g, l):
    g2 = self.gamma_hypernet_rgb(g) * g + self.beta_hypernet_rgb(g)
    l2 = self.gamma_hypernet_local(l) * l + self.beta_hypernet_local(l)
    return self.layernorm(g2 + l2)


class TCIG(TPIG):

  def forward(self, g, l):
    l2 = self.gamma_hypernet_rgb(g) * l + self.beta_hypernet_rgb(g)
    g2 = self.gamma_hypernet_local(l) * g + self.beta_hypernet_local(l)
    return self.layernorm(g2 + l2)


class TFusionNet(torch.nn.Module):

  def __init__(self, block):
    super().__init__()
    self.block = block

  def forward(self, g, l):
    return self.block(g, l)


class TVLMapper(torch.nn.Module):

  def __init__(self, kind, d_in, d_out, p):
    super().__init__()
    self.kind = kind
    if kind == 'fuse_projection_share':
      self.mapping = torch.nn.Sequential(torch.nn.Linear(d_in, d_out), torch.nn.ReLU(), torch.nn.Linear(d_out, d_out))
    else:
      self.mapping = torch.nn.Linear(d_in, d_out, bias=False)
    self.FusionNet = TFusionNet(TDSG(d_out, p))

  def forward(self, rgb, keypoint):
    f_v, f_k = self.mapping(rgb), self.mapping(keypoint)
    return {'output': self.FusionNet(f_v, f_k), 'rgb_feature': f_v, 'keypoint_feature': f_k}


def t_sparsemax(z):
  """Sort-based sparsemax on the last axis (autograd through sort/cumsum)."""
  z = z - z.max(dim=-1, keepdim=True).values
  zs, _ = torch.sort(z, dim=-1, descending=True)
  k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
  cs = zs.cumsum(-1)
  support = (1 + k * zs) > cs
  kz = support.sum(-1, keepdim=True)
  tau = (cs.gather(-1, kz - 1) - 1) / kz.to(z.dtype)
  return torch.clamp(z - tau, min=0)


class TQueryModel(torch.nn.Module):

  def __init__(self, d, sd):
    super().__init__()
    self.q_map = torch.nn.Sequential(torch.nn.LayerNorm(d), torch.nn.Linear(d, sd), torch.nn.GELU(),
                                     torch.nn.LayerNorm(sd), torch.nn.Linear(sd, sd))

  def forward(self, x):
    return self.q_map(x)


class TSST(torch.nn.Module):

  def __init__(self, d, sd_num, sd_dim, temperature=0.07):
    super().__init__()
    self.space_dict = torch.nn.Parameter(torch.randn(sd_num, sd_dim))
    self.logit_scale = torch.nn.Parameter(torch.ones([1]) * math.log(1 / 0.07))
    self.video_query_model = TQueryModel(d, sd_dim)
    self.text_query_model = TQueryModel(d, sd_dim)
    self.sd_dim, self.temperature = sd_dim, temperature

  def embed(self, qm, x):
    a = qm(x) @ self.space_dict.t() / math.sqrt(self.sd_dim) / self.temperature
    w = t_sparsemax(a.mean(dim=1))
    e = w @ self.space_dict
    return e / (e.norm(dim=-1, keepdim=True) + 1e-10)

  def forward(self, va, vb, ta, tb):
    v = torch.cat([self.embed(self.video_query_model, va), self.embed(self.video_query_model, vb)])
    t = torch.cat([self.embed(self.text_query_model, ta), self.embed(self.text_query_model, tb)])
    s = self.logit_scale.exp()
    s.data = torch.clamp(s.data, max=100)
    return s * v @ t.t()


def t_sst_loss(z, weight):
  b = z.shape[0] // 2
  y = torch.zeros(2 * b, 2 * b)
  for i in range(2 * b):
    y[i, i] = 1
    y[i, (i + b) % (2 * b)] = 1
  bce = torch.nn.BCEWithLogitsLoss()
  return 0.5 * (bce(z, y) + bce(z.t(), y)) / b * weight


def t_warmup(step, end, warmup_step, start=0.0):
  if step >= warmup_step:
    return end
  return start + (end - start) * step / warmup_step


def t_sym_kl(a, b):
  kl1 = F.kl_div(F.log_softmax(a, -1), F.softmax(b, -1), reduction='sum')
  kl2 = F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction='sum')
  return 0.5 * (kl1 + kl2)


# ---------------------------------------------------------------------------------------------------------------
# VisualHead
# ---------------------------------------------------------------------------------------------------------------
VH = dict(cls_num=7, input_size=12, hidden=8, ff=16)
LENGTHS = [6, 4, 2]


def _vh_inputs(seed, lengths=LENGTHS, t=6):
  rng = np.random.default_rng(seed)
  mask = (np.arange(t)[None] < np.asarray(lengths)[:, None])
  x = rng.normal(size=(len(lengths), t, VH['input_size'])).astype(np.float32) + 1e-8
  return np.where(mask[..., None], x, 0.0).astype(np.float32), mask.astype(np.int64)


def _vh_pair(dropout=0.0, **kw):
  torch.manual_seed(0)
  ref = TVisualHead(VH['cls_num'], VH['input_size'], VH['hidden'], VH['ff'], p=dropout)
  _randomise(ref, 1)
  cfg = visual_head.VisualHeadConfig(input_size=VH['input_size'], hidden_size=VH['hidden'], ff_size=VH['ff'],
                                     num_classes=VH['cls_num'], dropout=dropout, **kw)
  ours = visual_head.VisualHead(cfg, rngs=nnx.Rngs(0))
  pure = _load(ours, ref)
  return ref, ours, pure


def _compare_head(ref_out, our_out):
  for key in ('gloss_feature', 'gloss_logits', 'gloss_log_probs', 'gloss_probs'):
    np.testing.assert_allclose(np.asarray(our_out[key]), _np(ref_out[key]), atol=TOL, rtol=TOL, err_msg=key)


def test_visual_head_train_then_eval_matches_torch_including_padding_and_running_stats():
  ref, ours, pure = _vh_pair()
  _assert_params_covered(ours, pure)
  ref.train()
  ours.train()
  for seed in (10, 11):  # two training steps: outputs (padded frames included) and running statistics
    x, mask = _vh_inputs(seed)
    _compare_head(ref(torch.from_numpy(x), torch.from_numpy(mask)), _head(ours, jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(np.asarray(ours.bn1.norm.mean[...]), _np(ref.bn1.norm.running_mean), atol=TOL)
    np.testing.assert_allclose(np.asarray(ours.bn1.norm.var[...]), _np(ref.bn1.norm.running_var), atol=TOL)
  ref.eval()
  ours.eval()
  x, mask = _vh_inputs(12)
  out = _head(ours, jnp.asarray(x), jnp.asarray(mask))
  _compare_head(ref(torch.from_numpy(x), torch.from_numpy(mask)), out)
  np.testing.assert_array_equal(np.asarray(out['valid_len_out']), LENGTHS)


def test_visual_head_padding_leaks_in_original_and_not_with_mask_padding():
  """Original: a sample's last valid frame depends on how much padding the batch adds; `mask_padding` fixes it."""
  x, mask = _vh_inputs(20, lengths=[6, 3], t=6)
  for mask_padding, should_match in ((False, False), (True, True)):
    _, ours, _ = _vh_pair(mask_padding=mask_padding)
    ours.eval()
    batched = np.asarray(_head(ours, jnp.asarray(x), jnp.asarray(mask))['gloss_feature'])[1, :3]
    alone = np.asarray(_head(ours, jnp.asarray(x[1:2, :3]), jnp.asarray(mask[1:2, :3]))['gloss_feature'])[0]
    assert np.allclose(batched, alone, atol=TOL) == should_match


def test_visual_head_dropout_is_off_in_eval():
  _, with_dropout, _ = _vh_pair(dropout=0.5)
  _, without, _ = _vh_pair(dropout=0.0)
  x, mask = _vh_inputs(30)
  with_dropout.eval()
  without.eval()
  np.testing.assert_array_equal(np.asarray(_head(with_dropout, jnp.asarray(x), jnp.asarray(mask))['gloss_feature']),
                                np.asarray(_head(without, jnp.asarray(x), jnp.asarray(mask))['gloss_feature']))
  with_dropout.train()
  a = _head(with_dropout, jnp.asarray(x), jnp.asarray(mask))['gloss_feature']
  b = _head(with_dropout, jnp.asarray(x), jnp.asarray(mask))['gloss_feature']
  assert not np.allclose(np.asarray(a), np.asarray(b))  # fresh masks per call in training


# ---------------------------------------------------------------------------------------------------------------
# Fusion blocks and VLMapper
# ---------------------------------------------------------------------------------------------------------------
D = 8


@pytest.mark.parametrize('name', ['DSG', 'DShG', 'PIG', 'CIG'])
def test_fusion_block_matches_torch(name):
  torch.manual_seed(0)
  ref = {'DSG': lambda: TDSG(D, 0.5), 'DShG': lambda: TDShG(D), 'PIG': lambda: TPIG(D), 'CIG': lambda: TCIG(D)}[name]()
  _randomise(ref, 2)
  ref.eval()
  ours = fusion.build_fusion(name, D, dropout=0.5, rngs=nnx.Rngs(0))
  pure = _load(ours, ref)
  _assert_params_covered(ours, pure)
  ours.eval()
  rng = np.random.default_rng(3)
  g, l = (rng.normal(size=(2, 5, D)).astype(np.float32) for _ in range(2))
  np.testing.assert_allclose(np.asarray(ours(jnp.asarray(g), jnp.asarray(l))),
                             _np(ref(torch.from_numpy(g), torch.from_numpy(l))), atol=TOL, rtol=TOL)


def test_dsg_dropout_comes_from_config_and_dshg_keeps_half():
  dsg = fusion.build_fusion('DSG', D, dropout=0.25, rngs=nnx.Rngs(0))
  dshg = fusion.build_fusion('DShG', D, dropout=0.0, rngs=nnx.Rngs(0))
  assert dsg.gamma_hypernet[2].rate == 0.25 and dsg.beta_hypernet[2].rate == 0.25
  assert dshg.hypernet[2].rate == 0.5
  with pytest.raises(ValueError, match='unknown fusion block'):
    fusion.build_fusion('XYZ', D, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('kind', ['fuse_projection_share', 'embedding_fuse_share'])
def test_vl_mapper_matches_torch(kind):
  n_gloss, d_in = 6, 5
  torch.manual_seed(0)
  ref = TVLMapper(kind, d_in if kind == 'fuse_projection_share' else n_gloss, D, 0.5)
  _randomise(ref, 4)
  ref.eval()
  cfg = fusion.VLMapperConfig(type=kind, in_features=d_in, num_glosses=n_gloss, out_features=D, fusion_dropout=0.5)
  rng = np.random.default_rng(5)
  init = None
  if kind == 'embedding_fuse_share':  # column i of the PyTorch weight = embedding of gloss i, zero if absent
    id2gloss = ['<si>', 'a', 'b', 'c', 'd', 'e']
    table = {g: rng.normal(size=D).astype(np.float32) for g in id2gloss[1:]}
    init = fusion.gloss_embedding_matrix(id2gloss, table, D)
    np.testing.assert_array_equal(init[0], 0.0)
    with torch.no_grad():
      ref.mapping.weight.copy_(torch.from_numpy(init.T))
  ours = fusion.VLMapper(cfg, gloss_embeddings=init, rngs=nnx.Rngs(0))
  if init is not None:
    np.testing.assert_array_equal(np.asarray(ours.mapping.kernel[...]), init)
  pure = _load(ours, ref)
  _assert_params_covered(ours, pure)
  ours.eval()
  key = 'gloss_feature' if kind == 'fuse_projection_share' else 'gloss_probs'
  width = d_in if kind == 'fuse_projection_share' else n_gloss
  rgb, kp = (rng.normal(size=(2, 4, width)).astype(np.float32) for _ in range(2))
  out = ours({key: jnp.asarray(rgb)}, {key: jnp.asarray(kp)})
  ref_out = ref(torch.from_numpy(rgb), torch.from_numpy(kp))
  for name in ('output', 'rgb_feature', 'keypoint_feature'):
    np.testing.assert_allclose(np.asarray(out[name]), _np(ref_out[name]), atol=TOL, rtol=TOL, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------
# Sparsemax
# ---------------------------------------------------------------------------------------------------------------
def _np_simplex_projection(z: np.ndarray) -> np.ndarray:
  """Independent reference: bisection on tau for sum(max(z - tau, 0)) = 1 (float64)."""
  out = np.empty_like(z, dtype=np.float64)
  for idx in np.ndindex(z.shape[:-1]):
    v = z[idx].astype(np.float64)
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
      tau = 0.5 * (lo + hi)
      lo, hi = (tau, hi) if np.maximum(v - tau, 0).sum() > 1 else (lo, tau)
    out[idx] = np.maximum(v - 0.5 * (lo + hi), 0)
  return out


def test_sparsemax_values_match_references():
  rng = np.random.default_rng(0)
  z = (rng.normal(size=(4, 3, 11)) * 2).astype(np.float32)
  z[0, 0] = 0.0          # all equal -> uniform
  z[0, 1, 3] = 50.0      # one dominant score -> one-hot
  ours = np.asarray(sparsemax.sparsemax(jnp.asarray(z)))
  np.testing.assert_allclose(ours, _np(t_sparsemax(torch.from_numpy(z))), atol=TOL)
  np.testing.assert_allclose(ours, _np_simplex_projection(z), atol=TOL)
  np.testing.assert_allclose(ours.sum(-1), 1.0, atol=TOL)
  np.testing.assert_allclose(ours[0, 0], 1.0 / 11, atol=TOL)
  np.testing.assert_array_equal(ours[0, 1] > 0, np.arange(11) == 3)
  assert (ours == 0).any() and (ours >= 0).all()
  # another axis
  np.testing.assert_allclose(np.asarray(sparsemax.sparsemax(jnp.asarray(z), axis=1)),
                             np.moveaxis(_np_simplex_projection(np.moveaxis(z, 1, -1)), -1, 1), atol=TOL)


def test_sparsemax_gradient_matches_finite_differences_and_torch_autograd():
  rng = np.random.default_rng(1)
  z = (rng.normal(size=(3, 9)) * 1.5).astype(np.float32)
  w = rng.normal(size=(3, 9)).astype(np.float32)
  # finite differences of the float64 reference (piecewise linear; eps far below the distance to a kink)
  eps = 1e-6
  fd = np.zeros_like(z, dtype=np.float64)
  for idx in np.ndindex(z.shape):
    zp, zm = z.astype(np.float64).copy(), z.astype(np.float64).copy()
    zp[idx] += eps
    zm[idx] -= eps
    fd[idx] = ((w * _np_simplex_projection(zp)).sum() - (w * _np_simplex_projection(zm)).sum()) / (2 * eps)
  grad = np.asarray(jax.grad(lambda v: jnp.sum(jnp.asarray(w) * sparsemax.sparsemax(v)))(jnp.asarray(z)))
  np.testing.assert_allclose(grad, fd, atol=TOL)
  zt = torch.from_numpy(z).requires_grad_(True)
  (torch.from_numpy(w) * t_sparsemax(zt)).sum().backward()
  np.testing.assert_allclose(grad, _np(zt.grad), atol=TOL)
  # forward mode (the custom JVP) agrees with the full Jacobian from reverse mode
  jac_fwd = jax.jacfwd(sparsemax.sparsemax)(jnp.asarray(z[0]))
  jac_rev = jax.jacrev(sparsemax.sparsemax)(jnp.asarray(z[0]))
  np.testing.assert_allclose(np.asarray(jac_fwd), np.asarray(jac_rev), atol=TOL)


# ---------------------------------------------------------------------------------------------------------------
# SST
# ---------------------------------------------------------------------------------------------------------------
def _sst_pair(logit_scale=None):
  torch.manual_seed(0)
  ref = TSST(16, 10, 8)
  _randomise(ref, 6)
  with torch.no_grad():
    ref.logit_scale.fill_(math.log(1 / 0.07) if logit_scale is None else logit_scale)
  ours = sst.SSTNetwork(sst.SSTConfig(video_dim=16, text_dim=16, sd_num=10, sd_dim=8), rngs=nnx.Rngs(0))
  pure = _load(ours, ref)
  return ref, ours, pure


def _sst_loss_fn(model, va, vb, ta, tb):
  out = model(va, vb, ta, tb)
  return hs_losses.sst_loss(out['logits'], weight=1.0), out


_sst_value_and_grad = nnx.jit(nnx.value_and_grad(_sst_loss_fn, has_aux=True))


@pytest.mark.parametrize('logit_scale', [None, 5.0])  # default init; exp(5) = 148 > 100 is clamped
def test_sst_forward_loss_and_gradients_match_torch(logit_scale):
  ref, ours, pure = _sst_pair(logit_scale)
  _assert_params_covered(ours, pure)
  rng = np.random.default_rng(7)
  va, vb = (rng.normal(size=(3, 6, 16)).astype(np.float32) for _ in range(2))
  ta, tb = (rng.normal(size=(3, 4, 16)).astype(np.float32) for _ in range(2))
  z_ref = ref(*(torch.from_numpy(a) for a in (va, vb, ta, tb)))
  loss_ref = t_sst_loss(z_ref, weight=1.0)
  loss_ref.backward()

  (loss, out), grads = _sst_value_and_grad(ours, *(jnp.asarray(a) for a in (va, vb, ta, tb)))
  np.testing.assert_allclose(np.asarray(out['logits']), _np(z_ref), atol=TOL, rtol=TOL)
  np.testing.assert_allclose(float(loss), loss_ref.item(), atol=TOL, rtol=TOL)
  assert np.abs(np.asarray(out['logits'])).max() <= 100.0 + 1e-4
  for name, ref_grad in [('space_dict', ref.space_dict.grad), ('logit_scale', ref.logit_scale.grad)]:
    np.testing.assert_allclose(np.asarray(getattr(grads, name)[...]), _np(ref_grad), atol=TOL, rtol=1e-4,
                               err_msg=name)
  np.testing.assert_allclose(np.asarray(grads.video_query_model.q_map[1].kernel[...]),
                             _np(ref.video_query_model.q_map[1].weight.grad).T, atol=TOL, rtol=1e-4)


def test_sst_loss_targets_and_symmetry():
  y = np.asarray(hs_losses.sst_targets(3))
  expected = np.zeros((6, 6))
  for i in range(6):
    expected[i, i] = expected[i, (i + 3) % 6] = 1
  np.testing.assert_array_equal(y, expected)
  z = np.random.default_rng(8).normal(size=(6, 6)).astype(np.float32) * 4
  ref = t_sst_loss(torch.from_numpy(z), weight=2.0)
  np.testing.assert_allclose(float(hs_losses.sst_loss(jnp.asarray(z), weight=2.0)), float(ref), atol=TOL, rtol=TOL)


def test_sst_masked_pooling_option_ignores_padding():
  _, ours, _ = _sst_pair()
  masked = sst.SSTNetwork(sst.SSTConfig(video_dim=16, text_dim=16, sd_num=10, sd_dim=8, masked_pooling=True),
                          rngs=nnx.Rngs(0))
  nnx.update(masked, nnx.state(ours))
  x = np.random.default_rng(9).normal(size=(1, 6, 16)).astype(np.float32)
  padded = np.concatenate([x, np.zeros((1, 3, 16), np.float32)], axis=1)
  mask = (np.arange(9) < 6)[None]
  unpadded = np.asarray(ours.embed_video(jnp.asarray(x)))
  np.testing.assert_allclose(np.asarray(masked.embed_video(jnp.asarray(padded), jnp.asarray(mask))), unpadded,
                             atol=TOL)
  # the original pools the padded positions too, so padding changes the embedding
  assert not np.allclose(np.asarray(ours.embed_video(jnp.asarray(padded))), unpadded, atol=TOL)


# ---------------------------------------------------------------------------------------------------------------
# KL self-distillation terms
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('step', [0, 1000, 3999, 4000, 9000])
def test_kl_terms_match_torch_with_warmup(step):
  rng = np.random.default_rng(step)
  l1, l2 = (rng.normal(size=(2, 5, 11)).astype(np.float32) * 3 for _ in range(2))
  h1, h2 = (rng.normal(size=(2, 7, 16)).astype(np.float32) for _ in range(2))
  kl_ref = t_sym_kl(torch.from_numpy(l1), torch.from_numpy(l2)) / 2 * t_warmup(step, 5.0, 4000)
  gkl_ref = t_sym_kl(torch.from_numpy(h1), torch.from_numpy(h2)) / 2 * t_warmup(step, 1.0, 4000)
  out = hs_losses.auxiliary_losses(hs_losses.HyperSignLossConfig(), step,
                                   decoder_logits=(jnp.asarray(l1), jnp.asarray(l2)),
                                   encoder_hidden=(jnp.asarray(h1), jnp.asarray(h2)))
  np.testing.assert_allclose(float(out['kl_loss']), float(kl_ref), atol=TOL, rtol=TOL)
  np.testing.assert_allclose(float(out['gkl_loss']), float(gkl_ref), atol=TOL, rtol=TOL)
  assert float(out['kl_factor']) == pytest.approx(t_warmup(step, 5.0, 4000))
  assert float(out['gkl_factor']) == pytest.approx(t_warmup(step, 1.0, 4000))


def test_kl_padding_mask_switch():
  rng = np.random.default_rng(3)
  l1, l2 = (rng.normal(size=(2, 5, 11)).astype(np.float32) for _ in range(2))
  h1, h2 = (rng.normal(size=(2, 7, 16)).astype(np.float32) for _ in range(2))
  tmask = np.arange(5)[None] < np.array([[5], [2]])
  emask = np.arange(7)[None] < np.array([[4], [7]])
  args = dict(decoder_logits=(jnp.asarray(l1), jnp.asarray(l2)), encoder_hidden=(jnp.asarray(h1), jnp.asarray(h2)),
              target_mask=jnp.asarray(tmask), encoder_mask=jnp.asarray(emask))
  original = hs_losses.auxiliary_losses(hs_losses.HyperSignLossConfig(), 5000, **args)
  masked = hs_losses.auxiliary_losses(hs_losses.HyperSignLossConfig(mask_padding=True), 5000, **args)
  kl_valid = t_sym_kl(torch.from_numpy(l1[tmask]), torch.from_numpy(l2[tmask])) / 2 * 5.0
  gkl_valid = t_sym_kl(torch.from_numpy(h1[emask]), torch.from_numpy(h2[emask])) / 2 * 1.0
  np.testing.assert_allclose(float(masked['kl_loss']), float(kl_valid), atol=TOL, rtol=TOL)
  np.testing.assert_allclose(float(masked['gkl_loss']), float(gkl_valid), atol=TOL, rtol=TOL)
  assert float(original['kl_loss']) > float(masked['kl_loss'])  # the original also sums the padded positions
  same = hs_losses.decoder_kl_loss(jnp.asarray(l1), jnp.asarray(l1), 5000)
  assert float(same) == pytest.approx(0.0, abs=1e-6)  # identical views (eval) give zero


# ---------------------------------------------------------------------------------------------------------------
# Partial shortcut connection
# ---------------------------------------------------------------------------------------------------------------
def _psc_inputs():
  rng = np.random.default_rng(11)
  return tuple(jnp.asarray(rng.normal(size=(2, 3, 4)).astype(np.float32)) for _ in range(3))


def test_psc_sigma_schedule_and_counter():
  cfg = psc.PSCConfig(final_step=100)
  module = psc.PartialShortcut(cfg, rngs=nnx.Rngs(0))
  fused, rgb, kp = _psc_inputs()
  module.train()
  for step, sigma in [(0, 0.5), (25, 0.3775), (50, 0.255), (99, 0.0149)]:
    module.step[...] = jnp.int32(step)
    out = module(fused, rgb, kp)
    assert float(out['sigma']) == pytest.approx(sigma, abs=1e-6)
    assert int(module.step[...]) == step + 1  # one increment per training forward
    assert 0.0 <= float(out['lambda1']) <= 1.0 and 0.0 <= float(out['lambda2']) <= 1.0
    # original nesting: view 2 is mixed from view 1
    np.testing.assert_allclose(np.asarray(out['view1']),
                               np.asarray(out['lambda1'] * rgb + (1 - out['lambda1']) * fused), atol=TOL)
    np.testing.assert_allclose(np.asarray(out['view2']),
                               np.asarray(out['lambda2'] * kp + (1 - out['lambda2']) * out['view1']), atol=TOL)
  assert float(psc.psc_sigma(17760 // 2, psc.PSCConfig())) == pytest.approx(0.255, abs=1e-6)
  # the counter is model state (so it is checkpointed)
  assert isinstance(nnx.state(module, psc.PSCStep)['step'], psc.PSCStep)


def test_psc_views_equal_fused_after_schedule_and_in_eval():
  fused, rgb, kp = _psc_inputs()
  module = psc.PartialShortcut(psc.PSCConfig(final_step=10), rngs=nnx.Rngs(0))
  module.train()
  module.step[...] = jnp.int32(10)
  out = module(fused, rgb, kp)
  np.testing.assert_array_equal(np.asarray(out['view1']), np.asarray(fused))
  np.testing.assert_array_equal(np.asarray(out['view2']), np.asarray(fused))
  module.step[...] = jnp.int32(0)
  module.eval()
  out = module(fused, rgb, kp)
  np.testing.assert_array_equal(np.asarray(out['view1']), np.asarray(fused))
  np.testing.assert_array_equal(np.asarray(out['view2']), np.asarray(fused))
  assert int(module.step[...]) == 0  # eval does not advance the schedule
  module.train()
  out = module(fused, rgb, kp)
  assert not np.allclose(np.asarray(out['view1']), np.asarray(fused))


def test_psc_counter_advances_through_a_jitted_functional_step_and_paper_variant():
  fused, rgb, kp = _psc_inputs()
  module = psc.PartialShortcut(psc.PSCConfig(final_step=10, view2_source='fused'), rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(module)

  @jax.jit
  def step_fn(state):
    m = nnx.merge(graphdef, state)
    out = m(fused, rgb, kp)
    return out, nnx.state(m)

  for expected in (1, 2, 3):
    out, state = step_fn(state)
    assert int(state['step'][...]) == expected
  np.testing.assert_allclose(np.asarray(out['view2']),
                             np.asarray(out['lambda2'] * kp + (1 - out['lambda2']) * fused), atol=TOL)


def test_psc_lambda_is_a_truncated_half_normal():
  keys = jax.random.split(jax.random.key(0), 20000)
  for sigma in (0.5, 0.1):
    lam = np.asarray(jax.vmap(lambda k: psc.sample_lambda(k, jnp.float32(sigma)))(keys))
    dist = scipy.stats.truncnorm(0.0, 1.0 / sigma, loc=0.0, scale=sigma)
    assert lam.min() >= 0.0 and lam.max() <= 1.0
    assert lam.mean() == pytest.approx(dist.mean(), abs=4 * dist.std() / math.sqrt(len(lam)))
