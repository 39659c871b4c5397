"""Training logs: ``metrics.jsonl`` (one JSON object per event), TensorBoard event files, a progress bar."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)):
    value = value.item() if np.ndim(value) == 0 else value.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricLogger:
  """Writes every event to ``<workdir>/metrics.jsonl`` and TensorBoard (``<workdir>/tensorboard``).

  Only process 0 writes (the caller passes ``enabled=False`` elsewhere).
  """

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True, echo: bool = True):
    self.enabled = enabled
    self.echo = echo
    self._file = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    if tensorboard:
      from tensorboardX import SummaryWriter  # imported lazily: heavy
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, "time": round(time.time(), 3)}
    record.update({k: _jsonable(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for key, value in metrics.items():
        if isinstance(value, (int, float, np.number)) and np.ndim(value) == 0:
          self._tb.add_scalar(f"{split}/{key}", float(value), int(step))
      self._tb.flush()
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
    if self.echo:
      print(f"[{split}] step {step}: {shown}", flush=True)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


def _fmt(value: Any) -> str:
  if isinstance(value, (float, np.floating)):
    return f"{float(value):.5g}"
  return str(value)


def read_metrics(workdir: str) -> list[dict]:
  """All events of ``<workdir>/metrics.jsonl``."""
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def progress(total: int | None, initial: int = 0, desc: str = "", enabled: bool = True):
  """A tqdm progress bar with rate and ETA on a terminal; silent when stderr is not a TTY (CI, logs)."""
  from tqdm import tqdm
  disable = (not enabled) or not sys.stderr.isatty()
  return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, leave=False)
