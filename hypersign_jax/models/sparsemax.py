"""Sparsemax (Martins & Astudillo, 2016): the Euclidean projection of a score vector onto the probability simplex.

HyperSign's SST network (`att_func_type: sparsemax`) turns the pooled code scores into sparse code weights with
it. Published details kept:

* the sort-based closed form: sort the scores in descending order, the support size is
  k = max{j : 1 + j z_(j) > sum_{i<=j} z_(i)}, the threshold is tau = (sum_{i<=k} z_(i) - 1) / k and the output
  is max(0, z - tau);
* the scores are shifted by their maximum first (the projection is shift-invariant), which keeps the cumulative
  sums well conditioned;
* the gradient is the exact Jacobian of the projection, J = diag(s) - s s^T / |S| with s the support indicator
  (the original class defines a custom backward that autograd never calls; autograd through sort and cumsum gives
  this same Jacobian). Here it is a `jax.custom_jvp`, so forward- and reverse-mode both use the closed form and
  no gradient flows through the sort.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _threshold_and_support(z: Array) -> tuple[Array, Array]:
  """z (..., K), last axis -> (tau (..., 1), support (..., K) bool)."""
  z_sorted = -jnp.sort(-z, axis=-1)  # descending
  k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
  cumsum = jnp.cumsum(z_sorted, axis=-1)
  in_support = 1.0 + k * z_sorted > cumsum  # (..., K); a prefix of True values
  support_size = jnp.sum(in_support, axis=-1, keepdims=True)  # >= 1 always (the largest score)
  top_sum = jnp.take_along_axis(cumsum, support_size.astype(jnp.int32) - 1, axis=-1)
  tau = (top_sum - 1.0) / support_size.astype(z.dtype)
  return tau, z > tau


@jax.custom_jvp
def _sparsemax_last(z: Array) -> Array:
  z = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
  tau, _ = _threshold_and_support(z)
  return jnp.maximum(z - tau, 0.0)


@_sparsemax_last.defjvp
def _sparsemax_last_jvp(primals, tangents):
  (z,), (z_dot,) = primals, tangents
  out = _sparsemax_last(z)
  support = (out > 0).astype(z.dtype)  # (..., K)
  support_size = jnp.sum(support, axis=-1, keepdims=True)
  mean_on_support = jnp.sum(z_dot * support, axis=-1, keepdims=True) / support_size
  return out, support * (z_dot - mean_on_support)


@functools.partial(jax.jit, static_argnames=('axis',))
def sparsemax(z: Array, axis: int = -1) -> Array:
  """Sparsemax along `axis`; the output has the input's shape and dtype, is >= 0 and sums to 1 along `axis`."""
  dtype = z.dtype
  z = jnp.moveaxis(z.astype(jnp.float32), axis, -1)
  return jnp.moveaxis(_sparsemax_last(z), -1, axis).astype(dtype)
