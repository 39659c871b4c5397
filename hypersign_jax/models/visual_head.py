"""HyperSign's per-stream VisualHead (SLRT/TwoStream `VisualHead` in feature mode), one per input stream.

In HyperSign's S2T model two heads with the same architecture and separate weights run on the pre-extracted
S3D features: `recognition_network.visual_head` on RGB and `recognition_network.visual_head_keypoint` on
keypoints, each (B, T, 832). Published order kept, per head:

  fc1 (832 -> 512) -> bn1 (MaskedNorm) -> ReLU -> + sinusoidal positions -> Dropout(0.1)
  -> feedforward (pre-LN temporal-conv FFN with residual) -> layer_norm -> gloss_feature (B, T, 512)
  -> gloss_output_layer (512 -> #glosses) -> gloss logits / log-probs / probs (for the optional CTC term).

* MaskedNorm (`bn1.norm`, a BatchNorm eps 1e-5, momentum 0.1 in PyTorch's convention): in training, the batch
  statistics come from the valid frames only and **padded frames are left as the raw fc1 outputs** (original);
  the running variance is updated with the unbiased estimate (n / (n - 1)), as PyTorch does. In eval the running
  statistics normalise every position. Under a data-sharded `jax.jit` the statistics are those of the global
  batch (= SyncBatchNorm).
* Positional encoding: OpenNMT sinusoids (sin on even channels, cos on odd), added to every position (the
  original's `pe.pe` buffer (1, 5000, 512) is recomputed, so it is not state).
* `feedforward`: LayerNorm(eps 1e-6) -> Conv1d(512 -> 2048, k=3, zero 'same' padding) -> ReLU -> Dropout
  -> Conv1d(2048 -> 512, k=3) -> Dropout, plus the input of the LayerNorm (residual). `pwff_layer` indices
  0..4 mirror the PyTorch Sequential, so the kernels sit at `pwff_layer.0` and `pwff_layer.3`.
* final `layer_norm` (eps 1e-6); `plus_conv` is Identity in HyperSign and is not built.

Options (deviations, default = original): `mask_padding=True` zeroes padded frames after the norm and in front
of each temporal convolution, so padded positions cannot leak into the last valid frames through the k=3 convs
and a sample's output no longer depends on the batch it is in. `running_var_unbiased=False` updates the running
variance with the biased batch variance (Flax's convention).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class VisualHeadConfig:
  """One VisualHead. Defaults are HyperSign PHOENIX-2014T (1094 recognition glosses; CSL-Daily has 2004)."""
  input_size: int = 832
  hidden_size: int = 512
  ff_size: int = 2048
  ff_kernel_size: int = 3
  num_classes: int = 1094
  dropout: float = 0.1          # dropout after the positional encoding and inside the FFN
  bn_momentum: float = 0.1      # PyTorch convention: new = (1 - m) * old + m * batch
  bn_eps: float = 1e-5
  ln_eps: float = 1e-6
  mask_padding: bool = False    # False = original (padded frames raw in training, leak through the convs)
  running_var_unbiased: bool = True  # True = PyTorch BatchNorm (n / (n - 1) in the running-variance update)
  dtype: Any = jnp.float32      # compute dtype; parameters stay float32


class Act(nnx.Module):
  """A parameter-free activation, so Sequential-style lists keep the original's layer indices."""

  def __init__(self, fn):
    self.fn = fn

  def __call__(self, x: Array) -> Array:
    return self.fn(x)


def run_sequence(layers: nnx.List, x: Array) -> Array:
  """Applies the layers of an `nnx.List` in order (the PyTorch `nn.Sequential` equivalent)."""
  for layer in layers:
    x = layer(x)
  return x


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """OpenNMT sinusoidal table (length, dim): pe[p, 2i] = sin(p w_i), pe[p, 2i+1] = cos(p w_i),
  w_i = 10000^(-2i / dim). A numpy constant (static `length`), folded into the compiled graph."""
  position = np.arange(length, dtype=np.float32)[:, None]
  div_term = np.exp(np.arange(0, dim, 2, dtype=np.float32) * -(math.log(10000.0) / dim))
  pe = np.zeros((length, dim), np.float32)
  pe[:, 0::2] = np.sin(position * div_term)
  pe[:, 1::2] = np.cos(position * div_term)
  return pe


class MaskedNorm(nnx.Module):
  """SLRT `MaskedNorm` with norm_type 'sync_batch': BatchNorm over the valid frames of a (B, T, C) batch.

  The statistics and parameters live in `self.norm` (an `nnx.BatchNorm`, the original's `bn1.norm`), so
  `model.train()` / `model.eval()` switch between batch and running statistics through its
  `use_running_average` flag.
  """

  def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5,
               running_var_unbiased: bool = True, mask_padding: bool = False, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.norm = nnx.BatchNorm(num_features, momentum=1.0 - momentum, epsilon=eps, use_fast_variance=False,
                              dtype=dtype, rngs=rngs)
    self.running_var_unbiased = running_var_unbiased
    self.mask_padding = mask_padding

  def __call__(self, x: Array, mask: Array) -> Array:
    """x (B, T, C); mask (B, T), nonzero on valid frames -> (B, T, C)."""
    valid = (jnp.asarray(mask) > 0)[..., None]  # (B, T, 1)
    if self.norm.use_running_average:
      y = self.norm(x, use_running_average=True)
      return jnp.where(valid, y, 0).astype(y.dtype) if self.mask_padding else y
    xf = x.astype(jnp.float32)
    count = jnp.sum(valid.astype(jnp.float32))
    n = jnp.maximum(count, 1.0)
    mean = jnp.sum(jnp.where(valid, xf, 0.0), axis=(0, 1)) / n  # (C,)
    var = jnp.sum(jnp.where(valid, jnp.square(xf - mean), 0.0), axis=(0, 1)) / n  # biased, (C,)
    norm = self.norm
    y = (xf - mean) * jax.lax.rsqrt(var + norm.epsilon) * norm.scale[...] + norm.bias[...]
    running_var_update = var * (n / jnp.maximum(n - 1.0, 1.0)) if self.running_var_unbiased else var
    m = norm.momentum  # Flax convention: new = m * old + (1 - m) * batch
    norm.mean[...] = jax.lax.stop_gradient(m * norm.mean[...] + (1.0 - m) * mean)
    norm.var[...] = jax.lax.stop_gradient(m * norm.var[...] + (1.0 - m) * running_var_update)
    y = jnp.where(valid, y, 0.0 if self.mask_padding else xf)  # original: padded frames keep the raw input
    return y.astype(x.dtype if norm.dtype is None else norm.dtype)


class PositionwiseFeedForward(nnx.Module):
  """Pre-LN temporal-convolution FFN with a residual (SLRT `PositionwiseFeedForward` with a kernel size)."""

  def __init__(self, dim: int, ff_size: int, kernel_size: int, dropout: float, ln_eps: float,
               dtype: Any, *, rngs: nnx.Rngs):
    if kernel_size % 2 != 1:
      raise ValueError(f'ff_kernel_size must be odd for symmetric "same" padding, got {kernel_size}')
    pad = [(kernel_size // 2, kernel_size // 2)]
    self.layer_norm = nnx.LayerNorm(dim, epsilon=ln_eps, use_fast_variance=False, dtype=dtype, rngs=rngs)
    self.pwff_layer = nnx.List([
        nnx.Conv(dim, ff_size, kernel_size=(kernel_size,), padding=pad, dtype=dtype, rngs=rngs),  # 0
        Act(jax.nn.relu),                                                                          # 1
        nnx.Dropout(dropout, rngs=rngs),                                                           # 2
        nnx.Conv(ff_size, dim, kernel_size=(kernel_size,), padding=pad, dtype=dtype, rngs=rngs),  # 3
        nnx.Dropout(dropout, rngs=rngs),                                                           # 4
    ])

  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """x (B, T, D) -> (B, T, D). With `mask` (B, T) the conv inputs are zeroed on padded frames."""
    keep = None if mask is None else (jnp.asarray(mask) > 0)[..., None]
    h = self.layer_norm(x)
    for layer in self.pwff_layer:
      if keep is not None and isinstance(layer, nnx.Conv):
        h = jnp.where(keep, h, 0).astype(h.dtype)
      h = layer(h)
    return h + x


class VisualHead(nnx.Module):
  """One stream's head: features (B, T, 832) + valid mask -> gloss features (B, T, 512) and gloss scores."""

  def __init__(self, config: VisualHeadConfig, *, rngs: nnx.Rngs):
    c = self.config = config
    self.fc1 = nnx.Linear(c.input_size, c.hidden_size, dtype=c.dtype, rngs=rngs)
    self.bn1 = MaskedNorm(c.hidden_size, momentum=c.bn_momentum, eps=c.bn_eps,
                          running_var_unbiased=c.running_var_unbiased, mask_padding=c.mask_padding,
                          dtype=c.dtype, rngs=rngs)
    self.dropout1 = nnx.Dropout(c.dropout, rngs=rngs)
    self.feedforward = PositionwiseFeedForward(c.hidden_size, c.ff_size, c.ff_kernel_size, c.dropout,
                                               c.ln_eps, c.dtype, rngs=rngs)
    self.layer_norm = nnx.LayerNorm(c.hidden_size, epsilon=c.ln_eps, use_fast_variance=False, dtype=c.dtype,
                                    rngs=rngs)
    self.gloss_output_layer = nnx.Linear(c.hidden_size, c.num_classes, dtype=c.dtype, rngs=rngs)

  def __call__(self, x: Array, mask: Array) -> dict[str, Array]:
    """x (B, T, input_size); mask (B, T) nonzero on valid frames.

    Returns {'gloss_feature': (B, T, hidden), 'gloss_logits': (B, T, classes) float32,
    'gloss_log_probs', 'gloss_probs': (B, T, classes) float32, 'valid_len_out': (B,) int32}.
    """
    c = self.config
    h = self.fc1(x)                      # (B, T, H)
    h = self.bn1(h, mask)
    h = jax.nn.relu(h)
    h = h + jnp.asarray(sinusoidal_positions(h.shape[1], h.shape[2]), h.dtype)[None]
    h = self.dropout1(h)
    h = self.feedforward(h, mask if c.mask_padding else None)
    feature = self.layer_norm(h)         # (B, T, H)
    logits = self.gloss_output_layer(feature).astype(jnp.float32)
    return {
        'gloss_feature': feature,
        'gloss_logits': logits,
        'gloss_log_probs': jax.nn.log_softmax(logits, axis=-1),
        'gloss_probs': jax.nn.softmax(logits, axis=-1),
        'valid_len_out': jnp.sum(jnp.asarray(mask) > 0, axis=-1).astype(jnp.int32),
    }
