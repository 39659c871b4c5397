"""Throughput of the grain input pipelines on generated data (samples/s and ms per sample on this machine).

Records are written to ArrayRecord shards in a temporary directory and read back through ``RecordSource``, so the
numbers include record reading, msgpack decoding, frame decoding, augmentation, bucketed padding and batching.
Compare the samples/s with the model's consumption rate (samples/s of the train step) to see whether the input
pipeline can keep up; raise ``read_threads`` / ``worker_processes`` on machines with more cores.

  python -m benchmarks.data_pipeline [--frames 100] [--batches 5] [--threads 1] [--only video64,...]
  python -m benchmarks.data_pipeline --model configs/slowfastsign_synthetic.py [--model configs/hypersign_synthetic.py]

``--model CONFIG`` measures, in the same run, a task's own training pipeline (its dataset, its pipeline config)
against its compiled train step on those batches, and prints the ratio (> 1: the input pipeline keeps up).
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time

import numpy as np
from PIL import Image

from data_pipelines import array_record_io, pipeline


class _Vocab:
  def encode(self, s):
    return [1 + int(g[1:]) for g in s.split()]


def _frame_bytes(size: int, count: int, fmt: str, rng: np.random.Generator) -> list[bytes]:
  """``count`` distinct smooth-plus-noise frames (compress like real video frames, unlike pure noise)."""
  yy, xx = np.mgrid[0:size, 0:size]
  out = []
  for k in range(count):
    base = np.stack([(xx + 3 * k) % 256, (yy + 5 * k) % 256, (xx + yy) // 2 % 256], -1).astype(np.float32)
    img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    out.append(buf.getvalue())
  return out


def _records(kind: str, n: int, frames: int, size: int, fmt: str, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  pool = _frame_bytes(size, 16, fmt, rng) if kind == "video" else None
  out = []
  for i in range(n):
    t = int(frames * rng.uniform(0.8, 1.2))
    rec = {"id": f"b{i:04d}", "gloss": " ".join(f"g{k % 50}" for k in range(i % 9 + 3)), "text": "a b c"}
    if kind == "video":
      rec["frames"] = [pool[int(j)] for j in rng.integers(0, len(pool), t)]
    elif kind == "keypoints":
      rec["keypoints"] = rng.uniform(0, 256, (t, 133, 3)).astype(np.float32)
      rec["frame_size"] = (256, 256)
    else:
      rec["features"] = {"rgb": rng.normal(size=(t, 1024)).astype(np.float32),
                         "keypoint": rng.normal(size=(t, 1024)).astype(np.float32)}
    out.append(rec)
  return out


def _measure(make_batches, num_batches: int, batch_size: int) -> tuple[float, float]:
  """Wall time from building the pipeline to the last of ``num_batches`` batches (startup included)."""
  start = time.perf_counter()
  it = iter(make_batches())
  for _ in range(num_batches):
    next(it)
  elapsed = time.perf_counter() - start
  n = num_batches * batch_size
  return n / elapsed, 1000.0 * elapsed / n


def model_consumption(config_path: str, steps: int, batches: int) -> dict:
  """Samples/s of a task's train pipeline vs its compiled train step (same batches, same process)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from hypersign_jax.tasks import base  # pylint: disable=import-outside-toplevel
  from hypersign_jax.training import sharding, trainer  # pylint: disable=import-outside-toplevel
  path, _, variant = config_path.partition(":")
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant or None)
  task = base.get_task(config.task)(config)
  setup = trainer.build(config, task)
  batch_size = config.train.batch_size
  make = lambda: task.train_iterator(config.seed, batch_size)
  pipe_sps, _ = _measure(make, batches, batch_size)
  it = make()
  host = [sharding.split_host_fields(next(it))[0] for _ in range(steps + 1)]
  step = trainer._Jitted(trainer.make_train_step(setup, 1), setup, train=True)  # pylint: disable=protected-access
  state, out = step(setup.state, sharding.make_global_batch(host[0], setup.mesh))  # compile (per bucket shape)
  jax.block_until_ready(out)
  timed, n = 0.0, 0
  for batch in host[1:]:
    device_batch = sharding.make_global_batch(batch, setup.mesh)
    if not step.has_program(device_batch):
      state, out = step(state, device_batch)  # a new bucket shape: compile outside the timing
      jax.block_until_ready(out)
      continue
    start = time.perf_counter()
    state, out = step(state, device_batch)
    jax.block_until_ready(out)
    timed += time.perf_counter() - start
    n += 1
  model_sps = n * batch_size / timed if n else float("nan")
  return {"config": config_path, "pipeline_samples_per_s": pipe_sps, "model_samples_per_s": model_sps,
          "ratio": pipe_sps / model_sps, "timed_steps": n}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, default=100)
  parser.add_argument("--batches", type=int, default=5)
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--only", default="")
  parser.add_argument("--model", action="append", default=[],
                      help="config[:variant] whose train pipeline is compared with its train step")
  parser.add_argument("--model_steps", type=int, default=8)
  args = parser.parse_args(argv)
  if args.model:
    print(f"{'config':40s} | {'pipeline samples/s':>18s} | {'train step samples/s':>20s} | {'ratio':>6s}")
    print("-" * 96)
    for config_path in args.model:
      r = model_consumption(config_path, args.model_steps, args.batches)
      print(f"{config_path:40s} | {r['pipeline_samples_per_s']:18.1f} | {r['model_samples_per_s']:20.2f} | "
            f"{r['ratio']:6.1f}   ({r['timed_steps']} timed steps)", flush=True)
    return

  cases = [
      # name, kind, frame size, crop, image format, video_normalize
      ("video64", "video", 64, 56, "PNG", "host"),
      ("video256", "video", 256, 224, "JPEG", "host"),
      ("video256u8", "video", 256, 224, "JPEG", "device"),  # uint8 batch, normalised on device
      ("video256png", "video", 256, 224, "PNG", "host"),
      ("keypoints", "keypoints", None, None, None, None),
      ("features", "features", None, None, None, None),
  ]
  only = set(filter(None, args.only.split(",")))
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name, kind, size, crop, fmt, normalize in cases:
      if only and name not in only:
        continue
      n = args.batch_size * args.batches
      directory = f"{tmp}/{name}"
      array_record_io.write_split(directory, "train", _records(kind, n, args.frames, size or 0, fmt or "PNG"))
      source = array_record_io.RecordSource(directory, "train")
      cfg = pipeline.default_config(kind)
      cfg.batch_size = args.batch_size
      cfg.read_threads = args.threads
      cfg.bucket_max = 256
      if kind == "video":
        cfg.crop_size = crop
        cfg.video_normalize = normalize
      for mode in ("train", "eval"):
        if mode == "train":
          make = lambda: pipeline.make_train_iterator(source, kind, cfg, seed=0, vocab=_Vocab())
        else:
          make = lambda: pipeline.make_eval_batches(source, kind, cfg, vocab=_Vocab())
        sps, ms = _measure(make, args.batches, args.batch_size)
        rows.append((name, mode, sps, ms))
        print(f"{name:12s} {mode:5s} {sps:9.1f} samples/s {ms:9.1f} ms/sample", flush=True)
  print(f"\nT ~ {args.frames} frames (U[0.8, 1.2]), batch {args.batch_size}, read_threads {args.threads}, "
        "no worker processes")
  print(f"{'pipeline':12s} | {'mode':5s} | {'samples/s':>9s} | {'ms/sample':>9s}")
  print("-" * 46)
  for name, mode, sps, ms in rows:
    print(f"{name:12s} | {mode:5s} | {sps:9.1f} | {ms:9.1f}")


if __name__ == "__main__":
  main()
