"""Multi-process pipelines: every process pads its share of a global batch to the same bucket as the others.

N processes are simulated in one Python process (train iterators with process_index 0..N-1, process_count N). For
every step, over several epochs: all local batches have the same keys, shapes and dtypes (else
``jax.make_array_from_process_local_data`` fails or hangs), and local row j of process p is exactly row j*N + p of
the single-process global batch (same sample, same augmentation, same padding).
"""
import io

import jax
import numpy as np
from PIL import Image
import pytest

from data_pipelines import array_record_io, batching, pipeline


class _Vocab:
  def encode(self, s):
    return [int(g[1:]) for g in s.split()]


def _gloss(i):
  return " ".join(f"g{1 + (i + k) % 5}" for k in range(1 + (i * 3) % 7))  # 1 .. 7 glosses


def _lengths(n, seed):
  """Widely spread clip lengths (so that different shares of one global batch need different buckets)."""
  return [int(t) for t in np.random.default_rng(seed).integers(4, 27, size=n)]


def _png(arr):
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="PNG")
  return buf.getvalue()


def _video_records(n):
  rng = np.random.default_rng(1)
  return [{"id": f"v{i:02d}", "gloss": _gloss(i), "text": f"video {i}",
           "frames": [_png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(t)]}
          for i, t in enumerate(_lengths(n, 2))]


def _keypoint_records(n):
  rng = np.random.default_rng(3)
  return [{"id": f"k{i:02d}", "gloss": _gloss(i), "text": f"keypoints {i}", "frame_size": (32, 32),
           "keypoints": rng.uniform(0, 32, (t, 133, 3)).astype(np.float32)} for i, t in enumerate(_lengths(n, 4))]


def _feature_records(n):
  rng = np.random.default_rng(5)
  return [{"id": f"f{i:02d}", "gloss": _gloss(i), "text": f"features {i}",
           "features": {"rgb": rng.normal(size=(t, 6)).astype(np.float32),
                        "kp": np.full((1 + t // 2, 3), i, np.float32)}} for i, t in enumerate(_lengths(n, 6))]


RECORDS = {"video": _video_records, "keypoints": _keypoint_records, "features": _feature_records,
           "gloss_text": _feature_records}


def _cfg(kind, batch_size, **kw):
  cfg = pipeline.default_config(kind)
  cfg.update(batch_size=batch_size, buckets=[8, 12, 16, 20, 24, 28, 32], label_buckets=[2, 4, 8],
             crop_size=6, min_frames=4, max_frames=28, kp_min_frames=4, kp_max_frames=28)
  cfg.update(kw)
  return cfg


GLOBAL_KEYS = ("global_gloss", "global_text")  # host-only strings of the whole global batch (num > 1 only)


def _shapes(batch):
  return [(jax.tree_util.keystr(path), np.shape(v), np.asarray(v).dtype.str)
          for path, v in jax.tree_util.tree_leaves_with_path(batch)]


def _per_row(batch):
  return {k: v for k, v in batch.items() if k not in GLOBAL_KEYS}


def _own_buckets(batch):
  """The buckets a share would pick from its own rows (what the pipeline did before the global plan)."""
  lengths = {"labels": batch["label_lengths"]} if "label_lengths" in batch else {}
  lengths.update({k: batch["feature_lengths"][k] for k in batch.get("feature_lengths", {})})
  if "num_frames" in batch:
    lengths["frames"] = batch["num_frames"]
  return {k: batching.pick_bucket(int(v.max()), [2, 4, 8] if k == "labels" else range(8, 33, 4))
          for k, v in lengths.items()}


def _assert_shares_match_global(local, single, num):
  """``local`` batches of the ``num`` processes vs the single-process ``single`` batch of the same step."""
  shapes = [_shapes(_per_row(b)) for b in local]
  assert all(s == shapes[0] for s in shapes[1:]), f"padded shapes differ across processes: {shapes}"
  ids = sorted(i for b in local for i in b["id"])
  assert ids == sorted(single["id"])  # the shares are disjoint and together make the global batch
  want = jax.tree_util.tree_leaves_with_path(single)
  for p, b in enumerate(local):
    got = jax.tree_util.tree_leaves_with_path(_per_row(b))
    assert [path for path, _ in got] == [path for path, _ in want]
    for (path, v), (_, g) in zip(got, want):  # local row j of process p = global row j*num + p
      np.testing.assert_array_equal(v, g[p::num], err_msg=f"process {p}: {jax.tree_util.keystr(path)}")
    for key in GLOBAL_KEYS:  # every process also gets the strings of the whole global batch
      assert list(b[key]) == list(single[key[len("global_"):]])


@pytest.mark.parametrize("order", ["shuffle", "grouped"])
@pytest.mark.parametrize("num", [2, 4])
@pytest.mark.parametrize("kind", ["video", "keypoints", "features", "gloss_text"])
def test_train_shares_have_the_same_bucket_and_make_the_global_batch(kind, num, order):
  records = RECORDS[kind](10)
  cfg, steps = _cfg(kind, 2 * num), 10 if num == 2 else 6  # 2 (4 processes) or 4 (2 processes) epochs
  if order == "grouped":  # length-aware order (data_pipelines/ordering.py): SortaGrad epoch, then grouped
    cfg.update(group_by_length=2, sortagrad_epochs=1)
  single = pipeline.make_train_iterator(records, kind, cfg, seed=7, vocab=_Vocab())
  local = [pipeline.make_train_iterator(records, kind, cfg, seed=7, process_index=p, process_count=num,
                                       vocab=_Vocab()) for p in range(num)]
  disagree = 0
  for _ in range(steps):
    g, shares = next(single), [next(it) for it in local]
    _assert_shares_match_global(shares, g, num)
    disagree += any(_own_buckets(b) != _own_buckets(shares[0]) for b in shares[1:])
  assert disagree >= 2  # the data make bucketing on each share's own rows fail


def test_video_from_array_records_and_truncation(tmp_path):
  """An ArrayRecord source (lengths read from the records), overflow='truncate' decided on the global batch."""
  array_record_io.write_split(str(tmp_path), "train", _video_records(9), num_shards=2)
  source = array_record_io.RecordSource(str(tmp_path), "train")
  cfg = _cfg("video", 4, buckets=[8, 16], overflow="truncate")
  single = pipeline.make_train_iterator(source, "video", cfg, seed=3, vocab=_Vocab())
  local = [pipeline.make_train_iterator(source, "video", cfg, seed=3, process_index=p, process_count=2,
                                       vocab=_Vocab()) for p in range(2)]
  truncated = 0
  for _ in range(7):
    g = next(single)
    shares = [next(it) for it in local]
    _assert_shares_match_global(shares, g, 2)
    truncated += int(g["truncated"].sum())
  assert truncated > 0


@pytest.mark.parametrize("grouped", [False, True])
def test_eval_shares_have_the_same_bucket(grouped):
  records = _feature_records(11)
  cfg = _cfg("features", 4)
  if grouped:  # the split is read shortest first; the plan must follow that order
    cfg.update(group_by_length=2)
  single = list(pipeline.make_eval_batches(records, "features", cfg, vocab=_Vocab()))
  shares = [list(pipeline.make_eval_batches(records, "features", cfg, process_index=p, process_count=2,
                                            vocab=_Vocab())) for p in range(2)]
  assert len(single) == len(shares[0]) == len(shares[1]) == 3
  for step, g in enumerate(single):
    _assert_shares_match_global([s[step] for s in shares], g, 2)


def test_too_long_sample_fails_every_process_at_the_same_step():
  records = _feature_records(8)
  records[5]["features"]["rgb"] = np.zeros((40, 6), np.float32)  # longer than the largest bucket 32
  cfg = _cfg("features", 4)
  first_failure = []
  for p in range(2):
    it = pipeline.make_train_iterator(records, "features", cfg, seed=0, process_index=p, process_count=2)
    for step in range(4):
      try:
        next(it)
      except ValueError as e:
        assert "'f05'" in str(e) and "largest bucket 32" in str(e)
        first_failure.append(step)
        break
  assert len(first_failure) == 2 and first_failure[0] == first_failure[1]


def test_skipped_bad_frames_keep_the_shares_consistent():
  """Undecodable frames dropped (on_bad_frame='skip') shorten a clip below its planned length: still one bucket."""
  records = _video_records(8)
  for r in records[::2]:
    r["frames"] = [b"not an image" if k % 3 == 0 else f for k, f in enumerate(r["frames"])]
  cfg = _cfg("video", 4, on_bad_frame="skip")
  local = [pipeline.make_train_iterator(records, "video", cfg, seed=1, process_index=p, process_count=2,
                                       vocab=_Vocab()) for p in range(2)]
  skipped = 0
  for _ in range(4):
    shares = [next(it) for it in local]
    assert _shapes(shares[0]) == _shapes(shares[1])
    skipped += sum(int(b["skipped_frames"].sum()) for b in shares)
    for b in shares:
      np.testing.assert_array_equal(b["frame_mask"].sum(1), b["num_frames"])
  assert skipped > 0
