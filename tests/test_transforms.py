"""Per-sample transforms: SlowFastSign video augmentation/eval rules, keypoint normalisation, gloss ids."""
import io

import numpy as np
from PIL import Image
import pytest

from data_pipelines import batching
from data_pipelines.transforms import PipelineStats, rescaled_length, temporal_rescale_indices
from data_pipelines.transforms import keypoints as kp_lib
from data_pipelines.transforms import text as text_lib
from data_pipelines.transforms import video as video_lib


def _png(arr):
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="PNG")
  return buf.getvalue()


def _coded_clip(num_frames, size=64):
  """Frames whose pixels say where they came from: R = column, G = row, B = frame index (PNG is lossless)."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  frames = []
  for t in range(num_frames):
    img = np.stack([cols, rows, np.full_like(rows, t)], axis=-1).astype(np.uint8)
    frames.append(_png(img))
  return {"id": "clip0", "frames": frames}


def _cfg(**kw):
  cfg = dict(crop_size=56, min_frames=8, max_frames=40)
  cfg.update(kw)
  return cfg


def test_train_crop_is_one_position_per_clip_and_flip_is_clip_level():
  record = _coded_clip(12)
  transform = video_lib.VideoTransform(_cfg(), train=True)
  flips, offsets = set(), set()
  for seed in range(16):
    out = transform(record, np.random.default_rng(seed))["video"]
    assert out.shape[1:] == (56, 56, 3) and out.dtype == np.uint8
    cols, rows = out[..., 0].astype(int), out[..., 1].astype(int)
    # Same crop window on every frame (clip-level).
    assert (cols == cols[:1]).all() and (rows == rows[:1]).all()
    top = rows[0, 0, 0]
    assert (rows[0, :, 0] == top + np.arange(56)).all()
    flipped = cols[0, 0, 0] > cols[0, 0, -1]
    left = cols[0, 0, -1] if flipped else cols[0, 0, 0]
    assert (cols[0, 0] == (left + np.arange(56))[::-1 if flipped else 1]).all()
    assert 0 <= top <= 8 and 0 <= left <= 8
    flips.add(bool(flipped))
    offsets.add((int(top), int(left)))
  assert flips == {True, False}
  assert len(offsets) > 4


def test_temporal_rescale_lengths_multiple_of_4_and_order_kept():
  record = _coded_clip(20)
  transform = video_lib.VideoTransform(_cfg(min_frames=8, max_frames=40), train=True)
  saw_up = saw_down = False
  for seed in range(12):
    out = transform(record, np.random.default_rng(seed))
    src = out["video"][:, 0, 0, 2].astype(int)  # source frame index of each output frame
    assert out["num_frames"] == len(src) and len(src) % 4 == 0 and 16 <= len(src) <= 24
    assert (np.diff(src) >= 0).all()  # sorted
    if len(src) <= 20:
      assert len(set(src)) == len(src)  # subsampled without replacement
      saw_down = True
    else:
      assert len(set(src)) < len(src)  # more frames than the clip has: repeats
      saw_up = True
  assert saw_up and saw_down


def test_rescaled_length_clamps_and_caps_at_232():
  rngs = [np.random.default_rng(s) for s in range(50)]
  assert {rescaled_length(400, r, 0.2, 32, 230, 4) for r in rngs} == {232}
  assert {rescaled_length(10, r, 0.2, 32, 230, 4) for r in rngs} == {32}
  lengths = {rescaled_length(100, np.random.default_rng(s), 0.2, 32, 230, 4) for s in range(200)}
  assert all(n % 4 == 0 and 80 <= n <= 120 for n in lengths) and len(lengths) > 5
  # Upsampling: sampled with replacement, sorted.
  idx = temporal_rescale_indices(10, np.random.default_rng(0), 0.2, 32, 230, 4)
  assert len(idx) == 32 and (np.diff(idx) >= 0).all() and idx.max() < 10


def test_normalisation_values():
  x = np.array([0, 255, 115], dtype=np.uint8)
  np.testing.assert_allclose(video_lib.normalize_video(x), [-0.45 / 0.225, 0.55 / 0.225, (115 / 255 - 0.45) / 0.225],
                             rtol=1e-6, atol=1e-6)


def test_eval_centre_crop_deterministic_and_real_offset_16():
  record = _coded_clip(5)
  transform = video_lib.VideoTransform(_cfg(), train=False)
  a, b = transform(record)["video"], transform(record)["video"]
  np.testing.assert_array_equal(a, b)
  assert a.shape == (5, 56, 56, 3)
  assert a[0, 0, 0, 0] == 4 and a[0, 0, 0, 1] == 4  # (64 - 56) / 2
  assert (a[:, 0, 0, 2] == np.arange(5)).all()  # no temporal change
  big = {"id": "big", "frames": [_png(np.stack(list(np.meshgrid(np.arange(256), np.arange(256), indexing="xy"))
                                               + [np.zeros((256, 256), int)], -1).astype(np.uint8))]}
  out = video_lib.VideoTransform({"crop_size": 224}, train=False)(big)["video"]
  assert out.shape == (1, 224, 224, 3) and out[0, 0, 0, 0] == 16 and out[0, 0, 0, 1] == 16


def test_resize_to_configured_image_size_first():
  record = _coded_clip(2, size=64)
  out = video_lib.VideoTransform(_cfg(image_size=(32, 32), crop_size=28), train=False)(record)["video"]
  assert out.shape == (2, 28, 28, 3)


def test_slowfast_padding_layout_and_lengths():
  rng = np.random.default_rng(0)
  clips = [rng.integers(0, 255, (t, 4, 4, 3), dtype=np.uint8) for t in (5, 9)]
  samples = [{"id": f"s{i}", "video": c, "num_frames": len(c)} for i, c in enumerate(clips)]
  collate = batching.Collator("video", {"buckets": [8, 12, 16], "video_normalize": "device"})
  batch = collate(samples)
  video = batch["video"]
  assert video.shape == (2, 12 + 12, 4, 4, 3) and video.dtype == np.uint8  # bucket 12 -> P = 4*3 + 12
  for i, c in enumerate(clips):
    t = len(c)
    assert (video[i, :6] == c[0]).all()
    np.testing.assert_array_equal(video[i, 6:6 + t], c)
    assert (video[i, 6 + t:] == c[-1]).all()
    assert batch["video_length"][i] == 4 * -(-t // 4) + 12
    assert batch["feat_length"][i] == -(-t // 4)
    np.testing.assert_array_equal(batch["frame_mask"][i], (np.arange(24) >= 6) & (np.arange(24) < 6 + t))
    np.testing.assert_array_equal(batch["feat_mask"][i], np.arange(3) < -(-t // 4))
  assert list(batch["num_frames"]) == [5, 9] and list(batch["video_length"]) == [20, 24]
  host = batching.Collator("video", {"buckets": [8, 12, 16]})(samples)["video"]
  assert host.dtype == np.float32
  np.testing.assert_allclose(host, video_lib.normalize_video(video), rtol=1e-6)


def test_bad_frame_error_names_sample_and_index_and_skip_mode_counts():
  record = _coded_clip(6)
  record["frames"][3] = b"not an image"
  with pytest.raises(ValueError, match=r"'clip0'.*frame 3"):
    video_lib.VideoTransform(_cfg(), train=False)(record)
  stats = PipelineStats()
  out = video_lib.VideoTransform(_cfg(on_bad_frame="skip"), train=False, stats=stats)(record)
  assert out["num_frames"] == 5 and out["skipped_frames"] == 1 and stats.bad_frames_skipped == 1
  assert list(out["video"][:, 0, 0, 2]) == [0, 1, 2, 4, 5]


def test_keypoint_normalisation_ranges_and_augmentation():
  rng = np.random.default_rng(0)
  h, w = 48, 80
  kp = np.stack([rng.uniform(0, w, (7, 133)), rng.uniform(0, h, (7, 133)), rng.uniform(0, 1, (7, 133))], -1)
  kp[0, 0, :2] = (0, 0)
  kp[0, 1, :2] = (w, h)
  record = {"id": "k", "keypoints": kp.astype(np.float32), "frame_size": (h, w)}
  out = kp_lib.KeypointTransform({}, train=False)(record)["keypoints"]
  assert out.dtype == np.float32 and out.shape == (7, 133, 3)
  assert out[..., :2].min() >= -1 and out[..., :2].max() <= 1
  np.testing.assert_allclose(out[0, 0, :2], [-1, -1]) and np.testing.assert_allclose(out[0, 1, :2], [1, 1])
  np.testing.assert_allclose(out[..., 0], kp[..., 0] / w * 2 - 1, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out[..., 2], kp[..., 2].astype(np.float32))
  aug = kp_lib.KeypointTransform({"kp_min_frames": 4, "kp_max_frames": 16}, train=True)
  res = aug(record, np.random.default_rng(1))
  assert res["num_frames"] % 4 == 0 and 4 <= res["num_frames"] <= 12
  assert np.abs(res["keypoints"][..., :2]).max() < 1.5  # small scale/shift/rotation
  res2 = aug(record, np.random.default_rng(1))
  np.testing.assert_array_equal(res["keypoints"], res2["keypoints"])
  off = kp_lib.KeypointTransform({"kp_scale": 0.0, "kp_shift": 0.0, "kp_rotation_degrees": 0.0,
                                  "kp_temporal_scale": 0.0}, train=True)(record, np.random.default_rng(2))
  np.testing.assert_allclose(off["keypoints"], out, atol=1e-6)
  with pytest.raises(ValueError, match="'k'.*frame_size"):
    kp_lib.KeypointTransform({}, train=False)({"id": "k", "keypoints": kp})


class _Vocab:
  def __init__(self, glosses):
    self.index = {g: i + 1 for i, g in enumerate(glosses)}

  def encode(self, s):
    return [self.index[g] for g in s.split()]


def test_gloss_ids_and_unknown_gloss_names_sample():
  t = text_lib.TextTransform(_Vocab(["A", "B"]))
  out = t({"id": "u1", "gloss": "B A B", "text": "hallo"})
  assert list(out["labels"]) == [2, 1, 2] and out["text"] == "hallo" and out["gloss"] == "B A B"
  with pytest.raises(ValueError, match="'u2'"):
    t({"id": "u2", "gloss": "A ZZZ"})
