"""grain pipelines: bucketing, eval coverage, deterministic shuffling, checkpoint/restore, per-host sharding."""
import io

import numpy as np
from PIL import Image
import pytest

from data_pipelines import array_record_io, batching, pipeline


class _Vocab:
  def encode(self, s):
    return [int(g[1:]) for g in s.split()]


def _feature_records(n, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    t = int(rng.integers(3, 20))
    out.append({"id": f"r{i:03d}", "gloss": " ".join(f"g{1 + (i + k) % 7}" for k in range(1 + i % 4)),
                "text": f"sentence {i}",
                "features": {"rgb": rng.normal(size=(t, 6)).astype(np.float32),
                             "kp": np.full((t, 3), i, np.float32)}})
  return out


def _video_records(n, t=10, size=16):
  rng = np.random.default_rng(1)
  out = []
  for i in range(n):
    frames = []
    for _ in range(t + i % 3):
      buf = io.BytesIO()
      Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
      frames.append(buf.getvalue())
    out.append({"id": f"v{i}", "gloss": "g1 g2", "frames": frames})
  return out


def _cfg(kind="features", **kw):
  cfg = pipeline.default_config(kind)
  cfg.batch_size = 4
  cfg.buckets = [8, 16, 24]
  cfg.label_buckets = [4, 8]
  for k, v in kw.items():
    cfg[k] = v
  return cfg


def _take(it, k):
  return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert list(x["id"]) == list(y["id"])
    for name in x["features"]:
      np.testing.assert_array_equal(x["features"][name], y["features"][name])
    np.testing.assert_array_equal(x["labels"], y["labels"])


def test_geometric_buckets_and_smallest_fitting_bucket():
  assert batching.geometric_buckets(16, 64, 1.5, 4) == (16, 24, 36, 56, 64)
  assert batching.pick_bucket(17, (16, 24, 36)) == 24 and batching.pick_bucket(16, (16, 24)) == 16
  assert batching.pick_bucket(40, (16, 24, 36)) is None
  samples = [{"id": "a", "features": {"x": np.ones((5, 2), np.float32)}, "labels": np.array([1, 2, 3], np.int32)},
             {"id": "b", "features": {"x": np.ones((9, 2), np.float32)}, "labels": np.array([4], np.int32)}]
  batch = batching.Collator("features", {"buckets": [8, 16, 24], "label_buckets": [2, 4, 8]})(samples)
  assert batch["features"]["x"].shape == (2, 16, 2)
  np.testing.assert_array_equal(batch["feature_mask"]["x"].sum(1), [5, 9])
  assert batch["feature_mask"]["x"][0, :5].all() and not batch["feature_mask"]["x"][0, 5:].any()
  assert (batch["features"]["x"][0, 5:] == 0).all()
  np.testing.assert_array_equal(batch["labels"], [[1, 2, 3, 0], [4, 0, 0, 0]])  # blank/pad = 0, bucket 4
  np.testing.assert_array_equal(batch["label_lengths"], [3, 1])
  np.testing.assert_array_equal(batch["label_mask"], [[1, 1, 1, 0], [1, 0, 0, 0]])
  # Video buckets are rounded up to the temporal stride 4.
  assert batching.Collator("video", {"buckets": [10, 30]}).buckets == (12, 32)


def test_too_long_sample_errors_with_its_id_or_truncates_and_counts():
  samples = [{"id": "short", "features": {"x": np.ones((5, 2), np.float32)}},
             {"id": "toolong", "features": {"x": np.ones((30, 2), np.float32)}}]
  with pytest.raises(ValueError, match="'toolong'.*30.*largest bucket 24"):
    batching.Collator("features", {"buckets": [8, 24]})(samples)
  collate = batching.Collator("features", {"buckets": [8, 24], "overflow": "truncate"})
  batch = collate(samples)
  assert batch["features"]["x"].shape == (2, 24, 2) and list(batch["feature_lengths"]["x"]) == [5, 24]
  assert list(batch["truncated"]) == [0, 6] and collate.stats.samples_truncated == 1


def test_eval_batches_cover_every_sample_once_with_valid_mask():
  records = _feature_records(10)
  ev = pipeline.make_eval_batches(records, "features", _cfg(), vocab=_Vocab())
  batches = list(ev)
  assert len(ev) == len(batches) == 3 and ev.num_samples == 10
  ids = [i for b in batches for i, v in zip(b["id"], b["valid"]) if v]
  assert ids == [r["id"] for r in records]
  assert list(batches[-1]["valid"]) == [1, 1, 0, 0] and list(batches[-1]["id"][2:]) == ["", ""]
  assert all(b["features"]["rgb"].shape[0] == 4 for b in batches)
  # Deterministic: the same batches twice, equal to the records.
  again = list(ev)
  _assert_batches_equal(batches, again)
  np.testing.assert_array_equal(batches[0]["features"]["kp"][1, :len(records[1]["features"]["kp"])], 1.0)
  # Two hosts: each sees the same number of batches, together every sample exactly once.
  per_host = [list(pipeline.make_eval_batches(records, "features", _cfg(), process_index=p, process_count=2))
              for p in range(2)]
  assert len(per_host[0]) == len(per_host[1]) == 3
  ids2 = [i for h in per_host for b in h for i, v in zip(b["id"], b["valid"]) if v]
  assert sorted(ids2) == sorted(r["id"] for r in records)


def test_shuffle_is_deterministic_by_seed_and_differs_across_epochs():
  records = _feature_records(12)
  def epoch_orders(seed):
    it = pipeline.make_train_iterator(records, "features", _cfg(), seed=seed)
    ids = [i for b in _take(it, 9) for i in b["id"]]  # 36 samples = 3 epochs
    return [ids[k * 12:(k + 1) * 12] for k in range(3)]
  a, b, c = epoch_orders(5), epoch_orders(5), epoch_orders(6)
  assert a == b
  assert a != c
  for epoch in a:
    assert sorted(epoch) == sorted(r["id"] for r in records)  # each epoch is a permutation
  assert a[0] != a[1] and a[1] != a[2]


def test_iterator_checkpoint_restore_resumes_at_the_same_batch(tmp_path):
  array_record_io.write_split(str(tmp_path), "train", _video_records(6), num_shards=2)
  source = array_record_io.RecordSource(str(tmp_path), "train")
  cfg = _cfg("video", crop_size=12, min_frames=4, max_frames=16, buckets=[8, 16, 20], batch_size=2)
  it = pipeline.make_train_iterator(source, "video", cfg, seed=1, vocab=_Vocab())
  uninterrupted = _take(it, 7)
  it = pipeline.make_train_iterator(source, "video", cfg, seed=1, vocab=_Vocab())
  _take(it, 3)
  state = it.get_state()
  restored = pipeline.make_train_iterator(source, "video", cfg, seed=1, vocab=_Vocab())
  restored.set_state(state)
  resumed = _take(restored, 4)
  for x, y in zip(uninterrupted[3:], resumed):
    assert list(x["id"]) == list(y["id"])
    np.testing.assert_array_equal(x["video"], y["video"])  # same augmentation, too
    np.testing.assert_array_equal(x["video_length"], y["video_length"])
  assert uninterrupted[0]["video"].shape[2:] == (12, 12, 3)
  assert all(b["video"].shape[1] - 12 in (8, 16, 20) for b in uninterrupted)


def test_per_host_shards_are_disjoint_and_cover_each_global_batch():
  records = _feature_records(9)
  cfg = _cfg(batch_size=4)
  single = _take(pipeline.make_train_iterator(records, "features", cfg, seed=3, vocab=_Vocab()), 5)
  hosts = [_take(pipeline.make_train_iterator(records, "features", cfg, seed=3, process_index=p, process_count=2,
                                              vocab=_Vocab()), 5) for p in range(2)]
  for step in range(5):
    h0, h1 = hosts[0][step], hosts[1][step]
    assert h0["features"]["kp"].shape[0] == h1["features"]["kp"].shape[0] == 2
    pairs = [(i, float(b["features"]["kp"][j, 0, 0])) for b in (h0, h1) for j, i in enumerate(b["id"])]
    global_pairs = [(i, float(single[step]["features"]["kp"][j, 0, 0])) for j, i in enumerate(single[step]["id"])]
    assert sorted(pairs) == sorted(global_pairs)  # same samples (disjoint split of the global batch)
  with pytest.raises(ValueError, match="multiple of process_count"):
    pipeline.make_train_iterator(records, "features", _cfg(batch_size=3), seed=0, process_count=2)


def test_keypoint_and_gloss_text_pipelines_shapes():
  rng = np.random.default_rng(0)
  records = [{"id": f"k{i}", "gloss": "g1 g3", "text": "t", "frame_size": (32, 32),
              "keypoints": rng.uniform(0, 32, (6 + i, 133, 3)).astype(np.float32)} for i in range(5)]
  cfg = _cfg("keypoints", kp_min_frames=4, kp_max_frames=12, buckets=[8, 12, 16])
  batch = next(pipeline.make_train_iterator(records, "keypoints", cfg, seed=0, vocab=_Vocab()))
  assert batch["keypoints"].shape[0] == 4 and batch["keypoints"].shape[1] in (8, 12, 16)
  assert batch["keypoints"].shape[2:] == (133, 3)
  np.testing.assert_array_equal(batch["frame_mask"].sum(1), batch["num_frames"])
  batch = next(iter(pipeline.make_eval_batches(records, "gloss_text", _cfg("gloss_text"), vocab=_Vocab())))
  assert set(batch) >= {"labels", "label_lengths", "text", "gloss", "valid"} and "features" not in batch
  np.testing.assert_array_equal(batch["labels"][0], [1, 3, 0, 0])


def _padding_ratio(batches):
  """Padded feature steps per valid step over ``batches`` (features kind)."""
  padded = sum(b["features"]["kp"].shape[0] * b["features"]["kp"].shape[1] for b in batches)
  valid = sum(int(b["feature_lengths"]["kp"].sum()) for b in batches)
  return padded / valid


def test_sortagrad_then_length_grouped_batches_are_permutations_with_less_padding(tmp_path):
  records = _feature_records(48, seed=4)
  length = {r["id"]: len(r["features"]["kp"]) for r in records}
  cfg = _cfg(batch_size=4, buckets=list(range(3, 21)), group_by_length=4, sortagrad_epochs=1)
  it = pipeline.make_train_iterator(records, "features", cfg, seed=2, vocab=_Vocab())
  batches = _take(it, 36)  # 3 epochs of 12 batches
  epochs = [[i for b in batches[k * 12:(k + 1) * 12] for i in b["id"]] for k in range(3)]
  for ids in epochs:
    assert sorted(ids) == sorted(length)  # every epoch is a permutation of the records
  assert [length[i] for i in epochs[0]] == sorted(length[i] for i in epochs[0])  # SortaGrad: shortest first
  assert epochs[1] != epochs[2]
  assert [length[i] for i in epochs[1]] != sorted(length[i] for i in epochs[1])  # later epochs are shuffled
  plain = _take(pipeline.make_train_iterator(records, "features", _cfg(batch_size=4, buckets=list(range(3, 21))),
                                             seed=2, vocab=_Vocab()), 36)
  assert _padding_ratio(batches[12:]) < 0.8 * _padding_ratio(plain[12:])
  # Every batch of a grouped epoch comes from one window of 4 batches sorted by length: within a batch the
  # lengths are consecutive in the window's sorted order, so no record of another batch of the window lies
  # strictly inside a batch's length range.
  for w in range(3):
    window = batches[12 + 4 * w:12 + 4 * (w + 1)]
    ranges = [(min(length[i] for i in b["id"]), max(length[i] for i in b["id"])) for b in window]
    others = [[length[i] for c in window if c is not b for i in c["id"]] for b in window]
    for (lo, hi), rest in zip(ranges, others):
      assert not any(lo < x < hi for x in rest)
  # Resuming from a saved iterator state gives the same stream; the same seed the same order.
  it = pipeline.make_train_iterator(records, "features", cfg, seed=2, vocab=_Vocab())
  _take(it, 17)
  restored = pipeline.make_train_iterator(records, "features", cfg, seed=2, vocab=_Vocab())
  restored.set_state(it.get_state())
  _assert_batches_equal(batches[17:25], _take(restored, 8))
  other = [i for b in _take(pipeline.make_train_iterator(records, "features", cfg, seed=3, vocab=_Vocab()), 24)
           for i in b["id"]]
  assert other[48:] != [i for b in batches[12:24] for i in b["id"]]
  with pytest.raises(ValueError, match="group_by_length"):
    pipeline.make_train_iterator(records, "features", _cfg(group_by_length=-1), seed=0, vocab=_Vocab())


def test_length_grouped_eval_reads_shortest_first_and_covers_every_sample_once():
  records = _feature_records(21, seed=5)
  length = {r["id"]: len(r["features"]["kp"]) for r in records}
  cfg = _cfg(buckets=list(range(3, 21)), group_by_length=8)
  batches = list(pipeline.make_eval_batches(records, "features", cfg, vocab=_Vocab()))
  ids = [i for b in batches for i, v in zip(b["id"], b["valid"]) if v]
  assert sorted(ids) == sorted(length) and len(ids) == 21
  assert [length[i] for i in ids] == sorted(length.values())
  for b in batches:  # each row still carries its own record
    for j, i in enumerate(b["id"]):
      if i:
        np.testing.assert_array_equal(b["features"]["kp"][j, 0], float(int(i[1:])))
  plain = list(pipeline.make_eval_batches(records, "features", _cfg(buckets=list(range(3, 21))), vocab=_Vocab()))
  assert _padding_ratio(batches) < 0.9 * _padding_ratio(plain)
  per_host = [list(pipeline.make_eval_batches(records, "features", cfg, process_index=p, process_count=2,
                                              vocab=_Vocab())) for p in range(2)]
  assert sorted(i for h in per_host for b in h for i, v in zip(b["id"], b["valid"]) if v) == sorted(length)


def test_eval_buckets_pad_eval_batches_and_leave_training_alone():
  records = _feature_records(21, seed=5)
  cfg = _cfg(buckets=[8, 12, 16, 20], eval_buckets=[20], group_by_length=8)
  evals = list(pipeline.make_eval_batches(records, "features", cfg, vocab=_Vocab()))
  assert {b["features"]["kp"].shape[1] for b in evals} == {20}
  default = list(pipeline.make_eval_batches(records, "features", _cfg(buckets=[8, 12, 16, 20], group_by_length=8),
                                            vocab=_Vocab()))
  assert len({b["features"]["kp"].shape[1] for b in default}) > 1
  for a, b in zip(evals, default):  # the same rows and values, only padded further
    assert list(a["id"]) == list(b["id"])
    t = b["features"]["kp"].shape[1]
    np.testing.assert_array_equal(a["features"]["kp"][:, :t], b["features"]["kp"])
  train = pipeline.make_train_iterator(records, "features", cfg, seed=0)
  shapes = {next(train)["features"]["kp"].shape[1] for _ in range(12)}
  assert shapes <= {8, 12, 16, 20} and len(shapes) > 1
