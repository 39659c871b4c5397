"""SlowFastSign's temporal convolution stack (``modules/tconv.py``, ``conv_type=2``), channel-last.

Facts kept (design/SLOWFASTSIGN.md §3 "TemporalConv"):

* spec ``['K5', 'P2', 'K5', 'P2']``; ``K5`` = Conv1d(kernel 5, stride 1, **no padding**, with bias) -> BatchNorm1d
  (eps 1e-5, torch momentum 0.1 = Flax 0.9) -> ReLU; ``P2`` = MaxPool1d(2) with floor;
* the first conv maps the input width (2304 main / 2048 slow / 256 fast at R101) to ``hidden`` (1024), later
  convs ``hidden -> hidden``; PyTorch default Conv1d init (weight and bias U(+-1/sqrt(in*k)));
* ``update_lgt``: ``len -= k - 1`` for a conv and ``len = len / 2`` (**true division**, a float) for a pool;
  :func:`output_length` returns exactly that float and :meth:`TemporalConv.__call__` its ``int`` truncation, as the
  original's ``feat_len.int()`` / ``pack_padded_sequence``. With SlowFastSign's collate (length 4k+12) the result
  is exactly k;
* BatchNorm statistics include the padded frames (the original does not mask them either).

Parameters mirror ``conv1d.<branch>_temporal_conv``: ``convs[j]`` (``kernel`` (K, in, out) = torch weight
``.transpose(2, 1, 0)``, ``bias``) is torch index ``4j``, ``bns[j]`` (``scale``, ``bias``, ``mean``, ``var``) is
torch index ``4j + 1``.

The max-pool is an elementwise maximum of the ``k`` strided frame slices, not a reshape + max-reduction: same
values and gradients, but XLA:CPU at ``xla_backend_optimization_level=0`` (``train.fast_compile``) miscompiles the
gradient of BatchNorm -> ReLU -> reshape-max (wrong conv-kernel gradients, ~50 % of their scale; tested in
tests/test_scale.py).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

DEFAULT_SPEC = ("K5", "P2", "K5", "P2")


def parse_spec(spec: Sequence[str] | str) -> tuple[tuple[str, int], ...]:
  """``['K5', 'P2']`` (or ``'K5,P2'``) -> ``(('K', 5), ('P', 2))``; raises ValueError on anything else."""
  if isinstance(spec, str):
    spec = [s.strip() for s in spec.split(",") if s.strip()]
  out = []
  for s in spec:
    if isinstance(s, tuple) and len(s) == 2:  # already parsed
      s = f"{s[0]}{s[1]}"
    if len(s) < 2 or s[0] not in "KP" or not s[1:].isdigit() or int(s[1:]) < 1:
      raise ValueError(f"temporal conv spec item {s!r} must be 'K<kernel>' or 'P<pool>', e.g. K5 or P2")
    out.append((s[0], int(s[1:])))
  return tuple(out)


def output_length(lengths: jax.Array, spec: Sequence[str] | str = DEFAULT_SPEC) -> jax.Array:
  """The original's ``update_lgt``: float lengths after the stack (conv: ``-(k-1)``, pool: ``/ p``)."""
  out = jnp.asarray(lengths).astype(jnp.float32)
  for kind, size in parse_spec(spec):
    out = out - (size - 1) if kind == "K" else out / size
  return out


def output_size(size: int, spec: Sequence[str] | str = DEFAULT_SPEC) -> int:
  """Static padded length after the stack (VALID convs, floor pooling)."""
  for kind, k in parse_spec(spec):
    size = size - (k - 1) if kind == "K" else size // k
  return size


def _torch_conv_bias_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class TemporalConv(nnx.Module):
  """(B, T, C_in) -> (B, T', hidden) with the K/P spec; also returns the output lengths."""

  def __init__(self, in_features: int, hidden: int = 1024, spec: Sequence[str] | str = DEFAULT_SPEC, *,
               dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.spec = parse_spec(spec)
    convs, bns = [], []
    width = in_features
    for kind, k in self.spec:
      if kind != "K":
        continue
      convs.append(nnx.Conv(
          width, hidden, kernel_size=(k,), strides=(1,), padding="VALID", use_bias=True, dtype=dtype,
          kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),  # kaiming_uniform(a=sqrt5)
          bias_init=_torch_conv_bias_init(width * k), rngs=rngs))
      bns.append(nnx.BatchNorm(hidden, momentum=0.9, epsilon=1e-5, use_fast_variance=False, dtype=dtype,
                               rngs=rngs))
      width = hidden
    if not convs:
      raise ValueError(f"temporal conv spec {spec!r} has no convolution")
    self.convs = nnx.List(convs)
    self.bns = nnx.List(bns)
    self.out_features = hidden

  def __call__(self, x: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns features (B, T', hidden) and int32 lengths (the truncated ``update_lgt`` floats)."""
    j = 0
    for kind, k in self.spec:
      if kind == "K":
        x = nnx.relu(self.bns[j](self.convs[j](x)))
        j += 1
      else:
        n = x.shape[1] // k  # floor: trailing frames dropped
        x = functools.reduce(jnp.maximum, [x[:, i:n * k:k] for i in range(k)])
    return x, jnp.maximum(output_length(lengths, self.spec), 0.0).astype(jnp.int32)
