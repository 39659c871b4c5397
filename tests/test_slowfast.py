"""SlowFast + BFF backbone: R101 geometry (shapes, parameter count, original key names) without compute, and
numerical equivalence of BFF, a bottleneck block and a whole tiny network with PyTorch references written here
from the facts in SLOWFASTSIGN.md §2 (state-dict names as in the original's key listing)."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from hypersign_jax.models import slowfast as sf



@pytest.fixture(autouse=True, scope="module")
def _no_torch_grad():
  """The references only run forward; restore autograd for the other test modules afterwards."""
  with torch.no_grad():
    yield


# ----------------------------------------------------------------------------------------------------------
# PyTorch references (NCTHW), names as in the original's `conv2d.` state dict
# ----------------------------------------------------------------------------------------------------------

def _tconv(d_in, d_out, kernel, stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), groups=1):
  return nn.Conv3d(d_in, d_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                   bias=False)


class TorchStem(nn.Module):

  def __init__(self, d_in, d_out, kt):
    super().__init__()
    self.conv = _tconv(d_in, d_out, (kt, 7, 7), (1, 2, 2), (kt // 2, 3, 3))
    self.bn = nn.BatchNorm3d(d_out, eps=1e-5, momentum=0.1)

  def forward(self, x):
    return F.max_pool3d(F.relu(self.bn(self.conv(x))), (1, 3, 3), (1, 2, 2), (0, 1, 1))


class TorchBranch2(nn.Module):

  def __init__(self, d_in, d_out, d_inner, kt, stride, dilation=1, groups=1):
    super().__init__()
    self.a = _tconv(d_in, d_inner, (kt, 1, 1), padding=(kt // 2, 0, 0))
    self.a_bn = nn.BatchNorm3d(d_inner)
    self.b = _tconv(d_inner, d_inner, (1, 3, 3), (1, stride, stride), (0, dilation, dilation),
                    (1, dilation, dilation), groups)
    self.b_bn = nn.BatchNorm3d(d_inner)
    self.c = _tconv(d_inner, d_out, (1, 1, 1))
    self.c_bn = nn.BatchNorm3d(d_out)

  def forward(self, x):
    x = F.relu(self.a_bn(self.a(x)))
    x = F.relu(self.b_bn(self.b(x)))
    return self.c_bn(self.c(x))


class TorchResBlock(nn.Module):

  def __init__(self, d_in, d_out, d_inner, kt, stride, dilation=1, groups=1):
    super().__init__()
    self.proj = d_in != d_out or stride != 1
    if self.proj:
      self.branch1 = _tconv(d_in, d_out, (1, 1, 1), (1, stride, stride))
      self.branch1_bn = nn.BatchNorm3d(d_out)
    self.branch2 = TorchBranch2(d_in, d_out, d_inner, kt, stride, dilation, groups)

  def forward(self, x):
    short = self.branch1_bn(self.branch1(x)) if self.proj else x
    return F.relu(short + self.branch2(x))


class TorchFuseBiAdd(nn.Module):

  def __init__(self, dim_in, beta_inv=8, alpha=4, k=5):
    super().__init__()
    self.weight_s = nn.Parameter(torch.zeros(1))
    self.weight_f = nn.Parameter(torch.zeros(1))
    self.conv_f2s = _tconv(dim_in, dim_in * beta_inv, (k, 1, 1), (alpha, 1, 1), (k // 2, 0, 0))
    self.bn = nn.BatchNorm3d(dim_in * beta_inv)
    self.conv_s2f = _tconv(dim_in * beta_inv, dim_in, (1, 1, 1))
    self.bn2 = nn.BatchNorm3d(dim_in)

  def forward(self, xs):
    x_s, x_f = xs
    f2s = F.relu(self.bn(self.conv_f2s(x_f)))
    s2f = F.relu(self.bn2(self.conv_s2f(x_s)))
    s2f = F.interpolate(s2f, size=x_f.shape[2:], mode='nearest')
    return [x_s + self.weight_s * f2s, x_f + self.weight_f * s2f]


class TorchPathways(nn.Module):
  """A container whose children are named pathway{p}_stem / pathway{p}_res{i}."""

  def forward(self, xs):
    names = [n for n, _ in self.named_children()]
    out = []
    for p, x in enumerate(xs):
      for n in names:
        if n.startswith(f'pathway{p}_'):
          x = getattr(self, n)(x)
      out.append(x)
    return out


class TorchSlowFast(nn.Module):
  """SlowFast with FuseBiAdd and the per-frame head, from a `SlowFastConfig` (bff fusion)."""

  def __init__(self, cfg):
    super().__init__()
    self.alpha = cfg.alpha
    self.s1 = TorchPathways()
    for p, d in enumerate((cfg.slow_width(1), cfg.fast_width(1))):
      self.s1.add_module(f'pathway{p}_stem', TorchStem(3, d, cfg.temporal_kernels[0][p]))
    for stage in range(2, 6):
      s, k = stage - 2, stage - 1
      self.add_module(f's{k}_fuse', TorchFuseBiAdd(cfg.fast_width(k), cfg.beta_inv, cfg.alpha,
                                                   cfg.fusion_kernel_sz))
      mod = TorchPathways()
      for p in range(2):
        width = [cfg.slow_width, cfg.fast_width][p]
        d_in, d_out = width(k), width(stage)
        d_inner = cfg.width_per_group * 2 ** s // (1 if p == 0 else cfg.beta_inv)
        for i in range(cfg.stage_blocks[s]):
          kt = cfg.temporal_kernels[stage - 1][p] if i < cfg.num_block_temp_kernel[s][p] else 1
          mod.add_module(f'pathway{p}_res{i}', TorchResBlock(d_in if i == 0 else d_out, d_out, d_inner, kt,
                                                             cfg.spatial_strides[s][p] if i == 0 else 1))
      self.add_module(f's{stage}', mod)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def forward(self, x):  # (B, C, T, H, W)
    xs = [x[:, :, ::self.alpha], x]
    xs = self.s1(xs)
    for stage in range(2, 6):
      xs = getattr(self, f's{stage - 1}_fuse')(xs)
      xs = getattr(self, f's{stage}')(xs)
    pooled = [F.avg_pool3d(t, (1,) + tuple(t.shape[3:]), stride=1) for t in xs]
    pooled[0] = F.interpolate(pooled[0], scale_factor=(self.alpha, 1, 1), mode='nearest')
    return self.dropout(torch.cat(pooled, dim=1)).flatten(2)  # (B, C_s + C_f, T)


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------

def _our_name(key, ndim):
  """Original state-dict key -> our variable path (None for num_batches_tracked)."""
  *mods, leaf = key.split('.')
  if leaf == 'num_batches_tracked':
    return None
  leaf = {'weight': 'kernel' if ndim == 5 else 'scale', 'running_mean': 'mean', 'running_var': 'var'}.get(leaf, leaf)
  return '.'.join(mods + [leaf])


def _our_array(t):
  a = t.detach().numpy()
  return a.transpose(2, 3, 4, 1, 0) if a.ndim == 5 else a


def _flat_vars(model):
  flat = nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))
  return {'.'.join(str(p) for p in path): v for path, v in flat}


def load_torch(model, module):
  """Copies every tensor of a reference module into `model` (concrete or abstract); asserts the names map one
  to one, so afterwards every parameter and BN statistic of `model` comes from `module`."""
  ours = _flat_vars(model)
  seen = set()
  for key, t in module.state_dict().items():
    name = _our_name(key, t.ndim)
    if name is None:
      continue
    assert name in ours, f'{key} -> {name} has no counterpart'
    a = _our_array(t)
    assert tuple(ours[name].shape) == a.shape, (key, ours[name].shape, a.shape)
    ours[name].set_value(jnp.asarray(a))
    seen.add(name)
  assert seen == set(ours), f'not loaded: {sorted(set(ours) - seen)[:5]}'


def seed_rng_state(model, seed=0):
  """Concrete dropout RNG state for a model built with nnx.eval_shape."""
  for _, v in nnx.to_flat_state(nnx.state(model, nnx.RngState)):
    v.set_value(jax.random.key(seed) if isinstance(v, nnx.RngKey) else jnp.zeros((), jnp.uint32))


def abstract(ctor):
  """Builds a module without running its initialisers. On these CPUs every distinct parameter shape costs one
  XLA compilation of the RNG, so tests that overwrite all weights anyway skip the init."""
  return nnx.eval_shape(ctor)


def randomize(module, seed):
  """Random conv weights and BN affine/statistics (so eval-mode BN is not the identity), nonzero BFF scalars."""
  g = torch.Generator().manual_seed(seed)
  for name, t in module.state_dict().items():
    if 'num_batches' in name:
      continue
    if name.endswith('running_var'):
      t.copy_(0.5 + torch.rand(t.shape, generator=g))
    elif name.endswith(('weight_s', 'weight_f')):
      t.copy_(0.5 + torch.rand(t.shape, generator=g))
    elif t.ndim == 5:
      fan_in = math.prod(t.shape[1:])
      t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    else:
      t.copy_(0.3 * torch.randn(t.shape, generator=g) + (1.0 if name.endswith('weight') else 0.0))


def _to_torch(x):  # (B, T, H, W, C) -> (B, C, T, H, W)
  return torch.from_numpy(np.asarray(x).transpose(0, 4, 1, 2, 3).copy())


def _from_torch(t):  # (B, C, T, H, W) -> (B, T, H, W, C)
  return t.numpy().transpose(0, 2, 3, 4, 1)


_forward = nnx.jit(lambda model, x: model(x))

# Small enough to compile fast, still with a res4 block past num_block_temp_kernel (temporal kernel 1).
TINY = sf.slowfast_tiny(blocks=(1, 1, 2, 1), num_block_temp_kernel=((1, 1), (1, 1), (1, 1), (1, 1)))
# R101 widths and kernels with one block per stage (cheap to trace).
SHALLOW_R101 = sf.slowfast_r101(blocks=(1, 1, 1, 1), num_block_temp_kernel=((1, 1),) * 4)


@pytest.fixture(scope='module')
def r101():
  """Abstract R101 model (no allocation) and the eval_shape of its stages at B=2, T=48, 224 px."""
  model = abstract(lambda: sf.SlowFast(sf.slowfast_r101(), rngs=nnx.Rngs(0)))
  model.eval()  # same shapes; tracing train-mode BN updates of 216 BNs costs flax ~25 s here
  graphdef, state = nnx.split(model)

  def run(state, x):
    m = nnx.merge(graphdef, state)
    stages = m.stages(x)
    return stages, m.head(*stages['s5'])

  shapes = jax.eval_shape(run, state, jax.ShapeDtypeStruct((2, 48, 224, 224, 3), jnp.float32))
  return model, shapes


@pytest.fixture(scope='module')
def tiny_pair():
  """(torch reference, our model with its weights, input, reference output (B, T, C)) in eval mode."""
  ref = TorchSlowFast(TINY).eval()
  randomize(ref, 2)
  model = abstract(lambda: sf.SlowFast(TINY, rngs=nnx.Rngs(0)))
  load_torch(model, ref)
  seed_rng_state(model)
  model.eval()
  x = np.random.default_rng(2).standard_normal((2, 8, 32, 32, 3)).astype(np.float32)
  want = ref(_to_torch(x)).numpy().transpose(0, 2, 1)
  return ref, model, x, want


# ----------------------------------------------------------------------------------------------------------
# R101 geometry (no compute)
# ----------------------------------------------------------------------------------------------------------

def test_r101_stage_shapes_equal_measured_table(r101):
  """SLOWFASTSIGN.md §2 'Shapes measured with hooks (B=2, T=48 at 224²)', in channel-last layout."""
  _, (stages, head) = r101
  table = {  # after: (slow NCTHW, fast NCTHW)
      's1': ((2, 64, 12, 56, 56), (2, 8, 48, 56, 56)),
      's1_fuse': ((2, 64, 12, 56, 56), (2, 8, 48, 56, 56)),
      's2': ((2, 256, 12, 56, 56), (2, 32, 48, 56, 56)),
      's3': ((2, 512, 12, 28, 28), (2, 64, 48, 28, 28)),
      's4': ((2, 1024, 12, 14, 14), (2, 128, 48, 14, 14)),
      's5': ((2, 2048, 12, 7, 7), (2, 256, 48, 7, 7)),
  }
  for name, pair in table.items():
    for got, (b, c, t, h, w) in zip(stages[name], pair):
      assert got.shape == (b, t, h, w, c), (name, got.shape)
  for k in (2, 3, 4):  # fusion adds, so it keeps the shapes
    assert [s.shape for s in stages[f's{k}_fuse']] == [s.shape for s in stages[f's{k}']]
  assert head.shape == (2, 48, 2304)  # the original's (2, 2304, 48)


def test_output_dict_shapes_at_r101_widths():
  """Widths do not depend on the depth, so one block per stage gives R101's 2048 + 256 = 2304 per-frame features."""
  model = abstract(lambda: sf.SlowFast(SHALLOW_R101, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                       jax.ShapeDtypeStruct((1, 8, 224, 224, 3), jnp.float32))
  assert {k: v.shape for k, v in out.items()} == {'fused': (1, 8, 2304), 'slow': (1, 8, 2048), 'fast': (1, 8, 256)}


def test_r101_parameter_count_equals_original_backbone(r101):
  """SLOWFASTSIGN.md §7: conv2d = 52,482,688 = slow 50,626,624 + fast 816,616 + BFF 1,039,448 (the sum of the
  key-listing shapes without BN running statistics)."""
  model, _ = r101
  groups = {'pathway0': 0, 'pathway1': 0, '_fuse': 0}
  total = 0
  for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    n = math.prod(v.shape)
    total += n
    groups[next(g for g in groups if any(g in str(p) for p in path))] += n
  assert total == 52_482_688
  assert groups == {'pathway0': 50_626_624, 'pathway1': 816_616, '_fuse': 1_039_448}


def test_r101_names_map_one_to_one_to_original_keys(r101):
  """Every original `conv2d.` key (1304 with num_batches_tracked) maps to exactly one variable of the same
  (transposed) shape; sample shapes are copied from keys/slowfastsign_state_dict.txt."""
  model, _ = r101
  with torch.device('meta'):
    ref = TorchSlowFast(sf.slowfast_r101())
  sd = ref.state_dict()
  assert len(sd) == 1304
  listing = {
      's1.pathway0_stem.conv.weight': (64, 3, 1, 7, 7),
      's1.pathway1_stem.conv.weight': (8, 3, 5, 7, 7),
      's2.pathway1_res0.branch2.a.weight': (8, 8, 3, 1, 1),
      's2.pathway1_res0.branch1.weight': (32, 8, 1, 1, 1),
      's3.pathway0_res0.branch2.b.weight': (128, 128, 1, 3, 3),
      's4.pathway0_res0.branch2.a.weight': (256, 512, 3, 1, 1),
      's4.pathway0_res6.branch2.a.weight': (256, 1024, 1, 1, 1),
      's4.pathway1_res5.branch2.a.weight': (32, 128, 3, 1, 1),
      's4.pathway1_res6.branch2.a.weight': (32, 128, 1, 1, 1),
      's5.pathway0_res0.branch1.weight': (2048, 1024, 1, 1, 1),
      's5.pathway0_res0.branch2.a.weight': (512, 1024, 3, 1, 1),
      's5.pathway1_res2.branch2.c.weight': (256, 64, 1, 1, 1),
      's1_fuse.conv_f2s.weight': (64, 8, 5, 1, 1),
      's4_fuse.conv_f2s.weight': (1024, 128, 5, 1, 1),
      's3_fuse.conv_s2f.weight': (64, 512, 1, 1, 1),
      's2_fuse.bn2.running_var': (32,),
      's4_fuse.weight_s': (1,),
  }
  ours = _flat_vars(model)
  for key, shape in listing.items():
    assert tuple(sd[key].shape) == shape, key
  mapped = {}
  for key, t in sd.items():
    name = _our_name(key, t.ndim)
    if name is not None:
      shape = tuple(t.shape)
      mapped[name] = tuple(shape[i] for i in (2, 3, 4, 1, 0)) if len(shape) == 5 else shape
  assert set(mapped) == set(ours)
  assert all(tuple(ours[n].shape) == s for n, s in mapped.items())


def test_concat_fusion_widens_slow_inputs_like_pyslowfast():
  """'concat' (FuseFastToSlow): slow stage inputs 80/320/640/1280, conv_f2s 8->16 (fusion ratio 2)."""
  model = abstract(lambda: sf.SlowFast(dataclasses.replace(SHALLOW_R101, fusion='concat'), rngs=nnx.Rngs(0)))
  for stage, d_in in zip(range(2, 6), (80, 320, 640, 1280)):
    blk = getattr(model, f's{stage}').pathway0_res0
    assert blk.branch2.a.kernel.shape[-2] == d_in and blk.branch1.kernel.shape[-2] == d_in
  assert model.s1_fuse.conv_f2s.kernel.shape == (5, 1, 1, 8, 16)
  assert not hasattr(model.s1_fuse, 'conv_s2f')
  graphdef, state = nnx.split(model)
  stages = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).stages(x), state,
                          jax.ShapeDtypeStruct((1, 8, 64, 64, 3), jnp.float32))
  assert stages['s2_fuse'][0].shape == (1, 2, 16, 16, 320) and stages['s5'][0].shape[-1] == 2048


# ----------------------------------------------------------------------------------------------------------
# Numerics vs PyTorch (eval mode)
# ----------------------------------------------------------------------------------------------------------

def test_fuse_bi_add_matches_torch_reference():
  cfg = sf.slowfast_tiny(alpha=4, beta_inv=8)
  ref = TorchFuseBiAdd(dim_in=3, beta_inv=8, alpha=4, k=5).eval()
  randomize(ref, 0)
  assert float(ref.weight_s) != 0 and float(ref.weight_f) != 0
  ours = abstract(lambda: sf.FuseBiAdd(3, 24, cfg, rngs=nnx.Rngs(0)))
  load_torch(ours, ref)
  ours.eval()
  rng = np.random.default_rng(0)
  x_s = rng.standard_normal((2, 3, 5, 4, 24)).astype(np.float32)
  x_f = rng.standard_normal((2, 12, 5, 4, 3)).astype(np.float32)
  got = nnx.jit(lambda m, a, b: m([a, b]))(ours, jnp.asarray(x_s), jnp.asarray(x_f))
  want = ref([_to_torch(x_s), _to_torch(x_f)])
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), _from_torch(w), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kt,stride,d_in', [(3, 2, 6), (1, 1, 16)])
def test_bottleneck_block_matches_torch_reference(kt, stride, d_in):
  """Temporal kernel 3 with "same" padding, spatial stride 2 in conv b, projection shortcut; and an identity
  shortcut block with temporal kernel 1."""
  cfg = sf.slowfast_tiny()
  ref = TorchResBlock(d_in, 16, 4, kt, stride).eval()
  randomize(ref, 1)
  ours = abstract(lambda: sf.ResBlock(d_in, 16, 4, kt, stride, 1, cfg, rngs=nnx.Rngs(0)))
  assert ours.has_branch1 == (stride != 1 or d_in != 16)
  load_torch(ours, ref)
  ours.eval()
  x = np.random.default_rng(1).standard_normal((2, 5, 9, 8, d_in)).astype(np.float32)
  got = np.asarray(_forward(ours, jnp.asarray(x)))
  want = _from_torch(ref(_to_torch(x)))
  assert got.shape == want.shape == (2, 5, 5 if stride == 2 else 9, 4 if stride == 2 else 8, 16)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_tiny_slowfast_matches_torch_reference(tiny_pair):
  """Whole network: pathway sampling, stems + max pool, all stages with their temporal kernels, BFF with
  non-zero scalars, per-frame head with slow repeated x alpha and [slow, fast] order."""
  _, model, x, want = tiny_pair
  assert model.s4.pathway0_res1.branch2.a.kernel.shape[0] == 1  # past num_block_temp_kernel
  assert model.s4.pathway0_res0.branch2.a.kernel.shape[0] == 3
  out = _forward(model, jnp.asarray(x))
  assert out['fused'].shape == want.shape == (2, 8, 512 + 128)
  scale = float(np.abs(want).max())
  np.testing.assert_allclose(np.asarray(out['fused']), want, atol=1e-6 * scale, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(out['slow']), np.asarray(out['fused'][..., :512]))
  np.testing.assert_array_equal(np.asarray(out['fast']), np.asarray(out['fused'][..., 512:]))


def test_bfloat16_compute_keeps_float32_params():
  """bfloat16 compute on a bottleneck block with torch weights: float32 parameters, bfloat16 activations, close
  to the float32 reference; the whole network's outputs are bfloat16 too."""
  cfg16 = dataclasses.replace(TINY, dtype=jnp.bfloat16)
  ref = TorchResBlock(16, 32, 8, 3, 2).eval()
  randomize(ref, 5)
  ours = abstract(lambda: sf.ResBlock(16, 32, 8, 3, 2, 1, cfg16, rngs=nnx.Rngs(0)))
  load_torch(ours, ref)
  ours.eval()
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(ours, nnx.Param)))
  x = np.random.default_rng(5).standard_normal((2, 4, 8, 8, 16)).astype(np.float32)
  out = _forward(ours, jnp.asarray(x))
  assert out.dtype == jnp.bfloat16
  want = _from_torch(ref(_to_torch(x)))
  assert float(np.abs(np.asarray(out, np.float32) - want).max()) < 0.02 * float(np.abs(want).max())
  model = abstract(lambda: sf.SlowFast(cfg16, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  shapes = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                          jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32))
  assert all(v.dtype == jnp.bfloat16 for v in shapes.values())


# ----------------------------------------------------------------------------------------------------------
# Initialisation and behaviour
# ----------------------------------------------------------------------------------------------------------

def test_bff_is_identity_at_init():
  """With weight_s = weight_f = 0 (their init), BFF SlowFast equals SlowFast without lateral connections given
  the same pathway weights, in train mode (batch-statistics BN, so the fuse branches do run); non-zero scalars
  change the output."""
  cfg = dataclasses.replace(TINY, dropout_rate=0.0, blocks=(1, 1, 1, 1))
  bff = abstract(lambda: sf.SlowFast(cfg, rngs=nnx.Rngs(0)))
  plain = abstract(lambda: sf.SlowFast(dataclasses.replace(cfg, fusion='none'), rngs=nnx.Rngs(0)))
  ref = TorchSlowFast(cfg)
  randomize(ref, 3)
  for k in range(1, 5):
    getattr(ref, f's{k}_fuse').weight_s.zero_()
    getattr(ref, f's{k}_fuse').weight_f.zero_()
  load_torch(bff, ref)
  plain_vars = _flat_vars(plain)
  for name, v in _flat_vars(bff).items():
    if '_fuse' not in name:
      plain_vars[name].set_value(v[...])
  assert all('_fuse' not in n for n in plain_vars) and not hasattr(plain, 's1_fuse')
  for m in (bff, plain):
    seed_rng_state(m)
    m.train()
  x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 8, 32, 32, 3)), jnp.float32)
  both = nnx.jit(lambda m1, m2, x: (m1(x)['fused'], m2(x)['fused']))
  a, b = both(bff, plain, x)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(bff.s1_fuse.bn.mean[...].std()) > 0  # the fuse branches did run (batch statistics updated)
  bff.s2_fuse.weight_f[...] = jnp.ones((1,))
  a, b = both(bff, plain, x)
  assert float(np.abs(np.asarray(a) - np.asarray(b)).max()) > 1e-3


def test_init_zero_last_bn_and_kaiming_fan_out():
  """PySlowFast init: conv kaiming-normal fan_out (std sqrt(2 / (O kT kH kW))), BN scale 1 / bias 0 except
  branch2.c_bn scale 0, BFF scalars 0. Checked on one block of R101's s2 width, a stem and a BFF module (the
  whole network uses the same constructors)."""
  cfg = sf.slowfast_r101()
  rngs = nnx.Rngs(jax.random.key(0, impl='rbg'))  # rbg: cheap to compile on CPU
  mods = {'block': sf.ResBlock(64, 256, 64, 3, 1, 1, cfg, rngs=rngs),
          'stem': sf.ResNetBasicStem(3, 64, 1, cfg, rngs=rngs),
          'fuse': sf.FuseBiAdd(32, 256, cfg, rngs=rngs)}
  checked = 0
  for mod in mods.values():
    for name, v in _flat_vars(mod).items():
      a = np.asarray(v[...])
      if name.endswith('c_bn.scale'):
        assert not a.any(), name
        checked += 1
      elif name.endswith(('.scale', '.var')):
        assert (a == 1).all(), name
      elif name.endswith(('bias', '.mean')):
        assert not a.any(), name
      elif name.endswith('kernel'):
        kt, kh, kw, _, d_out = a.shape
        want = math.sqrt(2.0 / (d_out * kt * kh * kw))
        assert abs(a.std() / want - 1) < 0.05, (name, a.std(), want)
        assert abs(a.mean()) < 0.05 * want, name
        checked += 1
  assert checked == 1 + 4 + 1 + 2
  assert float(mods['fuse'].weight_s[0]) == 0.0 and float(mods['fuse'].weight_f[0]) == 0.0


def test_head_repeats_slow_and_applies_dropout_only_in_train():
  head = sf.PerFrameHead(TINY, rngs=nnx.Rngs(jax.random.key(0, impl='rbg')))
  rng = np.random.default_rng(4)
  x_s = jnp.asarray(rng.uniform(1, 2, (2, 3, 2, 2, 6)), jnp.float32)
  x_f = jnp.asarray(rng.uniform(1, 2, (2, 12, 2, 2, 5)), jnp.float32)
  head.eval()
  out = np.asarray(head(x_s, x_f))
  assert out.shape == (2, 12, 11)
  np.testing.assert_allclose(out[:, 4:8, :6], np.repeat(np.asarray(x_s.mean((2, 3)))[:, 1:2], 4, 1), rtol=1e-6)
  np.testing.assert_allclose(out[:, :, 6:], np.asarray(x_f.mean((2, 3))), rtol=1e-6)
  head.train()
  dropped = np.asarray(head(x_s, x_f))
  kept = dropped != 0
  assert 0.3 < kept.mean() < 0.7
  np.testing.assert_allclose(dropped[kept], 2 * out[kept], rtol=1e-6)  # inverted dropout, rate 0.5


def test_bad_inputs_raise():
  model = abstract(lambda: sf.SlowFast(TINY, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match='multiple of alpha=4'):
    model.stages(jax.ShapeDtypeStruct((1, 6, 32, 32, 3), jnp.float32))
  with pytest.raises(ValueError, match='channel-last'):
    model.stages(jax.ShapeDtypeStruct((1, 3, 8, 32, 32), jnp.float32))
  with pytest.raises(ValueError, match='num_block_temp_kernel'):
    sf.slowfast_tiny(num_block_temp_kernel=((3, 3), (2, 2), (2, 2), (2, 2)))
  with pytest.raises(ValueError, match='fusion'):
    sf.slowfast_tiny(fusion='sum')
