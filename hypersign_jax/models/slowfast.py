"""SlowFast 3-D ResNet backbone with Bi-directional Feature Fusion (BFF), as used by SlowFastSign, in Flax NNX.

SlowFastSign (ICASSP 2024) encodes a sign video with the SlowFast network of Feichtenhofer et al. (PySlowFast's
`video_model_builder.SlowFast`, config `SLOWFAST_64x2_R101_50_50`) in which the lateral fast->slow concatenation
is replaced by BFF (`FuseBiAdd`) and the classification head by a per-frame feature head. This module keeps every
published detail that changes numbers:

* pathway sampling: fast = all T frames, slow = frames 0, alpha, 2*alpha, ... (`x[:, ::alpha]`) of the *padded*
  clip; no convolution or pooling has a temporal stride and every temporal kernel is padded "same", so the slow
  pathway stays at T/alpha frames and the fast one at T throughout;
* stem per pathway: Conv3d (kT,7,7) stride (1,2,2) pad (kT//2,3,3) without bias, BN, ReLU, then MaxPool3d
  (1,3,3) stride (1,2,2) pad (0,1,1); kT = 1 (slow) / 5 (fast);
* bottleneck blocks (STRIDE_1X1=False): a = (kt,1,1) conv, BN, ReLU; b = (1,3,3) conv carrying the spatial stride
  and dilation, BN, ReLU; c = 1x1x1 conv, BN; a 1x1x1 projection + BN shortcut (`branch1`) in the first block of
  each stage; ReLU after the sum; temporal kernel schedule per stage/pathway as in the config
  (slow 1,1,3,3 / fast 3,3,3,3 for res2..res5, with only the first NUM_BLOCK_TEMP_KERNEL blocks of a stage using
  it and the rest kernel 1: res4 blocks 6-22 are 1 in both pathways); SlowFastSign's res5 keeps spatial stride 2
  and dilation 1 (upstream PySlowFast: stride 1, dilation 2); no non-local blocks;
* channel widths: slow stem = width_per_group, stage s output = 4*width_per_group*2^s, inner
  = num_groups*width_per_group*2^s; fast = slow / beta_inv. With BFF the stage inputs are the plain widths
  (64/256/512/1024 at R101); with 'concat' they grow by fusion_conv_channel_ratio * fast width (80/320/640/1280);
* BFF after s1..s4 (none after s5): x_s <- x_s + w_s * ReLU(BN(Conv(5,1,1) stride (alpha,1,1) pad (2,0,0)(x_f)))
  and x_f <- x_f + w_f * nearest_upsample_T(ReLU(BN2(Conv 1x1x1(x_s)))), where the slow->fast branch reads the
  *original* x_s; w_s, w_f are learnable (1,) scalars initialised to 0, so at init the network is a plain
  SlowFast without lateral connections. 'concat' is PySlowFast's FuseFastToSlow (conv_f2s, BN, ReLU, channel
  concat onto slow); 'none' drops the lateral connections altogether (ablation / reference);
* BN eps 1e-5, PyTorch momentum 0.1 (Flax 0.9), two-pass variance; init as PySlowFast's `init_weights`: conv
  kernels kaiming-normal (fan_out, ReLU gain), BN scale 1 / bias 0, except the last BN of every bottleneck
  (`branch2.c_bn`) whose scale is 0;
* head (`ResNetBasicHead` as modified by SlowFastSign): per-frame spatial average of each pathway (AvgPool3d
  (1,7,7) at 224 px; here a global spatial mean, which is the same at 224 px and also works at other resolutions),
  slow features repeated x alpha in time (nearest), concatenated [slow, fast] on channels (2048 + 256 = 2304 at
  R101), elementwise dropout 0.5 in training. No projection layer.

Depth 18 uses *bottleneck* blocks with the ResNet-18 counts (2, 2, 2, 2), as PySlowFast does with its default
`bottleneck_transform`; there is no basic-block variant. `SlowFastConfig.blocks` overrides the per-stage block
counts (small test models); widths never depend on the depth.

Memory: `SlowFastConfig.remat` rematerialises the backbone in the backward pass ('block': every ResBlock, each
stem and fusion is one `jax.checkpoint`; 'stage': every stage s1..s5 and fusion is one; `remat_policy` names
the policy, models/remat.py); the outputs and the parameter paths do not change. Every pathway tensor between
stages carries a batch-sharding hint (`training/sharding.constrain_batch`, a no-op outside a mesh).

Cost notes: in train mode every BN writes its running statistics, and tracing those writes for R101's 216 BNs
costs flax ~20 s of Python (once per compilation); building a model eagerly compiles one RNG program per distinct
parameter shape (slow on small CPUs; tests that overwrite all weights build with `nnx.eval_shape`).

Output of `SlowFast.__call__`: {'fused': (B, T, C_s + C_f), 'slow': (B, T, C_s), 'fast': (B, T, C_f)}. 'slow' and
'fast' are the channel slices `fused[..., :C_s]` and `fused[..., C_s:]` *after* the dropout, which is exactly what
SlowFastSign's PFE branches take (`frame_feat[:, :2048]`, `frame_feat[:, 2048:]`).

Parameter naming (one to one with the original's `conv2d.` state-dict keys; Flax leaf names differ):

  original key                                         this module (nnx attribute path)
  s1.pathway{p}_stem.conv.weight (O,I,T,H,W)            s1.pathway{p}_stem.conv.kernel (T,H,W,I,O)
  s1.pathway{p}_stem.bn.{weight,bias}                   s1.pathway{p}_stem.bn.{scale,bias}
  ...bn.{running_mean,running_var}                      ...bn.{mean,var}   (num_batches_tracked dropped)
  s{S}.pathway{p}_res{i}.branch1.weight / branch1_bn.*  s{S}.pathway{p}_res{i}.branch1.kernel / branch1_bn.*
  s{S}.pathway{p}_res{i}.branch2.{a,b,c}.weight         s{S}.pathway{p}_res{i}.branch2.{a,b,c}.kernel
  s{S}.pathway{p}_res{i}.branch2.{a,b,c}_bn.*           s{S}.pathway{p}_res{i}.branch2.{a,b,c}_bn.*
  s{k}_fuse.{weight_s,weight_f} (1,)                    s{k}_fuse.{weight_s,weight_f} (1,)
  s{k}_fuse.conv_f2s.weight / conv_s2f.weight           s{k}_fuse.conv_f2s.kernel / conv_s2f.kernel
  s{k}_fuse.bn.* / bn2.*                                s{k}_fuse.bn.* / bn2.*

with p = 0 (slow) / 1 (fast), S = 2..5, k = 1..4; Conv3d weights transpose (2,3,4,1,0). No pooling
sits between stages (the measured shapes show none; it would have no parameters anyway).
Tensors are channel-last: (B, T, H, W, C).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hypersign_jax.models import frame_conv
from hypersign_jax.models import remat as remat_lib
from hypersign_jax.training import sharding

Array = jax.Array

# Blocks per stage (res2..res5) for each supported depth (PySlowFast `_MODEL_STAGE_DEPTH`).
STAGE_DEPTH = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
FUSIONS = ('bff', 'concat', 'none')
CONV_IMPLS = ('xla', 'frames')
REMATS = ('none', 'block', 'stage')


@dataclasses.dataclass(frozen=True)
class SlowFastConfig:
  """SlowFast geometry. Defaults are SlowFastSign's `SLOWFAST_64x2_R101_50_50.yaml` (ResNet-101, BFF).

  Per-pathway pairs are (slow, fast). `temporal_kernels[0]` is the stem, `[1..4]` are res2..res5.
  """
  depth: int = 101                   # 18 | 50 | 101 (bottleneck blocks in all cases, see module docstring)
  blocks: tuple[int, int, int, int] | None = None  # res2..res5 block counts overriding the depth's (tests)
  width_per_group: int = 64          # slow stem width; stage widths scale from it
  num_groups: int = 1                # groups of the (1,3,3) conv b
  alpha: int = 4                     # frame-rate ratio fast : slow
  beta_inv: int = 8                  # channel ratio slow : fast
  fusion: str = 'bff'                # 'bff' (FuseBiAdd) | 'concat' (FuseFastToSlow) | 'none'
  fusion_conv_channel_ratio: int = 2  # 'concat' only: conv_f2s outputs ratio * fast channels
  fusion_kernel_sz: int = 5          # temporal kernel of conv_f2s (stride alpha, pad kernel//2)
  temporal_kernels: tuple[tuple[int, int], ...] = ((1, 5), (1, 3), (1, 3), (3, 3), (3, 3))
  num_block_temp_kernel: tuple[tuple[int, int], ...] = ((3, 3), (4, 4), (6, 6), (3, 3))
  spatial_strides: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (2, 2), (2, 2))
  spatial_dilations: tuple[tuple[int, int], ...] = ((1, 1), (1, 1), (1, 1), (1, 1))
  in_channels: int = 3
  zero_init_final_bn: bool = True    # scale 0 on branch2.c_bn of every block (PySlowFast init_weights)
  dropout_rate: float = 0.5          # head dropout on the per-frame features
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9           # Flax convention (= PyTorch momentum 0.1)
  dtype: Any = jnp.float32           # compute dtype (e.g. jnp.bfloat16); parameters stay float32
  conv_impl: str = 'xla'             # 'xla': native 3-D convs | 'frames': as 2-D convs over frames (fast on CPU)
  remat: str = 'none'                # rematerialise: 'none' | 'block' (each ResBlock, stem, fusion) | 'stage'
  remat_policy: str = ''             # jax.checkpoint policy name (models/remat.py POLICIES; '' = save nothing)

  def __post_init__(self):
    remat_lib.check(self.remat, REMATS, self.remat_policy, 'SlowFastConfig')
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f'SlowFastConfig.conv_impl={self.conv_impl!r}: expected one of {CONV_IMPLS}')
    if self.depth not in STAGE_DEPTH:
      raise ValueError(f'SlowFastConfig.depth={self.depth}: expected one of {sorted(STAGE_DEPTH)}')
    if self.blocks is not None and (len(self.blocks) != 4 or min(self.blocks) < 1):
      raise ValueError(f'SlowFastConfig.blocks={self.blocks}: expected 4 positive block counts (res2..res5)')
    if self.fusion not in FUSIONS:
      raise ValueError(f'SlowFastConfig.fusion={self.fusion!r}: expected one of {FUSIONS}')
    if self.width_per_group % self.beta_inv:
      raise ValueError(f'width_per_group={self.width_per_group} must be divisible by beta_inv={self.beta_inv}')
    if len(self.temporal_kernels) != 5:
      raise ValueError('temporal_kernels needs 5 (slow, fast) pairs: stem, res2..res5')
    for name in ('num_block_temp_kernel', 'spatial_strides', 'spatial_dilations'):
      if len(getattr(self, name)) != 4:
        raise ValueError(f'{name} needs 4 (slow, fast) pairs: res2..res5')
    for s, (n_blocks, pair) in enumerate(zip(self.stage_blocks, self.num_block_temp_kernel)):
      if max(pair) > n_blocks:
        raise ValueError(f'num_block_temp_kernel[{s}]={pair} exceeds the {n_blocks} blocks of res{s + 2}')

  @property
  def stage_blocks(self) -> tuple[int, int, int, int]:
    return tuple(self.blocks) if self.blocks is not None else STAGE_DEPTH[self.depth]

  def slow_width(self, stage: int) -> int:
    """Output channels of the slow pathway after stage 1 (stem) .. 5 (res5)."""
    return self.width_per_group if stage == 1 else self.width_per_group * 4 * 2 ** (stage - 2)

  def fast_width(self, stage: int) -> int:
    return self.slow_width(stage) // self.beta_inv

  @property
  def out_dims(self) -> tuple[int, int]:
    """(C_slow, C_fast) of the per-frame features: (2048, 256) at R101."""
    return self.slow_width(5), self.fast_width(5)


def slowfast_r101(**overrides: Any) -> SlowFastConfig:
  """SlowFastSign's backbone: SlowFast R101, alpha 4, beta_inv 8, BFF, dropout 0.5 (52,482,688 parameters)."""
  return SlowFastConfig(**overrides)


def slowfast_tiny(**overrides: Any) -> SlowFastConfig:
  """CPU-sized SlowFast for tests and the synthetic corpus: bottleneck R18 counts, slow widths 16/64/128/256/512,
  fast widths 4/16/32/64/128, same kernels, strides, alpha and BFF as the paper's. Block 1 of res4 uses temporal
  kernel 1, like res4 blocks 6-22 at R101."""
  values = dict(depth=18, width_per_group=16, beta_inv=4,
                num_block_temp_kernel=((2, 2), (2, 2), (1, 1), (2, 2)))
  values.update(overrides)
  return SlowFastConfig(**values)


# ----------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------

# Kaiming-normal with fan_out and ReLU gain: std = sqrt(2 / (O * kT * kH * kW)) (torch kaiming_normal_).
_KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _conv(d_in: int, d_out: int, kernel: Sequence[int], cfg: SlowFastConfig, rngs: nnx.Rngs, *,
          stride: Sequence[int] = (1, 1, 1), padding: Sequence[int] = (0, 0, 0),
          dilation: Sequence[int] = (1, 1, 1), groups: int = 1) -> nnx.Conv:
  """Bias-free Conv3d with PyTorch's explicit symmetric padding, on (B, T, H, W, C)."""
  impl = frame_conv.conv_general_dilated if cfg.conv_impl == 'frames' else jax.lax.conv_general_dilated
  return nnx.Conv(d_in, d_out, kernel_size=tuple(kernel), strides=tuple(stride),
                  padding=[(p, p) for p in padding], kernel_dilation=tuple(dilation), feature_group_count=groups,
                  use_bias=False, kernel_init=_KAIMING_FAN_OUT, dtype=cfg.dtype, conv_general_dilated=impl,
                  rngs=rngs)


def _bn(n: int, cfg: SlowFastConfig, rngs: nnx.Rngs, *, zero_scale: bool = False) -> nnx.BatchNorm:
  scale_init = nnx.initializers.zeros_init() if zero_scale else nnx.initializers.ones_init()
  return nnx.BatchNorm(n, momentum=cfg.bn_momentum, epsilon=cfg.bn_eps, use_fast_variance=False,
                       scale_init=scale_init, dtype=cfg.dtype, rngs=rngs)


def pack_pathways(x: Array, alpha: int) -> tuple[Array, Array]:
  """(B, T, H, W, C) -> (slow (B, T/alpha, H, W, C) = frames 0, alpha, 2 alpha, ..., fast = x) (SlowFastLoader)."""
  return x[:, ::alpha], x


def _upsample_time(x: Array, t_out: int) -> Array:
  """Nearest-neighbour temporal upsampling (B, t, H, W, C) -> (B, t_out, H, W, C); t_out a multiple of t."""
  t_in = x.shape[1]
  if t_out % t_in:
    raise ValueError(f'nearest temporal upsampling from {t_in} to {t_out} frames needs an integer factor')
  return jnp.repeat(x, t_out // t_in, axis=1)


class ResNetBasicStem(nnx.Module):
  """One pathway's stem (`s1.pathway{p}_stem`): Conv3d (kT,7,7)/(1,2,2), BN, ReLU, MaxPool3d (1,3,3)/(1,2,2)."""

  def __init__(self, d_in: int, d_out: int, kt: int, cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    self.conv = _conv(d_in, d_out, (kt, 7, 7), cfg, rngs, stride=(1, 2, 2), padding=(kt // 2, 3, 3))
    self.bn = _bn(d_out, cfg, rngs)

  def __call__(self, x: Array) -> Array:
    # (B, T, H, W, C_in) -> (B, T, H/2, W/2, C_out) -> (B, T, H/4, W/4, C_out)
    x = jax.nn.relu(self.bn(self.conv(x)))
    return nnx.max_pool(x, window_shape=(1, 3, 3), strides=(1, 2, 2), padding=((0, 0), (1, 1), (1, 1)))


class VideoModelStem(nnx.Module):
  """Stage `s1`: one `ResNetBasicStem` per pathway (`pathway0_stem` slow, `pathway1_stem` fast)."""

  def __init__(self, cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    kt_s, kt_f = cfg.temporal_kernels[0]
    self.pathway0_stem = ResNetBasicStem(cfg.in_channels, cfg.slow_width(1), kt_s, cfg, rngs=rngs)
    self.pathway1_stem = ResNetBasicStem(cfg.in_channels, cfg.fast_width(1), kt_f, cfg, rngs=rngs)

  def __call__(self, xs: Sequence[Array]) -> list[Array]:
    return [self.pathway0_stem(xs[0]), self.pathway1_stem(xs[1])]


class BottleneckTransform(nnx.Module):
  """`branch2` of a bottleneck block: a (kt,1,1) conv, BN, ReLU; b (1,3,3) conv (spatial stride, dilation,
  groups), BN, ReLU; c 1x1x1 conv, BN (`c_bn` zero-initialised when `cfg.zero_init_final_bn`)."""

  def __init__(self, d_in: int, d_out: int, d_inner: int, kt: int, stride: int, dilation: int,
               cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    self.a = _conv(d_in, d_inner, (kt, 1, 1), cfg, rngs, padding=(kt // 2, 0, 0))
    self.a_bn = _bn(d_inner, cfg, rngs)
    self.b = _conv(d_inner, d_inner, (1, 3, 3), cfg, rngs, stride=(1, stride, stride),
                   padding=(0, dilation, dilation), dilation=(1, dilation, dilation), groups=cfg.num_groups)
    self.b_bn = _bn(d_inner, cfg, rngs)
    self.c = _conv(d_inner, d_out, (1, 1, 1), cfg, rngs)
    self.c_bn = _bn(d_out, cfg, rngs, zero_scale=cfg.zero_init_final_bn)

  def __call__(self, x: Array) -> Array:
    x = jax.nn.relu(self.a_bn(self.a(x)))   # (B, T, H, W, d_inner)
    x = jax.nn.relu(self.b_bn(self.b(x)))   # (B, T, H/stride, W/stride, d_inner)
    return self.c_bn(self.c(x))             # (B, T, H/stride, W/stride, d_out)


class ResBlock(nnx.Module):
  """Bottleneck residual block (`s{S}.pathway{p}_res{i}`): ReLU(branch1_bn(branch1(x)) or x, + branch2(x)).

  The 1x1x1 projection shortcut `branch1` (spatial stride like b) exists when channels or stride change."""

  def __init__(self, d_in: int, d_out: int, d_inner: int, kt: int, stride: int, dilation: int,
               cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    self.has_branch1 = d_in != d_out or stride != 1
    if self.has_branch1:
      self.branch1 = _conv(d_in, d_out, (1, 1, 1), cfg, rngs, stride=(1, stride, stride))
      self.branch1_bn = _bn(d_out, cfg, rngs)
    self.branch2 = BottleneckTransform(d_in, d_out, d_inner, kt, stride, dilation, cfg, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    shortcut = self.branch1_bn(self.branch1(x)) if self.has_branch1 else x
    return jax.nn.relu(shortcut + self.branch2(x))


class ResStage(nnx.Module):
  """Stage `s{S}` (res2..res5): blocks `pathway{p}_res{i}` for both pathways.

  Block i of pathway p uses temporal kernel `temporal_kernels[S-1][p]` if i < `num_block_temp_kernel[S-2][p]`,
  else 1; only block 0 carries the spatial stride."""

  def __init__(self, stage: int, dims_in: Sequence[int], cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    s = stage - 2
    self.num_blocks = cfg.stage_blocks[s]
    self.remat_blocks = cfg.remat == 'block'
    self.remat_policy = cfg.remat_policy
    for p, (d_in, d_out) in enumerate(zip(dims_in, (cfg.slow_width(stage), cfg.fast_width(stage)))):
      d_inner = cfg.num_groups * cfg.width_per_group * 2 ** s // (1 if p == 0 else cfg.beta_inv)
      for i in range(self.num_blocks):
        kt = cfg.temporal_kernels[stage - 1][p] if i < cfg.num_block_temp_kernel[s][p] else 1
        block = ResBlock(d_in if i == 0 else d_out, d_out, d_inner, kt, cfg.spatial_strides[s][p] if i == 0 else 1,
                         cfg.spatial_dilations[s][p], cfg, rngs=rngs)
        setattr(self, f'pathway{p}_res{i}', block)

  def __call__(self, xs: Sequence[Array]) -> list[Array]:
    out = []
    for p, x in enumerate(xs):
      for i in range(self.num_blocks):
        x = remat_lib.maybe_checkpointed(self.remat_blocks, getattr(self, f'pathway{p}_res{i}'), x,
                                         policy=self.remat_policy)
      out.append(x)
    return out


class FuseBiAdd(nnx.Module):
  """SlowFastSign's Bi-directional Feature Fusion (`s{k}_fuse`), applied after s1..s4.

  fast->slow: `conv_f2s` (fusion_kernel_sz,1,1) stride (alpha,1,1) pad (k//2,0,0), `bn`, ReLU, added with the
  learnable scalar `weight_s`; slow->fast: 1x1x1 `conv_s2f`, `bn2`, ReLU, nearest temporal upsampling to the fast
  length, added with `weight_f`. Both branches read the inputs before fusion; both scalars start at 0."""

  def __init__(self, d_fast: int, d_slow: int, cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    k = cfg.fusion_kernel_sz
    self.conv_f2s = _conv(d_fast, d_slow, (k, 1, 1), cfg, rngs, stride=(cfg.alpha, 1, 1), padding=(k // 2, 0, 0))
    self.bn = _bn(d_slow, cfg, rngs)
    self.conv_s2f = _conv(d_slow, d_fast, (1, 1, 1), cfg, rngs)
    self.bn2 = _bn(d_fast, cfg, rngs)
    self.weight_s = nnx.Param(jnp.zeros((1,), jnp.float32))
    self.weight_f = nnx.Param(jnp.zeros((1,), jnp.float32))

  def __call__(self, xs: Sequence[Array]) -> list[Array]:
    x_s, x_f = xs                                             # (B, T/a, H, W, C_s), (B, T, H, W, C_f)
    f2s = jax.nn.relu(self.bn(self.conv_f2s(x_f)))            # (B, T/a, H, W, C_s)
    s2f = jax.nn.relu(self.bn2(self.conv_s2f(x_s)))           # (B, T/a, H, W, C_f)
    s2f = _upsample_time(s2f, x_f.shape[1])                   # (B, T, H, W, C_f)
    w_s = self.weight_s[...].astype(x_s.dtype)
    w_f = self.weight_f[...].astype(x_f.dtype)
    return [x_s + w_s * f2s, x_f + w_f * s2f]


class FuseFastToSlow(nnx.Module):
  """PySlowFast's lateral connection (`s{k}_fuse`): `conv_f2s` (k,1,1) stride (alpha,1,1), `bn`, ReLU, then
  concatenated after the slow channels; the fast pathway is unchanged."""

  def __init__(self, d_fast: int, cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    k, d_out = cfg.fusion_kernel_sz, d_fast * cfg.fusion_conv_channel_ratio
    self.conv_f2s = _conv(d_fast, d_out, (k, 1, 1), cfg, rngs, stride=(cfg.alpha, 1, 1), padding=(k // 2, 0, 0))
    self.bn = _bn(d_out, cfg, rngs)

  def __call__(self, xs: Sequence[Array]) -> list[Array]:
    x_s, x_f = xs
    fuse = jax.nn.relu(self.bn(self.conv_f2s(x_f)))           # (B, T/a, H, W, ratio * C_f)
    return [jnp.concatenate([x_s, fuse], axis=-1), x_f]        # (B, T/a, H, W, C_s + ratio * C_f)


class PerFrameHead(nnx.Module):
  """SlowFastSign's `ResNetBasicHead`: per-frame spatial mean of each pathway, slow repeated x alpha in time,
  [slow, fast] channel concatenation, elementwise `dropout`. No parameters."""

  def __init__(self, cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    self.dropout = nnx.Dropout(cfg.dropout_rate, rngs=rngs)

  def __call__(self, x_s: Array, x_f: Array) -> Array:
    s = jnp.mean(x_s.astype(jnp.float32), axis=(2, 3)).astype(x_s.dtype)  # (B, T/a, C_s)
    f = jnp.mean(x_f.astype(jnp.float32), axis=(2, 3)).astype(x_f.dtype)  # (B, T, C_f)
    s = jnp.repeat(s, f.shape[1] // s.shape[1], axis=1)                   # (B, T, C_s)
    return self.dropout(jnp.concatenate([s, f], axis=-1))                 # (B, T, C_s + C_f)


class SlowFast(nnx.Module):
  """SlowFastSign's video backbone (`SLRModel.conv2d`): pathways, s1..s5, fusions s1_fuse..s4_fuse, head.

  Call with frames (B, T, H, W, C_in), T a multiple of alpha (SlowFastSign pads clips to multiples of 4);
  returns {'fused': (B, T, C_s + C_f), 'slow': (B, T, C_s), 'fast': (B, T, C_f)} (see the module docstring).
  Train/eval mode (BN batch statistics, dropout) follows `model.train()` / `model.eval()`.
  """

  def __init__(self, cfg: SlowFastConfig, *, rngs: nnx.Rngs):
    self.config = cfg
    self.s1 = VideoModelStem(cfg, rngs=rngs)
    dims_in = [cfg.slow_width(1), cfg.fast_width(1)]
    for stage in range(2, 6):
      k = stage - 1  # fusion after the previous stage
      if cfg.fusion == 'bff':
        setattr(self, f's{k}_fuse', FuseBiAdd(cfg.fast_width(k), cfg.slow_width(k), cfg, rngs=rngs))
      elif cfg.fusion == 'concat':
        setattr(self, f's{k}_fuse', FuseFastToSlow(cfg.fast_width(k), cfg, rngs=rngs))
        dims_in[0] += cfg.fast_width(k) * cfg.fusion_conv_channel_ratio
      setattr(self, f's{stage}', ResStage(stage, dims_in, cfg, rngs=rngs))
      dims_in = [cfg.slow_width(stage), cfg.fast_width(stage)]
    self.head = PerFrameHead(cfg, rngs=rngs)

  def _check_input(self, x: Array) -> None:
    cfg = self.config
    if x.ndim != 5 or x.shape[-1] != cfg.in_channels:
      raise ValueError(f'SlowFast expects frames (B, T, H, W, {cfg.in_channels}) channel-last, got {x.shape}')
    if x.shape[1] % cfg.alpha:
      raise ValueError(f'SlowFast needs T a multiple of alpha={cfg.alpha} (pad the clip), got T={x.shape[1]}')

  def stages(self, x: Array) -> dict[str, tuple[Array, Array]]:
    """Frames (B, T, H, W, C_in) -> {'s1', 's1_fuse', 's2', ..., 's4_fuse', 's5'}: (slow, fast) after each stage.

    At R101, 224 px: s1 (B,T/4,56,56,64)/(B,T,56,56,8), s2 256/32 @56, s3 512/64 @28, s4 1024/128 @14,
    s5 2048/256 @7 (with 'concat', the fuse outputs have the widened slow channels)."""
    self._check_input(x)
    cfg = self.config
    xs = list(pack_pathways(sharding.constrain_batch(x.astype(cfg.dtype)), cfg.alpha))
    # 'stage': every stage and fusion call is one checkpoint; 'block': the ResBlocks (inside ResStage), the stem
    # and the fusions are.
    whole = cfg.remat == 'stage'
    small = cfg.remat in ('block', 'stage')
    out = {}
    for stage in range(1, 6):
      module = getattr(self, f's{stage}')
      xs = remat_lib.maybe_checkpointed(whole or (small and stage == 1), module, xs, policy=cfg.remat_policy)
      xs = [sharding.constrain_batch(v) for v in xs]
      out[f's{stage}'] = tuple(xs)
      if stage < 5 and cfg.fusion != 'none':
        xs = remat_lib.maybe_checkpointed(small, getattr(self, f's{stage}_fuse'), xs, policy=cfg.remat_policy)
        xs = [sharding.constrain_batch(v) for v in xs]
        out[f's{stage}_fuse'] = tuple(xs)
    return out

  def __call__(self, x: Array) -> dict[str, Array]:
    x_s, x_f = self.stages(x)['s5']
    fused = sharding.constrain_batch(self.head(x_s, x_f))  # (B, T, C_s + C_f)
    c_s = x_s.shape[-1]
    return {'fused': fused, 'slow': fused[..., :c_s], 'fast': fused[..., c_s:]}
