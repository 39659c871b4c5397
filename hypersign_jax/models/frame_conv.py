"""3-D convolution executed as 2-D convolutions over frames: a drop-in for ``lax.conv_general_dilated``.

XLA:CPU runs 3-D convolutions through a slow generic path: the weight gradient of SlowFast's fast stem
(5x7x7, 3 -> 2 channels, stride (1,2,2)) on a (4, 64, 28, 28, 3) clip takes ~0.5 s, while the same arithmetic as
one 2-D convolution over the B*T frames takes ~0.03 s (docs/benchmarks.md). This module computes the identical
convolution that way:

* the clip is padded in time and the ``kT`` temporal taps (with stride and dilation) are sliced out as views of
  shape (B, T_out, H, W, C);
* ``kT == 1``: one 2-D convolution over the B*T_out frames with the kernel's only tap;
* ``kT > 1`` and no feature groups: the taps are concatenated along channels (kT*C) and the kernel is reshaped to
  (kH, kW, kT*C, O), so one 2-D convolution computes the whole sum;
* ``kT > 1`` with feature groups: the sum of kT 2-D convolutions (concatenation would interleave the groups).

Parameters keep the 3-D layout (kT, kH, kW, C/groups, O), so checkpoints and converters are unaffected; only the
lowering changes. Selected per model with ``SlowFastConfig.conv_impl = 'frames'`` (``'xla'`` = native 3-D conv).
It pays off on CPU; on GPU/TPU the native 3-D convolution is the better lowering.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

_DN_2D = ("NHWC", "HWIO", "NHWC")


def _expect_channels_last_3d(dimension_numbers: Any) -> None:
  """Accept only (N, T, H, W, C) inputs with (kT, kH, kW, I, O) kernels, the layout ``nnx.Conv`` produces."""
  if dimension_numbers is None:
    raise ValueError("frame_conv needs explicit channel-last dimension numbers (NDHWC, DHWIO, NDHWC)")
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    ok = (tuple(dimension_numbers.lhs_spec) == (0, 4, 1, 2, 3) and tuple(dimension_numbers.rhs_spec) == (4, 3, 0, 1, 2)
          and tuple(dimension_numbers.out_spec) == (0, 4, 1, 2, 3))
  else:
    ok = tuple(dimension_numbers) == ("NDHWC", "DHWIO", "NDHWC")
  if not ok:
    raise ValueError(f"frame_conv supports channel-last 3-D convolutions only, got {dimension_numbers}")


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
                         feature_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None, out_sharding: Any = None) -> jax.Array:
  """Same signature and result as ``lax.conv_general_dilated`` for channel-last 3-D convolutions.

  ``lhs`` (B, T, H, W, C), ``rhs`` (kT, kH, kW, C/groups, O); ``padding`` explicit pairs or 'VALID'/'SAME'
  (strings are resolved with ``lax.padtype_to_pads``); ``lhs_dilation`` (transposed convolution) is not supported.
  """
  del out_sharding  # the 2-D convolutions inherit the input's sharding
  if lhs.ndim != 5 or rhs.ndim != 5:
    raise ValueError(f"frame_conv expects 5-D input and kernel, got {lhs.shape} and {rhs.shape}")
  _expect_channels_last_3d(dimension_numbers)
  if lhs_dilation is not None and tuple(lhs_dilation) != (1, 1, 1):
    raise ValueError(f"frame_conv does not support input dilation {tuple(lhs_dilation)}")
  strides = tuple(int(s) for s in window_strides)
  dilation = (1, 1, 1) if rhs_dilation is None else tuple(int(d) for d in rhs_dilation)
  kt, kh, kw, c_in_group, c_out = rhs.shape
  b, t, h, w, c = lhs.shape
  if c != c_in_group * feature_group_count:
    raise ValueError(f"input has {c} channels, the kernel expects {c_in_group} x {feature_group_count} groups")
  if isinstance(padding, str):
    eff = [(k - 1) * d + 1 for k, d in zip((kt, kh, kw), dilation)]
    padding = lax.padtype_to_pads((t, h, w), eff, strides, padding)
  (pt0, pt1), pad_h, pad_w = (tuple(int(v) for v in p) for p in padding)

  span = (kt - 1) * dilation[0] + 1
  t_out = (t + pt0 + pt1 - span) // strides[0] + 1
  if t_out < 1:
    raise ValueError(f"temporal extent {t} (+ padding {pt0}+{pt1}) is shorter than the kernel span {span}")
  x = jnp.pad(lhs, ((0, 0), (pt0, pt1), (0, 0), (0, 0), (0, 0))) if (pt0 or pt1) else lhs
  last = strides[0] * (t_out - 1) + 1
  taps = [x[:, k * dilation[0]:k * dilation[0] + last:strides[0]] for k in range(kt)]

  def conv2d(frames: jax.Array, kernel: jax.Array) -> jax.Array:
    flat = frames.reshape((b * t_out,) + frames.shape[2:])
    y = lax.conv_general_dilated(flat, kernel, strides[1:], (pad_h, pad_w), rhs_dilation=dilation[1:],
                                 dimension_numbers=_DN_2D, feature_group_count=feature_group_count,
                                 precision=precision, preferred_element_type=preferred_element_type)
    return y.reshape((b, t_out) + y.shape[1:])

  if kt == 1:
    return conv2d(taps[0], rhs[0])
  if feature_group_count == 1:
    stacked = jnp.concatenate(taps, axis=-1)  # channel index = k * C + c
    kernel = jnp.transpose(rhs, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c_in_group, c_out)
    return conv2d(stacked, kernel)
  out = conv2d(taps[0], rhs[0])
  for k in range(1, kt):
    out = out + conv2d(taps[k], rhs[k])
  return out
