"""Bucketed padding of per-sample dicts into fixed-shape NumPy batches (lengths + masks, 1 = valid).

Every ragged axis is padded to the smallest *bucket* length that fits the batch's longest element, so ``jax.jit``
compiles one program per bucket instead of one per batch. Buckets come from the config: an explicit list
(``buckets``, ``label_buckets``) or a geometric rule (``bucket_min``, ``bucket_max``, ``bucket_ratio``; for labels
``label_bucket_min/max/ratio``), rounded up to ``bucket_multiple`` (video/keypoint buckets are also rounded up to
the temporal stride 4). An element longer than the largest bucket raises an error naming the sample, or with
``overflow='truncate'`` is cut to the largest bucket and counted (``truncated`` per sample, ``PipelineStats``).

Video follows SlowFastSign's ``collate_fn`` (design/SLOWFASTSIGN.md §1 "Temporal padding and downsampling"): each
clip becomes ``left_pad`` (6) copies of its first frame, its T frames, then copies of its last frame up to the
padded length ``P = 4*ceil(bucket/4) + 12``; per sample ``video_length = 4*ceil(T/4) + 12`` and the valid length
after the temporal convs (K5 P2 K5 P2, no padding) is ``feat_length = ceil(T/4)`` of ``P_out = (P - 12)/4``.
Unlike the original the batch is NOT sorted by length (the JAX models use masks, not packed sequences).

Multi-process input (``pipeline`` documents the design): a process's batch is only its share of the global batch,
but every process must pad to the same bucket. The pipeline then passes ``longest`` to ``Collator.__call__``: for
each ragged axis (``axis_lengths`` names them: ``frames``, ``labels``, ``features/<stream>``) the longest length in
the WHOLE global batch and the id of that sample; the bucket is chosen from it, not from the local rows (a local
length above it raises, as the shares would then disagree). Overflow is also decided on the global batch, so with
``overflow='error'`` every process raises at the same step.

Batch keys (B = batch size), by input kind:

* always: ``id``, ``gloss``, ``text`` (object arrays of str; see ``STRING_KEYS``), ``valid`` (B,) float32 (0 for
  the dummy samples that pad the last eval batch), ``skipped_frames`` (B,) int32, ``truncated`` (B,) int32;
* with a vocabulary: ``labels`` (B, Lb) int32 right-padded with 0 (= CTC blank), ``label_lengths`` (B,) int32,
  ``label_mask`` (B, Lb) float32;
* video: ``video`` (B, P, h, w, 3) float32 normalised (``video_normalize='host'``) or uint8 (``'device'``),
  ``num_frames`` (B,) = T, ``video_length`` (B,), ``frame_mask`` (B, P) (1 on the T real frames),
  ``feat_length`` (B,), ``feat_mask`` (B, P_out);
* keypoints: ``keypoints`` (B, Tb, K, 3) zero-padded, ``num_frames``, ``frame_mask`` (B, Tb); with
  ``kp_padding='slowfast'`` the video layout instead (edge copies, P, ``video_length``, ``feat_length``, ``feat_mask``);
* features: ``features`` {stream: (B, Tb_s, D_s)}, ``feature_lengths`` {stream: (B,)}, ``feature_mask``
  {stream: (B, Tb_s)}, zero-padded, each stream with its own bucket;
* multi-process train/eval batches only (process_count > 1): ``global_gloss``, ``global_text`` (``GLOBAL_KEYS``;
  object arrays of str of the WHOLE global batch, in global row order, host-only): for buckets chosen after the
  pipeline (e.g. text tokens), which must also come from the global batch.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from data_pipelines.transforms import PipelineStats, cfg_get, warn
from data_pipelines.transforms.video import MEAN, STD

STRING_KEYS = ("id", "gloss", "text")
GLOBAL_KEYS = ("global_gloss", "global_text")
KINDS = ("video", "keypoints", "features", "gloss_text")
STRIDE = 4  # SlowFastSign temporal downsampling (two K5 + two P2)

DEFAULTS = dict(buckets=None, bucket_min=16, bucket_max=256, bucket_ratio=1.25, bucket_multiple=4,
                label_buckets=None, label_bucket_min=8, label_bucket_max=128, label_bucket_ratio=2.0,
                overflow="error", left_pad=6, video_normalize="host", kp_padding="zero")


def geometric_buckets(minimum: int, maximum: int, ratio: float, multiple: int = 1) -> tuple[int, ...]:
  """``minimum * ratio**k`` rounded up to ``multiple``, up to and including ``maximum`` (rounded up)."""
  if minimum <= 0 or maximum < minimum or ratio <= 1.0:
    raise ValueError(f"bad geometric bucket rule min={minimum} max={maximum} ratio={ratio} (need 0<min<=max, "
                     f"ratio>1)")
  up = lambda n: -(-int(math.ceil(n)) // multiple) * multiple
  out, value = [], float(minimum)
  while up(value) < up(maximum):
    if not out or up(value) > out[-1]:
      out.append(up(value))
    value *= ratio
  out.append(up(maximum))
  return tuple(out)


def make_buckets(config: Any, prefix: str = "", multiple: int | None = None) -> tuple[int, ...]:
  """Sorted bucket lengths from ``<prefix>buckets`` or the ``<prefix>bucket_min/max/ratio`` rule."""
  g = lambda k: cfg_get(config, prefix + k, DEFAULTS[prefix + k])
  mult = int(multiple if multiple is not None else cfg_get(config, "bucket_multiple", DEFAULTS["bucket_multiple"]))
  explicit = g("buckets")
  if explicit is not None and len(explicit):
    out = sorted({-(-int(b) // mult) * mult for b in explicit})
    if out[0] <= 0:
      raise ValueError(f"{prefix}buckets must be positive, got {list(explicit)}")
    return tuple(out)
  return geometric_buckets(int(g("bucket_min")), int(g("bucket_max")), float(g("bucket_ratio")), mult)


def pick_bucket(length: int, buckets: Sequence[int]) -> int | None:
  """The smallest bucket >= ``length`` (None if it fits none)."""
  for b in buckets:
    if length <= b:
      return b
  return None


def _ceil_div(a, b):
  return -(-a // b)


def feature_axis(name: str) -> str:
  """The ``longest`` / ``axis_lengths`` key of feature stream ``name``."""
  return "features/" + name


def axis_lengths(kind: str, sample: dict) -> dict[str, int]:
  """Lengths of one per-sample dict along every axis the ``kind`` batch pads: ``frames`` (video, keypoints),
  ``features/<stream>`` (features), ``labels`` (when the sample has gloss labels)."""
  out = {}
  if kind == "video":
    out["frames"] = len(sample["video"])
  elif kind == "keypoints":
    out["frames"] = len(sample["keypoints"])
  elif kind == "features":
    out.update((feature_axis(name), len(x)) for name, x in sample["features"].items())
  if "labels" in sample:
    out["labels"] = len(sample["labels"])
  return out


class Collator:
  """``batch_fn`` for grain: list of per-sample dicts -> one padded batch dict (see the module docstring)."""

  def __init__(self, kind: str, config: Any = None, stats: PipelineStats | None = None):
    if kind not in KINDS:
      raise ValueError(f"unknown input kind {kind!r}; expected one of {KINDS}")
    g = lambda k: cfg_get(config, k, DEFAULTS[k])
    self.kind = kind
    self.stats = stats if stats is not None else PipelineStats()
    self.overflow = g("overflow")
    if self.overflow not in ("error", "truncate"):
      raise ValueError(f"overflow must be 'error' or 'truncate', got {self.overflow!r}")
    temporal = kind in ("video", "keypoints")
    mult = int(g("bucket_multiple"))
    if temporal:
      mult = mult * STRIDE // math.gcd(mult, STRIDE)
    self.buckets = make_buckets(config, "", mult)
    self.label_buckets = make_buckets(config, "label_", 1)
    self.left_pad = int(g("left_pad"))
    self.normalize = g("video_normalize")
    if self.normalize not in ("host", "device"):
      raise ValueError(f"video_normalize must be 'host' or 'device', got {self.normalize!r}")
    self.kp_padding = g("kp_padding")
    if self.kp_padding not in ("zero", "slowfast"):
      raise ValueError(f"kp_padding must be 'zero' or 'slowfast', got {self.kp_padding!r}")

  # -- helpers -------------------------------------------------------------------------------------------------
  def _fit(self, samples: list[dict], lengths: list[int], buckets: Sequence[int], what: str,
           longest: tuple[int, str] | None = None) -> tuple[int, list[int]]:
    """Bucket for the batch and the per-sample (possibly truncated) lengths.

    ``longest``: (length, sample id) of the longest element of the global batch (multi-process; see the module
    docstring); None: this batch's own longest.
    """
    if longest is None:
      target, target_id = max(lengths), None
    else:
      target, target_id = int(longest[0]), longest[1]
      if max(lengths) > target:
        local = max(zip(lengths, (s["id"] for s in samples)))
        raise RuntimeError(f"sample {local[1]!r} has {what} of length {local[0]}, longer than the longest "
                           f"({target}, sample {target_id!r}) planned for its global batch: the processes would "
                           "pad to different buckets")
    bucket = pick_bucket(target, buckets)
    if bucket is not None:
      return bucket, list(lengths)
    bucket = buckets[-1]
    if self.overflow == "error":
      bad = [(s["id"], n) for s, n in zip(samples, lengths) if n > bucket]
      if not bad:  # the too-long sample is in another process's share: every process raises at this step
        raise ValueError(f"sample {target_id!r} (in another process's share of this global batch) has {what} of "
                         f"length {target}, longer than the largest bucket {bucket} (buckets {tuple(buckets)}); "
                         "raise the bucket maximum or set overflow='truncate'")
      raise ValueError(f"sample {bad[0][0]!r} has {what} of length {bad[0][1]}, longer than the largest bucket "
                       f"{bucket} (buckets {tuple(buckets)}); raise the bucket maximum or set overflow='truncate'"
                       + (f" (also too long: {[b[0] for b in bad[1:]]})" if len(bad) > 1 else ""))
    out = []
    for s, n in zip(samples, lengths):
      if n > bucket:
        s["truncated"] = s.get("truncated", 0) + (n - bucket)
        if s.get("valid", True):
          warn(self.stats, "samples_truncated", f"sample {s['id']!r}: {what} truncated from {n} to {bucket}")
      out.append(min(n, bucket))
    return bucket, out

  def _slowfast_pad(self, seqs: list[np.ndarray], lengths: list[int], bucket: int, out_dtype) -> dict:
    """Edge-replicated SlowFastSign layout for (T, ...) sequences: 6 first-frame copies, frames, last copies."""
    lp = self.left_pad
    padded_len = STRIDE * _ceil_div(bucket, STRIDE) + 2 * lp
    first = seqs[0]
    out = np.empty((len(seqs), padded_len) + first.shape[1:], dtype=out_dtype)
    for i, (x, n) in enumerate(zip(seqs, lengths)):
      x = x[:n]
      out[i, :lp] = x[0]
      out[i, lp:lp + n] = x
      out[i, lp + n:] = x[n - 1]
    lengths = np.asarray(lengths, dtype=np.int32)
    feat_len = _ceil_div(lengths, STRIDE).astype(np.int32)
    pos = np.arange(padded_len)
    out_len = (padded_len - 2 * lp) // STRIDE
    return {
        "num_frames": lengths,
        "video_length": (STRIDE * feat_len + 2 * lp).astype(np.int32),
        "frame_mask": ((pos >= lp) & (pos < lp + lengths[:, None])).astype(np.float32),
        "feat_length": feat_len,
        "feat_mask": (np.arange(out_len) < feat_len[:, None]).astype(np.float32),
    }, out

  @staticmethod
  def _zero_pad(seqs: list[np.ndarray], lengths: list[int], bucket: int) -> tuple[np.ndarray, np.ndarray]:
    first = seqs[0]
    out = np.zeros((len(seqs), bucket) + first.shape[1:], dtype=first.dtype)
    for i, (x, n) in enumerate(zip(seqs, lengths)):
      out[i, :n] = x[:n]
    mask = (np.arange(bucket) < np.asarray(lengths)[:, None]).astype(np.float32)
    return out, mask

  # -- main ------------------------------------------------------------------------------------------------------
  def __call__(self, samples: Sequence[dict], longest: dict[str, tuple[int, str]] | None = None) -> dict:
    """Pads and stacks ``samples``; ``longest`` (multi-process): per axis, the global batch's (length, id)."""

    def at(axis: str) -> tuple[int, str] | None:
      return None if longest is None else longest[axis]

    samples = [dict(s) for s in samples]
    for s in samples:
      s.setdefault("truncated", 0)
    batch: dict[str, Any] = {}
    if self.kind == "video":
      seqs = [s["video"] for s in samples]
      bucket, lengths = self._fit(samples, [len(x) for x in seqs], self.buckets, "video frames", at("frames"))
      info, video = self._slowfast_pad(seqs, lengths, bucket, seqs[0].dtype)
      if self.normalize == "host":  # one pass over the padded uint8 batch, no per-sample temporaries
        out = np.empty(video.shape, np.float32)
        np.multiply(video, np.float32(1.0 / (255.0 * STD)), out=out, dtype=np.float32)
        np.subtract(out, np.float32(MEAN / STD), out=out)
        video = out
      batch["video"] = video
      batch.update(info)
    elif self.kind == "keypoints":
      seqs = [s["keypoints"] for s in samples]
      bucket, lengths = self._fit(samples, [len(x) for x in seqs], self.buckets, "keypoint frames",
                                  at("frames"))
      if self.kp_padding == "slowfast":
        info, batch["keypoints"] = self._slowfast_pad(seqs, lengths, bucket, np.float32)
        batch.update(info)
      else:
        batch["keypoints"], batch["frame_mask"] = self._zero_pad(seqs, lengths, bucket)
        batch["num_frames"] = np.asarray(lengths, dtype=np.int32)
    elif self.kind == "features":
      names = list(samples[0]["features"])
      for s in samples[1:]:
        if sorted(s["features"]) != sorted(names):
          raise ValueError(f"sample {s['id']!r} has feature streams {sorted(s['features'])}, sample "
                           f"{samples[0]['id']!r} has {sorted(names)}; set the config's `streams`")
      batch["features"], batch["feature_lengths"], batch["feature_mask"] = {}, {}, {}
      for name in names:
        seqs = [s["features"][name] for s in samples]
        dims = {x.shape[1] for x in seqs}
        if len(dims) != 1:
          raise ValueError(f"feature stream {name!r} has different widths {sorted(dims)} in one batch "
                           f"(samples {[s['id'] for s in samples]})")
        bucket, lengths = self._fit(samples, [len(x) for x in seqs], self.buckets, f"feature stream {name!r}",
                                    at(feature_axis(name)))
        batch["features"][name], batch["feature_mask"][name] = self._zero_pad(seqs, lengths, bucket)
        batch["feature_lengths"][name] = np.asarray(lengths, dtype=np.int32)
    if "labels" in samples[0]:
      seqs = [s["labels"] for s in samples]
      bucket, lengths = self._fit(samples, [len(x) for x in seqs], self.label_buckets, "gloss labels",
                                  at("labels"))
      batch["labels"], batch["label_mask"] = self._zero_pad(seqs, lengths, bucket)
      batch["label_lengths"] = np.asarray(lengths, dtype=np.int32)
    for key in STRING_KEYS:
      batch[key] = np.array([s.get(key, "") for s in samples], dtype=object)
    batch["valid"] = np.array([1.0 if s.get("valid", True) else 0.0 for s in samples], dtype=np.float32)
    batch["skipped_frames"] = np.array([s.get("skipped_frames", 0) for s in samples], dtype=np.int32)
    batch["truncated"] = np.array([s["truncated"] for s in samples], dtype=np.int32)
    return batch
