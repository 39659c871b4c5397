"""What the step benchmarks divide by: a large float32 matmul's FLOP/s measured in the same run
(``matmul_flops_per_s``), and the device's datasheet peak for model FLOP utilisation (``device_peak_flops``,
``mfu``)."""
from __future__ import annotations

import argparse
import math
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


# Dense (no sparsity) peak FLOP/s from the vendors' datasheets, by compute dtype. 'float32' is the plain FP32 rate
# (CUDA cores); XLA may run float32 matmuls as TF32 on Ampere/Hopper, in which case "MFU vs float32" can exceed 1.
PEAK_FLOPS = {
    "H100 SXM": {"bfloat16": 989.4e12, "float16": 989.4e12, "tf32": 494.7e12, "float32": 66.9e12},
    "H100 PCIe": {"bfloat16": 756.5e12, "float16": 756.5e12, "tf32": 378.0e12, "float32": 51.2e12},
    "H200": {"bfloat16": 989.4e12, "float16": 989.4e12, "tf32": 494.7e12, "float32": 66.9e12},
    "A100": {"bfloat16": 312.0e12, "float16": 312.0e12, "tf32": 156.0e12, "float32": 19.5e12},
}


def _device_family(device_kind: str) -> str | None:
  """jax.devices()[0].device_kind (e.g. 'NVIDIA H100 80GB HBM3') -> a PEAK_FLOPS key, or None if unknown."""
  kind = device_kind.upper()
  if "H200" in kind:
    return "H200"
  if "H100" in kind:
    return "H100 PCIe" if "PCIE" in kind else "H100 SXM"
  if "A100" in kind:
    return "A100"
  return None


def device_peak_flops(dtype: str, override_tflops: float = 0.0, device=None) -> tuple[float | None, str]:
  """(peak FLOP/s for this compute dtype, description) of ``device`` (default: the first device).

  ``override_tflops`` > 0 wins (any device); an unknown device (e.g. a CPU) gives (None, reason)."""
  if override_tflops > 0:
    return override_tflops * 1e12, f"{override_tflops:g} TFLOP/s (--peak_tflops)"
  device = device or jax.devices()[0]
  kind = getattr(device, "device_kind", str(device))
  family = _device_family(kind)
  if family is None:
    return None, f"unknown peak for device {kind!r} (pass --peak_tflops)"
  name = str(jnp.dtype(dtype)) if dtype != "tf32" else "tf32"
  peak = PEAK_FLOPS[family].get(name)
  if peak is None:
    return None, f"no {name} peak for {family}"
  return peak, f"{family} dense {name} {peak / 1e12:.1f} TFLOP/s ({kind})"


def mfu(flops_per_step: float, step_s: float, peak: float | None) -> float | None:
  """Model FLOP utilisation: XLA's FLOPs of one step / step time / device peak (None without a peak)."""
  if peak is None or not step_s or math.isnan(flops_per_step):
    return None
  return flops_per_step / step_s / peak


def describe_mfu(util: float | None, peak_desc: str) -> str:
  """'12.3 % of <peak>' or, without a known peak, the reason (the benchmarks' printed MFU line)."""
  return f"{100 * util:.1f} % of {peak_desc}" if util is not None else f"n/a ({peak_desc})"


def add_step_flags(p: argparse.ArgumentParser) -> None:
  """The flags every step benchmark shares: remat policy, device peak for MFU, reference matmul size, JSON out."""
  p.add_argument("--remat_policy", default="", help="config model.remat_policy (jax.checkpoint policy name, "
                 "e.g. dots_saveable)")
  p.add_argument("--peak_tflops", type=float, default=0.0,
                 help="device peak for MFU (0 = from the device kind: H100/H200/A100 dense, by --dtype)")
  p.add_argument("--matmul", type=int, default=2048, help="N of the reference N x N float32 matmul")
  p.add_argument("--json", help="also write the results here")
