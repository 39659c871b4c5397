"""grain input pipelines for every input kind: train iterators (checkpointable) and eval batches.

Train: ``MapDataset.source(src)`` -> ``shuffle(seed)`` (grain folds the epoch into the seed, so every epoch has a
different, reproducible order) -> ``repeat()`` -> per-sample transform with a generator seeded by
``(seed, stream position)`` (so a sample's augmentation depends only on the seed and where it falls in the
stream, never on iteration history) -> this host's slice ``[process_index::process_count]`` -> ``batch`` of
``batch_size // process_count`` with the bucketed ``batching.Collator`` (drop_remainder) -> ``to_iter_dataset``.
The iterator is a grain ``DatasetIterator``: ``it.get_state()`` / ``it.set_state(state)`` resume at exactly the
next batch. Local batch i of host p holds stream elements ``(i*b + j)*N + p``, so the N hosts together read
exactly the global batch ``[i*B, (i+1)*B)`` of the shuffled stream, disjointly. Batches may straddle an epoch
boundary (the stream is continuous); use ``steps_per_epoch`` for schedules.

Eval: no shuffle, deterministic transform, the split padded with dummy samples (copies of the last sample with
``valid = 0`` and id '') to a multiple of the global batch size, so every sample is seen exactly once and every
host runs the same number of equally shaped batches.

Host -> device transfer is the trainer's job; batches are dicts of NumPy arrays (``batching`` documents the keys;
``batching.STRING_KEYS`` are object arrays of str to drop before ``device_put``).

Config fields read (ConfigDict, dataclass or dict; ``default_config(kind)`` lists all with defaults):
  batch_size (GLOBAL batch size, divisible by process_count), read_threads, prefetch_batches, worker_processes,
  streams (features kind: stream names, None = all), and everything read by ``batching.Collator`` and the
  transforms (``transforms.video.DEFAULTS``, ``transforms.keypoints.DEFAULTS``, ``batching.DEFAULTS``).
"""
from __future__ import annotations

from typing import Any, Iterator

import grain
import ml_collections
import numpy as np

from data_pipelines import batching
from data_pipelines.transforms import FeatureTransform, PipelineStats, cfg_get
from data_pipelines.transforms import keypoints as kp_lib
from data_pipelines.transforms import text as text_lib
from data_pipelines.transforms import video as video_lib

KINDS = batching.KINDS
PIPELINE_DEFAULTS = dict(batch_size=8, read_threads=1, prefetch_batches=2, worker_processes=0, streams=None)


def default_config(kind: str = "video") -> ml_collections.ConfigDict:
  """Every field the pipeline of ``kind`` reads, with its default (SlowFastSign values for real video)."""
  if kind not in KINDS:
    raise ValueError(f"unknown input kind {kind!r}; expected one of {KINDS}")
  fields = dict(PIPELINE_DEFAULTS)
  fields.update(batching.DEFAULTS)
  if kind == "video":
    fields.update(video_lib.DEFAULTS)
  elif kind == "keypoints":
    fields.update(kp_lib.DEFAULTS)
  return ml_collections.ConfigDict(fields, type_safe=False)


class SampleTransform:
  """Record -> per-sample dict for ``kind``; picklable; RNG from ``(seed, index)``."""

  def __init__(self, kind: str, config: Any, train: bool, seed: int = 0, vocab: Any = None,
               stats: PipelineStats | None = None):
    if kind not in KINDS:
      raise ValueError(f"unknown input kind {kind!r}; expected one of {KINDS}")
    self.kind, self.train, self.seed = kind, train, int(seed)
    self.stats = stats if stats is not None else PipelineStats()
    if kind == "video":
      self.main = video_lib.VideoTransform(config, train=train, stats=self.stats)
    elif kind == "keypoints":
      self.main = kp_lib.KeypointTransform(config, train=train)
    elif kind == "features":
      streams = cfg_get(config, "streams", None)
      self.main = FeatureTransform(None if streams is None else list(streams))
    else:
      self.main = None
    self.text = text_lib.TextTransform(vocab)

  def __call__(self, index: int, record: dict) -> dict:
    rng = np.random.default_rng([self.seed, int(index)]) if self.train else None
    valid = not record.get("_pad", False)
    out = {"id": record.get("id", "?") if valid else "", "valid": valid, "skipped_frames": 0}
    if self.main is not None:
      out.update(self.main(record, rng))
    out.update(self.text(record, rng))
    if not valid:
      out["gloss"] = out["text"] = ""
    return out


class _PaddedSource:
  """``source`` followed by ``num_pad`` dummy copies of its last record (marked ``_pad``)."""

  def __init__(self, source, num_pad: int):
    self._source, self._n, self._pad = source, len(source), num_pad

  def __len__(self) -> int:
    return self._n + self._pad

  def __getitem__(self, index: int) -> dict:
    if index < self._n:
      return self._source[index]
    record = dict(self._source[self._n - 1])
    record["_pad"] = True
    return record


def _local_batch_size(config: Any, process_index: int, process_count: int) -> int:
  batch_size = int(cfg_get(config, "batch_size", PIPELINE_DEFAULTS["batch_size"]))
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} (global) must be a positive multiple of process_count "
                     f"{process_count}")
  return batch_size // process_count


def _to_iter(ds: grain.MapDataset, config: Any) -> grain.IterDataset:
  options = grain.ReadOptions(num_threads=int(cfg_get(config, "read_threads", 1)),
                              prefetch_buffer_size=int(cfg_get(config, "prefetch_batches", 2)))
  it = ds.to_iter_dataset(options)
  workers = int(cfg_get(config, "worker_processes", 0))
  if workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return it


def make_train_dataset(source, kind: str, config: Any, seed: int, process_index: int = 0, process_count: int = 1,
                       vocab: Any = None, stats: PipelineStats | None = None) -> grain.IterDataset:
  """The infinite, shuffled, augmented, batched train ``IterDataset`` of this host (see the module docstring)."""
  if len(source) == 0:
    raise ValueError(f"the train source {source!r} is empty")
  if not 0 <= int(seed) < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  local = _local_batch_size(config, process_index, process_count)
  transform = SampleTransform(kind, config, train=True, seed=seed, vocab=vocab, stats=stats)
  ds = grain.MapDataset.source(source).shuffle(seed=int(seed)).repeat()
  ds = ds.map_with_index(transform)
  if process_count > 1:
    ds = ds[process_index::process_count]
  ds = ds.batch(local, drop_remainder=True, batch_fn=batching.Collator(kind, config, transform.stats))
  return _to_iter(ds, config)


def make_train_iterator(source, kind: str, config: Any, seed: int, process_index: int = 0, process_count: int = 1,
                        vocab: Any = None, stats: PipelineStats | None = None) -> grain.DatasetIterator:
  """Checkpointable iterator of this host's train batches; ``it.stats`` holds the skip/truncation counters."""
  stats = stats if stats is not None else PipelineStats()
  it = iter(make_train_dataset(source, kind, config, seed, process_index, process_count, vocab, stats))
  it.stats = stats
  return it


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
  """Global steps that consume one epoch of ``num_samples`` at global ``batch_size`` (at least 1)."""
  return max(1, num_samples // batch_size)


class EvalBatches:
  """Re-iterable eval batches of one host; ``len()`` batches, ``num_samples`` real samples in the split."""

  def __init__(self, dataset: grain.IterDataset, num_batches: int, num_samples: int, stats: PipelineStats):
    self._dataset, self._num_batches, self.num_samples, self.stats = dataset, num_batches, num_samples, stats

  def __len__(self) -> int:
    return self._num_batches

  def __iter__(self) -> Iterator[dict]:
    return iter(self._dataset)


def make_eval_batches(source, kind: str, config: Any, process_index: int = 0, process_count: int = 1,
                      vocab: Any = None, stats: PipelineStats | None = None) -> EvalBatches:
  """Deterministic eval batches covering every sample exactly once (last batch padded, ``valid`` = 0)."""
  n = len(source)
  if n == 0:
    raise ValueError(f"the eval source {source!r} is empty")
  local = _local_batch_size(config, process_index, process_count)
  global_bs = local * process_count
  padded = -(-n // global_bs) * global_bs
  stats = stats if stats is not None else PipelineStats()
  transform = SampleTransform(kind, config, train=False, vocab=vocab, stats=stats)
  ds = grain.MapDataset.source(_PaddedSource(source, padded - n)).map_with_index(transform)
  if process_count > 1:
    ds = ds[process_index::process_count]
  ds = ds.batch(local, drop_remainder=True, batch_fn=batching.Collator(kind, config, stats))
  return EvalBatches(_to_iter(ds, config), padded // global_bs, n, stats)
