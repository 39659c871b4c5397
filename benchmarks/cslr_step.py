"""Train-step time and FLOP utilisation of SlowFastSign (R101 + BFF, PFE, PHOENIX-2014 config) on this machine.

  python benchmarks/cslr_step.py                          # R101, 224 px, T = 64 frames, batch 1 (float32)
  python benchmarks/cslr_step.py --frames 32 --steps 2    # shorter clip
  python benchmarks/cslr_step.py --config synthetic --classes 77 --crop 28 --frames 100 --batch 8
                                                          # the synthetic demo config's model (CPU tuning)

One step is the trainer's own train step (``trainer.build`` + ``trainer.make_train_step``, compiled by
``trainer._Jitted`` exactly as ``main.py`` compiles it: explicit shardings, donation, one compile per batch
signature): the backbone, all three temporal paths (main + PFE slow / fast: TemporalConv, BiLSTM, NormLinear), the
full loss (CTC on sequence and conv heads, SeqKD, path weights 0.25), its gradient and the Adam update with
coupled weight decay and the multistep schedule of ``configs/slowfastsign_phoenix2014.py``. Random weights
(the trainer's initialisation), dropout as configured. The batch is built by the data pipeline's own
``Collator`` from one random uint8 clip of T frames (so the clip is padded to SlowFastSign's layout,
4*ceil(T/4) + 12 = 76 frames for T = 64, normalised on the host) and a 12-gloss label sequence; C = 1296.

FLOPs are XLA's own count for the compiled step (``compiled.cost_analysis()['flops']``, multiply-add = 2), shown
next to the analytic training estimate of SLOWFASTSIGN.md §7 (3 x inference forward, where the forward is
5.147 GFLOPs per padded frame for the backbone plus the temporal head). Utilisation = achieved FLOP/s of the step
divided by the FLOP/s of a large float32 matmul (N x N @ N x N, 2 N^3 FLOPs) timed in the same run: relative to
what this machine's matmul reaches, not to a datasheet peak. The default dtype is float32 (the CPU choice of the
synthetic configs); the paper config's bfloat16 is ``--dtype bfloat16``. ``--remat block|stage`` rematerialises
the backbone (config ``model.remat``). On a GPU with a known datasheet peak (H100 / H200 / A100, or
``--peak_tflops``), MFU = XLA FLOPs / step time / dense peak of ``--dtype`` is printed as well.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.reference import (add_step_flags, describe_mfu, device_peak_flops,  # noqa: E402
                                  matmul_flops_per_s, mfu)
from configs import slowfastsign_phoenix2014, slowfastsign_synthetic  # noqa: E402
from data_pipelines import batching  # noqa: E402
from hypersign_jax.tasks import base as task_base  # noqa: E402
from hypersign_jax.tasks import cslr as cslr_task  # noqa: E402
from hypersign_jax.training import sharding, trainer  # noqa: E402

PHOENIX2014_CLASSES = 1296
PHOENIX2014_TRAIN = 5672
BACKBONE_GFLOPS_PER_PADDED_FRAME = 5.147  # SLOWFASTSIGN.md §7, measured on the original (eval forward, 224 px)


class BenchTask(cslr_task.CSLRTask):
  """The cslr task (model, loss) without a prepared dataset: C classes and a nominal training-set size."""

  def __init__(self, config, num_classes: int, train_size: int):  # pylint: disable=super-init-not-called
    task_base.Task.__init__(self, config)
    self.vocab = types.SimpleNamespace(num_classes=num_classes)
    self._train_size = train_size

  def train_size(self):
    return self._train_size


def analytic_train_gflops(frames: int, hidden: int = 1024, classes: int = PHOENIX2014_CLASSES) -> dict:
  """SLOWFASTSIGN.md §7 at 224 px: inference forward, and training ~ 3 x forward (+ PFE, < 1 %)."""
  t_pad = 4 * -(-frames // 4) + 12
  out_len = -(-frames // 4)
  backbone = BACKBONE_GFLOPS_PER_PADDED_FRAME * t_pad
  # main TemporalConv: K5 2304->1024 over t_pad-4 steps, K5 1024->1024 over (t_pad-4)/2-4 steps (2 FLOPs/MAC)
  t1 = t_pad - 4
  t2 = t1 // 2 - 4
  tconv = 2 * (5 * 2304 * hidden * t1 + 5 * hidden * hidden * t2) / 1e9
  lstm = 25.2e-3 * out_len
  classifier = 2 * hidden * classes * out_len / 1e9
  forward = backbone + tconv + lstm + classifier
  return {"t_pad": t_pad, "backbone_gflops": backbone, "tconv_gflops": tconv, "forward_gflops": forward,
          "train_gflops_3x_forward": 3 * forward}


def make_batch(config, frames: int, crop: int, num_glosses: int, classes: int, seed: int = 0) -> dict:
  """One training batch from the pipeline's Collator (SlowFastSign padding, host normalisation)."""
  rng = np.random.default_rng(seed)
  p = config.data.pipeline.to_dict()
  p.update(buckets=(frames,), label_buckets=(num_glosses,))
  collate = batching.Collator("video", p)
  samples = [{"id": f"bench{i}", "video": rng.integers(0, 256, (frames, crop, crop, 3), dtype=np.uint8),
              "labels": rng.integers(1, classes, num_glosses).astype(np.int32)}
             for i in range(config.train.batch_size)]
  device_part, _ = sharding.split_host_fields(collate(samples))
  return device_part


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--frames", type=int, default=64, help="raw clip frames T (padded to 4*ceil(T/4)+12)")
  p.add_argument("--crop", type=int, default=224)
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--glosses", type=int, default=12, help="label length")
  p.add_argument("--config", default="phoenix2014", choices=("phoenix2014", "synthetic"),
                 help="model/optimizer settings of configs/slowfastsign_<config>.py")
  p.add_argument("--classes", type=int, default=PHOENIX2014_CLASSES)
  p.add_argument("--backbone", default="", choices=("", "r101", "tiny"), help="'' = the config's")
  p.add_argument("--dtype", default="float32", help="compute dtype (config 'dtype'): float32 | bfloat16")
  p.add_argument("--remat", default="none", choices=("none", "block", "stage"),
                 help="config model.remat: rematerialise each ResBlock / ResStage of the backbone")
  p.add_argument("--fast_compile", action="store_true", help="train.fast_compile (XLA optimisation level 0)")
  p.add_argument("--steps", type=int, default=3)
  add_step_flags(p)
  args = p.parse_args(argv)

  config = {"phoenix2014": slowfastsign_phoenix2014, "synthetic": slowfastsign_synthetic}[args.config].get_config()
  config.dtype = args.dtype
  config.model.remat = args.remat
  config.model.remat_policy = args.remat_policy
  if args.backbone:
    config.model.backbone = args.backbone
  backbone = config.model.backbone
  config.train.batch_size = args.batch
  config.mesh.data = 1
  task = BenchTask(config, args.classes, PHOENIX2014_TRAIN)

  t0 = time.perf_counter()
  setup = trainer.build(config, task)
  init_s = time.perf_counter() - t0
  n_params = sum(x.size for x in jax.tree.leaves(setup.state["params"]))
  batch = sharding.make_global_batch(make_batch(config, args.frames, args.crop, args.glosses, args.classes),
                                     setup.mesh)
  step = trainer._Jitted(trainer.make_train_step(setup, 1), setup, train=True,  # pylint: disable=protected-access
                         fast_compile=args.fast_compile)

  state = setup.state
  t0 = time.perf_counter()
  state, out = step(state, batch)  # compiles (one program per batch signature), then runs once
  jax.block_until_ready(out)
  first_s = time.perf_counter() - t0
  (compiled,) = step.programs()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan")))
  bytes_accessed = float(cost.get("bytes accessed", float("nan")))

  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    state, out = step(state, batch)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  mm = matmul_flops_per_s(args.matmul, 5)
  peak, peak_desc = device_peak_flops(args.dtype, args.peak_tflops)
  util = mfu(flops, step_s, peak)
  analytic = (analytic_train_gflops(args.frames) if (backbone == "r101" and args.crop == 224
                                                     and args.classes == PHOENIX2014_CLASSES) else {})

  result = {
      "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(), "config": args.config, "backbone": backbone,
      "hidden": config.model.hidden_size, "fast_compile": args.fast_compile,
      "dtype": args.dtype, "remat": args.remat, "remat_policy": args.remat_policy,
      "params": int(n_params), "frames": args.frames,
      "padded_frames": int(batch["video"].shape[1]), "crop": args.crop, "batch": args.batch,
      "glosses": args.glosses, "classes": args.classes,
      "build_init_s": round(init_s, 2), "compile_plus_first_step_s": round(first_s, 2),
      "compile_s_estimate": round(first_s - step_s, 2), "step_s_median": round(step_s, 3),
      "step_s_all": [round(x, 3) for x in times], "loss": float(out["loss"]), "bad_step": int(out["bad_step"]),
      "xla_flops_per_step": flops, "xla_bytes_accessed_per_step": bytes_accessed,
      "achieved_gflops": flops / step_s / 1e9, f"matmul{args.matmul}_gflops": mm / 1e9,
      "utilisation_vs_matmul": flops / step_s / mm, "peak": peak_desc, "mfu": util,
      "flops_source": "XLA cost_analysis() of the compiled train step (forward + backward + Adam, all paths)",
      "analytic_slowfastsign_md_s7": analytic,
  }
  rows = [("step time (median of %d)" % len(times), f"{step_s:.2f} s"),
          ("compile + first step", f"{first_s:.1f} s"),
          ("XLA FLOPs / step", f"{flops / 1e9:.1f} GFLOP")]
  if analytic:
    rows.append(("analytic (§7): 3 x forward", f"{analytic['train_gflops_3x_forward']:.1f} GFLOP "
                 f"(forward {analytic['forward_gflops']:.1f}; XLA / analytic = "
                 f"{flops / 1e9 / analytic['train_gflops_3x_forward']:.2f})"))
  rows += [("achieved", f"{flops / step_s / 1e9:.1f} GFLOP/s"),
           (f"matmul {args.matmul}^3 float32", f"{mm / 1e9:.1f} GFLOP/s"),
           ("utilisation vs matmul", f"{100 * flops / step_s / mm:.1f} %"),
           ("MFU vs device peak", describe_mfu(util, peak_desc))]
  print(f"SlowFastSign train step ({args.config} config): {backbone}, hidden {config.model.hidden_size}, {args.crop} px, T={args.frames} "
        f"(padded {result['padded_frames']}), batch {args.batch}, {args.dtype}, remat {args.remat}, {n_params:,} params, "
        f"{result['device']}, {os.cpu_count()} CPUs")
  print("| quantity | value |\n|---|---|")
  for k, v in rows:
    print(f"| {k} | {v} |")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
