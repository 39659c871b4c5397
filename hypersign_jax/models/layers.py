"""Small layers shared by the CSLR models: SlowFastSign's ``NormLinear`` classifier and its masked 2-layer BiLSTM.

What they are in SlowFastSign (design/SLOWFASTSIGN.md §3):

* ``NormLinear(in, C)``: a weight of shape (in, C) -- transposed relative to ``nn.Linear`` -- with no bias; the
  forward pass is ``x @ normalize(W, dim=0)``: every class column is L2-normalised (``F.normalize``, eps 1e-12),
  the input is not, and there is no scale. Init xavier-uniform with gain sqrt(2). Kept exactly; the parameter is
  ``weight`` (in, C), so a checkpoint's ``classifier.i.weight`` is copied without transposition.
* ``BiLSTM`` (``modules/BiLSTM.py``): ``nn.LSTM(input, hidden per direction, num_layers=2, bidirectional=True,
  dropout=0.3)`` run over ``pack_padded_sequence``; outputs are forward and backward concatenated, padded steps
  of the output are zeros, and the reverse direction of each sequence starts at that sequence's own last valid
  step. Dropout acts between layers, in training only. PyTorch default init U(-1/sqrt(H), 1/sqrt(H)).

:class:`MaskedBiLSTM` keeps all of that with masks instead of packing (no sorting by length is needed). The reverse
direction reverses each sequence's valid prefix in place (an index map that is its own inverse), runs the same
forward recursion and maps the outputs back; padded steps come after the valid ones, so they never influence a
valid output, and they are zeroed. Both directions of a layer run in ONE ``lax.scan`` (weights stacked on a
leading direction axis), so a layer costs T sequential steps, not 2T.

Parameters, per layer ``l`` (``layers[l]``), direction axis 0 = forward, 1 = reverse, gate order i, f, g, o on the
4H axis exactly as PyTorch (c' = f*c + i*g, h' = o*tanh(c')), both biases kept separately so conversion is a
transpose and a stack, nothing summed:

  ``w_ih`` (2, in, 4H)  <- stack(weight_ih_l{l}.T, weight_ih_l{l}_reverse.T)
  ``w_hh`` (2, H, 4H)   <- stack(weight_hh_l{l}.T, weight_hh_l{l}_reverse.T)
  ``b_ih`` (2, 4H)      <- stack(bias_ih_l{l}, bias_ih_l{l}_reverse)
  ``b_hh`` (2, 4H)      <- stack(bias_hh_l{l}, bias_hh_l{l}_reverse)

Numerics: the gate pre-activations and the cell state are float32 whatever the compute dtype (the matmuls run in
the compute dtype with float32 accumulation); the output is cast back to the compute dtype.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Dtype = Any


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def l2_normalize(x: jax.Array, axis: int, eps: float = 1e-12) -> jax.Array:
  """``torch.nn.functional.normalize``: ``x / max(||x||_2, eps)`` along ``axis``."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


class NormLinear(nnx.Module):
  """``x @ normalize(W, axis=0)`` with ``W`` (in, out), no bias (SlowFastSign's classifier).

  The product runs in the compute dtype with float32 accumulation and the logits come out in float32 whatever
  the compute dtype: they feed CTC and SeqKD, which are computed in float32 from unrounded logits."""

  def __init__(self, in_features: int, out_features: int, *, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    gain = math.sqrt(2.0)
    bound = gain * math.sqrt(6.0 / (in_features + out_features))  # xavier_uniform_(gain=sqrt(2))
    self.weight = nnx.Param(_uniform(bound)(rngs.params(), (in_features, out_features), jnp.float32))
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    w = l2_normalize(self.weight[...].astype(jnp.float32), axis=0).astype(self.dtype)
    return jnp.einsum("...i,io->...o", x.astype(self.dtype), w, preferred_element_type=jnp.float32)


def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses the first ``lengths[b]`` steps of each row of ``x`` (B, T, ...) in place; the rest stays put.

  The index map is an involution, so applying it twice gives ``x`` back.
  """
  t = jnp.arange(x.shape[1])[None, :]
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
  idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


def einsum_f32(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """``jnp.einsum`` of compute-dtype operands with float32 accumulation and a float32 result.

  XLA:CPU has no batched bfloat16 x bfloat16 -> float32 dot ("Unsupported element type for DotThunk"), so when
  lowering for CPU the operands are widened to float32 first: bfloat16 values are exact in float32 and their
  products too, so this is the same arithmetic as the accelerators' native mixed-precision kernel."""
  if a.dtype == jnp.float32 and b.dtype == jnp.float32:
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
  return jax.lax.platform_dependent(
      a, b, cpu=lambda a, b: jnp.einsum(spec, a.astype(jnp.float32), b.astype(jnp.float32)),
      default=lambda a, b: jnp.einsum(spec, a, b, preferred_element_type=jnp.float32))


class BiLSTMLayer(nnx.Module):
  """One bidirectional LSTM layer over a padded batch; directions stacked on a leading axis of the weights."""

  def __init__(self, in_features: int, hidden_size: int, *, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    h = hidden_size
    init = _uniform(1.0 / math.sqrt(h))
    self.w_ih = nnx.Param(init(rngs.params(), (2, in_features, 4 * h)))
    self.w_hh = nnx.Param(init(rngs.params(), (2, h, 4 * h)))
    self.b_ih = nnx.Param(init(rngs.params(), (2, 4 * h)))
    self.b_hh = nnx.Param(init(rngs.params(), (2, 4 * h)))
    self.hidden_size = h
    self.dtype = dtype

  def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """(B, T, in), lengths (B,) -> (B, T, 2H): [forward, backward], zeros at t >= length."""
    b, t, _ = x.shape
    h = self.hidden_size
    lengths = lengths.astype(jnp.int32)
    xs = jnp.stack([x, reverse_valid(x, lengths)], axis=0).astype(self.dtype)  # (2, B, T, in)
    # Input projections for all steps at once; then only the recurrent part is sequential.
    xw = einsum_f32("dbti,dig->tdbg", xs, self.w_ih[...].astype(self.dtype)) + self.b_ih[...][None, :, None, :]
    w_hh = self.w_hh[...].astype(self.dtype)
    b_hh = self.b_hh[...][:, None, :]

    def step(carry, xw_t):
      h_prev, c_prev = carry  # (2, B, H) float32 each
      gates = xw_t + (einsum_f32("dbh,dhg->dbg", h_prev.astype(self.dtype), w_hh) + b_hh)
      i, f, g, o = jnp.split(gates, 4, axis=-1)
      c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
      h_new = jax.nn.sigmoid(o) * jnp.tanh(c)
      return (h_new, c), h_new

    zeros = jnp.zeros((2, b, h), jnp.float32)
    _, hs = jax.lax.scan(step, (zeros, zeros), xw)  # (T, 2, B, H)
    fwd = jnp.transpose(hs[:, 0], (1, 0, 2))
    bwd = reverse_valid(jnp.transpose(hs[:, 1], (1, 0, 2)), lengths)
    out = jnp.concatenate([fwd, bwd], axis=-1)
    mask = (jnp.arange(t)[None, :] < lengths[:, None])[..., None]
    return jnp.where(mask, out, 0.0).astype(self.dtype)


class MaskedBiLSTM(nnx.Module):
  """``nn.LSTM(bidirectional=True, num_layers=L, dropout=p)`` over ``pack_padded_sequence``, with masks.

  ``hidden_size`` is the total output width (both directions), as SlowFastSign's ``BiLSTMLayer(hidden_size=1024)``
  which gives 512 per direction.
  """

  def __init__(self, in_features: int, hidden_size: int = 1024, num_layers: int = 2, dropout: float = 0.3, *,
               dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    if hidden_size % 2:
      raise ValueError(f"BiLSTM hidden_size (both directions) must be even, got {hidden_size}")
    per_dir = hidden_size // 2
    self.layers = nnx.List([BiLSTMLayer(in_features if l == 0 else hidden_size, per_dir, dtype=dtype, rngs=rngs)
                            for l in range(num_layers)])
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """(B, T, in), lengths (B,) -> (B, T, hidden_size), zeros on padded steps."""
    for l, layer in enumerate(self.layers):
      if l > 0:
        x = self.dropout(x)  # between layers only, as nn.LSTM(dropout=p); identity in eval mode
      x = layer(x, lengths)
    return x
