"""Per-sample transforms of records into model inputs (one module per input kind).

* ``video``: frame decoding, SlowFastSign train/eval augmentation, temporal rescale, normalisation.
* ``keypoints``: COCO-WholeBody keypoints -> normalised coordinates, optional augmentation.
* ``text``: gloss ids through a vocabulary object, text/gloss strings passed through.
* pre-extracted feature streams (``FeatureTransform`` below): selected and checked, no augmentation.

Each transform maps ``(record, rng)`` to a flat sample dict of NumPy arrays / Python values; batching
(``data_pipelines.batching``) pads and stacks those samples. Common helpers live here.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import numpy as np


def cfg_get(config: Any, name: str, default: Any = None) -> Any:
  """Reads field ``name`` of a ConfigDict / dataclass / dict / None config, ``default`` when absent or None."""
  if config is None:
    return default
  if hasattr(config, "get") and callable(config.get):  # dict, ml_collections.ConfigDict
    value = config.get(name, default)
  else:  # dataclass or any attribute object
    value = getattr(config, name, default)
  return default if value is None else value


@dataclasses.dataclass
class PipelineStats:
  """Thread-safe counters of data problems handled without raising (visible to the caller; also logged).

  Counts are process-local: with worker processes use the per-batch ``skipped_frames`` / ``truncated`` arrays.
  """
  bad_frames_skipped: int = 0
  samples_truncated: int = 0
  _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

  def add(self, name: str, n: int = 1) -> None:
    with self._lock:
      setattr(self, name, getattr(self, name) + n)

  def as_dict(self) -> dict[str, int]:
    return {"bad_frames_skipped": self.bad_frames_skipped, "samples_truncated": self.samples_truncated}

  def __getstate__(self):  # picklable for worker processes (the lock is recreated)
    return self.as_dict()

  def __setstate__(self, state):
    self.__init__(**state)


def rescaled_length(length: int, rng: np.random.Generator, scale: float, min_len: int, max_len: int,
                    multiple: int) -> int:
  """SlowFastSign ``TemporalRescale`` length rule.

  ``int(length * U[1-scale, 1+scale])`` clamped to ``[min_len, max_len]`` and then rounded UP to a multiple of
  ``multiple`` (so with the defaults 32/230/4 the longest result is 232).
  """
  new_len = int(length * rng.uniform(1.0 - scale, 1.0 + scale))
  new_len = min(max(new_len, min_len), max_len)
  return -(-new_len // multiple) * multiple


def temporal_rescale_indices(length: int, rng: np.random.Generator, scale: float, min_len: int, max_len: int,
                             multiple: int) -> np.ndarray:
  """Sorted frame indices of a temporally rescaled clip of ``length`` frames.

  Shorter/equal target: sampled without replacement; longer target: sampled with replacement (frames repeat).
  Either way the result is sorted, so frame order is kept.
  """
  if length <= 0:
    raise ValueError("cannot rescale an empty clip")
  new_len = rescaled_length(length, rng, scale, min_len, max_len, multiple)
  if new_len <= length:
    idx = rng.choice(length, size=new_len, replace=False)
  else:
    idx = rng.integers(0, length, size=new_len)
  return np.sort(idx)


def warn(stats: PipelineStats | None, counter: str, message: str, n: int = 1) -> None:
  if stats is not None:
    stats.add(counter, n)
  logging.warning(message)


class FeatureTransform:
  """Record -> {'features': {stream: float32 (T_s, D_s)}} for the configured ``streams`` (all, sorted, if None)."""

  def __init__(self, streams: list[str] | None = None):
    self.streams = None if streams is None else list(streams)

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
    del rng
    sample_id = record.get("id", "?")
    feats = record.get("features")
    if not feats:
      raise ValueError(f"sample {sample_id!r} has no 'features' (a feature pipeline needs pre-extracted features)")
    names = sorted(feats) if self.streams is None else self.streams
    out = {}
    for name in names:
      if name not in feats:
        raise ValueError(f"sample {sample_id!r} has no feature stream {name!r}; it has {sorted(feats)}")
      value = np.asarray(feats[name], dtype=np.float32)
      if value.ndim != 2 or value.shape[0] == 0:
        raise ValueError(f"sample {sample_id!r}: feature stream {name!r} must be (T>0, D), got {value.shape}")
      out[name] = value
    return {"features": out}
