"""Label-smoothed cross-entropy with the semantics of SLRT/HyperSign's `XentLoss` (design/HYPERSIGN.md §5.3).

The original builds a smoothed target distribution q per target token: (1 - smoothing) on the gold token,
smoothing / (V - 2) on every other column except the pad column (0), and an all-zero row where the target is pad;
the loss is `KLDivLoss(reduction='sum')(log_softmax(logits), q)` = sum over tokens and columns of
q (log q - log p), i.e. the smoothed cross-entropy plus the constant sum of q log q. The caller divides by the
batch size B (`avg_level: sentence`). With smoothing 0 it is the summed NLL over non-pad targets.

Everything is computed in float32 whatever the logits' dtype; `kl_constant=False` drops the sum of q log q (same
gradients).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def _xlogx(x: float) -> float:
  return x * math.log(x) if x > 0 else 0.0


def smoothed_xent_per_token(logits: Array, targets: Array, *, smoothing: float = 0.2, pad_id: int = 1,
                            kl_constant: bool = True) -> Array:
  """(..., V) logits, (...) int targets -> (...) float32 per-token KL(q || p) (0 at pad targets)."""
  vocab = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  gold = jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  if smoothing > 0:
    if vocab <= 2:
      raise ValueError(f"label smoothing needs a vocabulary of more than 2 tokens, got {vocab}")
    off = smoothing / (vocab - 2)
    rest = jnp.sum(logp, axis=-1) - logp[..., pad_id] - gold
    cross = -((1.0 - smoothing) * gold + off * rest)
    const = _xlogx(1.0 - smoothing) + (vocab - 2) * _xlogx(off)
  else:
    cross, const = -gold, 0.0
  per_token = cross + (const if kl_constant else 0.0)
  return jnp.where(targets == pad_id, 0.0, per_token)


def smoothed_xent_sum(logits: Array, targets: Array, *, smoothing: float = 0.2, pad_id: int = 1,
                      kl_constant: bool = True) -> Array:
  """Float32 scalar: the original's summed loss (divide by the batch size for HyperSign's training loss)."""
  return jnp.sum(smoothed_xent_per_token(logits, targets, smoothing=smoothing, pad_id=pad_id,
                                         kl_constant=kl_constant))
