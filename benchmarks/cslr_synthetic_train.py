"""Time-to-WER of the synthetic SlowFastSign demo: dev WER against wall-clock time of `python main.py`.

  python -m data_pipelines.build --dataset synthetic --preset demo --out workdirs/data/synthetic_demo  # not timed
  python benchmarks/cslr_synthetic_train.py --workdir workdirs/cslr_demo --cap_s 1500 --json curve.json
  python benchmarks/cslr_synthetic_train.py --workdir W -- --config.optimizer.lr=2e-3   # extra main.py flags

Runs ``main.py --config configs/slowfastsign_synthetic.py`` in a subprocess with a fresh (empty) persistent XLA
compilation cache, so every compile is paid as on a first run; the corpus must already be built (its build is not
part of the timed run). Polls ``<workdir>/metrics.jsonl`` and prints one row per dev evaluation: step, seconds
since the process was started (model build, every compile and all evaluations included), dev WER. Stops the run at
``--cap_s`` seconds, or when it ends by itself; ``--stop_at_wer`` ends it as soon as dev WER reaches that value.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_metrics(path: str) -> list[dict]:
  if not os.path.isfile(path):
    return []
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
          pass
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="emptied first")
  p.add_argument("--config", default="configs/slowfastsign_synthetic.py")
  p.add_argument("--cap_s", type=float, default=1500.0, help="stop the run after this many seconds")
  p.add_argument("--stop_at_wer", type=float, default=-1.0, help="stop once dev WER <= this (-1: never)")
  p.add_argument("--target_wer", type=float, default=10.0)
  p.add_argument("--target_s", type=float, default=600.0)
  p.add_argument("--poll_s", type=float, default=5.0)
  p.add_argument("--json", help="write the curve here")
  p.add_argument("extra", nargs="*", help="extra main.py flags (after --)")
  args = p.parse_args(argv)

  workdir = os.path.abspath(args.workdir)
  shutil.rmtree(workdir, ignore_errors=True)
  cache = tempfile.mkdtemp(prefix="xla-cache-")
  env = dict(os.environ, HYPERSIGN_JAX_CACHE=cache)
  cmd = [sys.executable, "main.py", f"--config={args.config}", f"--workdir={workdir}", *args.extra]
  os.makedirs(workdir, exist_ok=True)
  log = open(os.path.join(workdir, "stdout.log"), "w", encoding="utf-8")
  t0 = time.time()
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  curve, seen = [], 0
  print("| step | wall s | dev WER % | sub / del / ins % | train loss (last log) |\n|---|---|---|---|---|", flush=True)
  last_loss = None
  reason = "finished"

  def _terminate(signum, frame):  # stop the run from outside: kill -TERM <this process>
    raise KeyboardInterrupt

  signal.signal(signal.SIGTERM, _terminate)
  try:
    while True:
      done = proc.poll() is not None
      rows = read_metrics(metrics_path)
      for r in rows[seen:]:
        if r["split"] == "train":
          last_loss = r.get("loss")
        elif r["split"] == "dev":
          point = {"step": r["step"], "wall_s": round(r["time"] - t0, 1), "wer": r["wer"], "sub": r.get("sub"),
                   "del": r.get("del"), "ins": r.get("ins"), "train_loss": last_loss}
          curve.append(point)
          print(f"| {point['step']} | {point['wall_s']:.0f} | {point['wer']:.2f} | {point['sub']:.1f} / "
                f"{point['del']:.1f} / {point['ins']:.1f} | {last_loss if last_loss is None else round(last_loss, 3)} |",
                flush=True)
      seen = len(rows)
      if done:
        break
      if args.stop_at_wer >= 0 and curve and curve[-1]["wer"] <= args.stop_at_wer:
        reason = f"dev WER <= {args.stop_at_wer}"
        break
      if time.time() - t0 > args.cap_s:
        reason = f"cap {args.cap_s:.0f} s"
        break
      time.sleep(args.poll_s)
  except KeyboardInterrupt:
    reason = "interrupted"
  finally:
    if proc.poll() is None:
      proc.terminate()  # SIGTERM: a background job started with `&` ignores SIGINT
      try:
        proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.rmtree(cache, ignore_errors=True)

  train_rows = [r for r in read_metrics(metrics_path) if r["split"] == "train"]
  reached = [c for c in curve if c["wer"] <= args.target_wer]
  summary = {
      "config": args.config, "extra": args.extra, "stopped": reason, "returncode": proc.returncode,
      "wall_s": round(time.time() - t0, 1), "cpu_count": os.cpu_count(), "curve": curve,
      "best_wer": min((c["wer"] for c in curve), default=None),
      "first_at_target": reached[0] if reached else None,
      "target_met": bool(reached and reached[0]["wall_s"] <= args.target_s),
      "steps_per_sec_logged": [round(r.get("steps_per_sec", 0.0), 3) for r in train_rows],
  }
  print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=1))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
