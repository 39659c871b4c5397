"""The reference every step benchmark divides by: a large float32 matmul's FLOP/s, measured in the same run."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def matmul_flops_per_s(n: int, repeats: int) -> float:
  """Best-of-``repeats`` FLOP/s of an (n, n) @ (n, n) float32 matmul under jax.jit (compile excluded)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2.0 * n**3 / min(times)
