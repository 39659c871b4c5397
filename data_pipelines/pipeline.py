"""grain input pipelines for every input kind: train iterators (checkpointable) and eval batches.

Train: ``MapDataset.source(src)`` -> ``shuffle(seed)`` (grain folds the epoch into the seed, so every epoch has a
different, reproducible order) -> ``repeat()`` (or, with ``group_by_length`` / ``sortagrad_epochs``, the
length-aware ``ordering.EpochOrder``) -> per-sample transform with a generator seeded by
``(seed, stream position)`` (so a sample's augmentation depends only on the seed and where it falls in the
stream, never on iteration history) -> this host's slice ``[process_index::process_count]`` -> ``batch`` of
``batch_size // process_count`` with the bucketed ``batching.Collator`` (drop_remainder) -> ``to_iter_dataset``.
The iterator is a grain ``DatasetIterator``: ``it.get_state()`` / ``it.set_state(state)`` resume at exactly the
next batch. Local batch i of host p holds stream elements ``(i*b + j)*N + p``, so the N hosts together read
exactly the global batch ``[i*B, (i+1)*B)`` of the shuffled stream, disjointly. Batches may straddle an epoch
boundary (the stream is continuous); use ``steps_per_epoch`` for schedules.

Multi-process buckets: every process must pad its share of a global batch to the SAME bucket (frames, labels,
feature streams), or ``jax.make_array_from_process_local_data`` fails or hangs; a share's own longest element does
not decide it. With ``process_count > 1`` each sample carries its stream position and the local batch is collated
by ``_GlobalBucketCollator``, which pads to the buckets of the WHOLE global batch ``[i*B, (i+1)*B)``:

* which records: every process rebuilds the global batch's record indices from the shared seed with an index-only
  copy of the train order (``MapDataset.source(range(n)).shuffle(seed).repeat()``, the same permutation grain
  applies to the records; eval: the padded split in order);
* their raw lengths: a ``LengthIndex`` per split reads each record's cheap facts ONCE, lazily, and keeps them: the
  length of every padded axis (frames of a clip, keypoint frames, each feature stream's T and width, the number of
  gloss ids under the vocabulary), the id, gloss and text. ``num_frames`` metadata is not trusted (annotations may
  disagree with the stored frames). The records need not be decoded (no image decoding); in the first epoch a
  process reads the records of the other processes' shares too, afterwards the index answers from memory;
* their augmented lengths: the train temporal rescale (video always, keypoints with ``kp_augment`` and
  ``kp_temporal_scale > 0``) draws its length first from the sample's generator ``default_rng([seed, position])``,
  so every process recomputes each row's exact length with ``transforms.rescaled_length`` and the same generator:
  no upper bound, so the buckets equal those of a single-process run of the same global batch (and the shares are
  exactly its rows). Frames skipped as undecodable (``on_bad_frame='skip'``) can only shorten a clip, so its
  planned length stays an upper bound;
* the bucket: ``batching.Collator`` gets, per axis, the longest planned length of the global batch (see
  ``batching``); overflow ('error' / 'truncate') is decided on it, so all processes raise (or truncate) together.

Every local row is checked against the plan (same id, same lengths; shorter only with skipped frames), so a
transform that changes its length rule fails loudly instead of hanging a job. Streams and feature widths must
agree over the global batch. Multi-process batches also carry ``batching.GLOBAL_KEYS`` (the global batch's gloss
and text strings) for buckets chosen after the pipeline, e.g. text tokens. With ``process_count == 1`` none of
this runs: batches are exactly as before.

Eval: no shuffle (with ``group_by_length`` the split is read shortest first), deterministic transform, the split
padded with dummy samples (copies of the last sample with ``valid = 0`` and id '') to a multiple of the global batch
size, so every sample is seen exactly once and every host runs the same number of equally shaped batches.
``eval_buckets`` (empty = ``buckets``) pads eval batches to their own lengths: each bucket is one more compiled eval
program, and an evaluation is a fraction of a training run's steps, so fewer eval shapes can pay for their padding.

Host -> device transfer is the trainer's job; batches are dicts of NumPy arrays (``batching`` documents the keys;
``batching.STRING_KEYS`` are object arrays of str to drop before ``device_put``).

Config fields read (ConfigDict, dataclass or dict; ``default_config(kind)`` lists all with defaults):
  batch_size (GLOBAL batch size, divisible by process_count), read_threads, prefetch_batches, worker_processes,
  streams (features kind: stream names, None = all), group_by_length / sortagrad_epochs (train order, see
  ``data_pipelines.ordering``; 0 = grain's plain per-epoch shuffle), and everything read by ``batching.Collator``
  and the transforms (``transforms.video.DEFAULTS``, ``transforms.keypoints.DEFAULTS``, ``batching.DEFAULTS``).
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import grain
import ml_collections
import numpy as np

from data_pipelines import batching
from data_pipelines import ordering
from data_pipelines.transforms import FeatureTransform, PipelineStats, cfg_get, rescaled_length
from data_pipelines.transforms import keypoints as kp_lib
from data_pipelines.transforms import text as text_lib
from data_pipelines.transforms import video as video_lib

KINDS = batching.KINDS
PIPELINE_DEFAULTS = dict(batch_size=8, read_threads=1, prefetch_batches=2, worker_processes=0, streams=None,
                         group_by_length=0, sortagrad_epochs=0, eval_buckets=())


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


class _WithPosition:
  """The per-sample transform, plus the sample's stream position ``_index`` (for ``_GlobalBucketCollator``)."""

  def __init__(self, transform: SampleTransform):
    self.transform = transform

  def __call__(self, index: int, record: dict) -> dict:
    out = self.transform(index, record)
    out["_index"] = int(index)
    return out


class RecordInfo(NamedTuple):
  """What the bucket plan needs of one record (as its ``SampleTransform`` output will show it)."""
  id: str
  gloss: str
  text: str
  lengths: dict    # axis (``batching.axis_lengths`` keys) -> raw length, before augmentation
  widths: dict     # feature stream -> D


class LengthIndex:
  """Lazily filled per-split index: record index -> ``RecordInfo``, each record read at most once.

  Reads records through ``source[i]`` (for ArrayRecord: one read and a msgpack decode, no image decoding). Not
  locked: two threads may read the same record once each, with the same result. Picklable (worker processes get
  a copy and fill it themselves).
  """

  def __init__(self, source, kind: str, streams: list[str] | None = None, vocab: Any = None):
    self._source, self.kind, self.vocab = source, kind, vocab
    self.streams = None if streams is None else list(streams)
    self._cache: dict[int, RecordInfo] = {}

  def __len__(self) -> int:
    return len(self._cache)

  def __getitem__(self, index: int) -> RecordInfo:
    info = self._cache.get(index)
    if info is None:
      info = self._cache[index] = self._read(index)
    return info

  def _read(self, index: int) -> RecordInfo:
    record = self._source[index]
    sample_id = record.get("id", "?")
    lengths, widths = {}, {}
    if self.kind == "video":
      frames = record.get("frames")
      if not frames:
        raise ValueError(f"sample {sample_id!r} has no 'frames' (a video pipeline needs encoded frames)")
      lengths["frames"] = len(frames)
    elif self.kind == "keypoints":
      kp = record.get("keypoints")
      if kp is None or np.ndim(kp) != 3 or not np.shape(kp)[0]:
        raise ValueError(f"sample {sample_id!r}: keypoints must be (T>0, K, 3), got "
                         f"{None if kp is None else np.shape(kp)}")
      lengths["frames"] = int(np.shape(kp)[0])
    elif self.kind == "features":
      feats = record.get("features") or {}
      for name in (sorted(feats) if self.streams is None else self.streams):
        if name not in feats or np.ndim(feats[name]) != 2:
          raise ValueError(f"sample {sample_id!r}: no (T, D) feature stream {name!r}; it has {sorted(feats)}")
        lengths[batching.feature_axis(name)], widths[name] = (int(d) for d in np.shape(feats[name]))
    gloss = record.get("gloss", "") or ""
    if self.vocab is not None:
      try:
        lengths["labels"] = int(np.size(list(self.vocab.encode(gloss))))
      except Exception as e:
        raise ValueError(f"sample {sample_id!r}: cannot encode its glosses {gloss!r} ({type(e).__name__}: {e})") from e
    if record.get("_pad", False):
      return RecordInfo("", "", "", lengths, widths)
    return RecordInfo(sample_id, gloss, record.get("text", "") or "", lengths, widths)


class _BucketPlan:
  """Global batch number -> per row (``RecordInfo``, planned lengths), for all processes alike."""

  def __init__(self, index: LengthIndex, transform: SampleTransform, global_batch: int, order=None):
    self.index, self.global_batch, self.order = index, int(global_batch), order
    self.seed, self.rescale = transform.seed, None
    main = transform.main
    if transform.train and transform.kind == "video":
      self.rescale = (main.temporal_scale, main.min_frames, main.max_frames, main.length_multiple)
    elif transform.train and transform.kind == "keypoints" and main.augment and main.temporal_scale > 0:
      self.rescale = (main.temporal_scale, main.min_frames, main.max_frames, main.length_multiple)

  def __call__(self, step: int) -> list[tuple[RecordInfo, dict]]:
    rows = []
    for pos in range(step * self.global_batch, (step + 1) * self.global_batch):
      info = self.index[int(self.order[pos]) if self.order is not None else pos]
      lengths = info.lengths
      if self.rescale is not None:  # the transform's first draw from the same generator (SampleTransform)
        lengths = dict(lengths, frames=rescaled_length(lengths["frames"], np.random.default_rng([self.seed, pos]),
                                                       *self.rescale))
      rows.append((info, lengths))
    first = rows[0][0]
    for info, _ in rows[1:]:
      if info.widths != first.widths:
        raise ValueError(f"global batch {step}: sample {info.id!r} has feature streams (name: width) {info.widths}, "
                         f"sample {first.id!r} has {first.widths}; set the config's `streams`")
    return rows


class _GlobalBucketCollator:
  """``batch_fn`` of one process's share: pads it to the buckets of its whole global batch (module docstring)."""

  def __init__(self, collate: batching.Collator, plan: _BucketPlan):
    self.collate, self.plan = collate, plan

  def __call__(self, samples) -> dict:
    size = self.plan.global_batch
    positions = [int(s["_index"]) for s in samples]
    step = positions[0] // size
    if any(p // size != step for p in positions):
      raise RuntimeError(f"a local batch spans global batches (stream positions {positions}, global batch {size})")
    rows = self.plan(step)
    for s, pos in zip(samples, positions):
      info, planned = rows[pos - step * size]
      got = batching.axis_lengths(self.collate.kind, s)
      skipped = bool(s.get("skipped_frames"))  # undecodable frames dropped: a clip may be shorter than planned
      if s["id"] != info.id or set(got) != set(planned) or any(
          n > planned[a] or (n < planned[a] and not (a == "frames" and skipped)) for a, n in got.items()):
        raise RuntimeError(f"sample {s['id']!r} at stream position {pos} has lengths {got}, but the bucket plan of "
                           f"its global batch expects sample {info.id!r} with {planned}: the processes could pad "
                           "to different buckets")
    longest = {}
    for info, planned in rows:
      for axis, n in planned.items():
        if axis not in longest or n > longest[axis][0]:
          longest[axis] = (n, info.id)
    batch = self.collate(samples, longest)
    batch["global_gloss"] = np.array([info.gloss for info, _ in rows], dtype=object)
    batch["global_text"] = np.array([info.text for info, _ in rows], dtype=object)
    return batch


def group_by_length(config: Any) -> int:
  """The pipeline config's ``group_by_length`` window (0 = off; unset or None count as 0)."""
  return int(cfg_get(config, "group_by_length", 0) or 0)


def record_lengths(index: LengthIndex, n: int) -> np.ndarray:
  """Length of each of the ``n`` records for ``ordering``: its longest padded axis (frames / feature steps /
  gloss ids), or its number of glosses + text words where it has none (reads every record once)."""
  out = np.zeros(n, np.int64)
  for i in range(n):
    info = index[i]
    out[i] = max(info.lengths.values()) if info.lengths else len(info.gloss.split()) + len(info.text.split())
  return out


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
  collate = batching.Collator(kind, config, transform.stats)
  group = group_by_length(config)
  sortagrad = int(cfg_get(config, "sortagrad_epochs", 0) or 0)
  index = LengthIndex(source, kind, cfg_get(config, "streams", None), vocab)
  if group or sortagrad:
    order = ordering.EpochOrder(record_lengths(index, len(source)), seed, local * process_count, group, sortagrad)
    ds = grain.MapDataset.source(order).map(ordering.Fetch(source))
  else:
    ds = grain.MapDataset.source(source).shuffle(seed=int(seed)).repeat()
    order = grain.MapDataset.source(range(len(source))).shuffle(seed=int(seed)).repeat()  # record index per position
  if process_count > 1:
    collate = _GlobalBucketCollator(collate, _BucketPlan(index, transform, local * process_count, order))
    ds = ds.map_with_index(_WithPosition(transform))[process_index::process_count]
  else:
    ds = ds.map_with_index(transform)
  ds = ds.batch(local, drop_remainder=True, batch_fn=collate)
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


class _Overlay:
  """A read-only config view: ``overrides`` first, then ``config`` (what ``cfg_get`` reads)."""

  def __init__(self, config: Any, **overrides):
    self._config, self._overrides = config, overrides

  def get(self, name: str, default: Any = None) -> Any:
    if name in self._overrides:
      return self._overrides[name]
    return cfg_get(self._config, name, default)


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
  eval_buckets = cfg_get(config, "eval_buckets", None)
  collate = batching.Collator(kind, _Overlay(config, buckets=tuple(eval_buckets)) if eval_buckets else config, stats)
  padded_source = _PaddedSource(source, padded - n)
  index = LengthIndex(padded_source, kind, cfg_get(config, "streams", None), vocab)  # lazy: read when used
  order = None
  if group_by_length(config):  # shortest first (batches of similar length pad less); the dummies stay last
    order = np.concatenate([np.argsort(record_lengths(index, n), kind="stable"), np.arange(n, padded)])
    padded_source = ordering.Reordered(padded_source, order)
  ds = grain.MapDataset.source(padded_source)
  if process_count > 1:  # the plan reads the lengths the sort already read (one index, one read per record)
    collate = _GlobalBucketCollator(collate, _BucketPlan(index, transform, global_bs, order))
    ds = ds.map_with_index(_WithPosition(transform))[process_index::process_count]
  else:
    ds = ds.map_with_index(transform)
  ds = ds.batch(local, drop_remainder=True, batch_fn=collate)
  return EvalBatches(_to_iter(ds, config), padded // global_bs, n, stats)
