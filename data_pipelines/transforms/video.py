"""Video frames: decoding and the SlowFastSign train/eval transforms.

Reimplements SlowFastSign's ``dataset/dataloader_video.py`` + ``utils/video_augmentation.py`` input path
(facts in design/SLOWFASTSIGN.md §1 "Input pipeline"):

* train: ONE random crop position per clip (224 from 256 on real data), clip-level horizontal flip with p=0.5,
  ``TemporalRescale(0.2)``: ``new_len = int(T * U[0.8, 1.2])`` clamped to [32, 230] then rounded up to a multiple of
  4 (cap 232), subsampling without replacement when ``new_len <= T`` else sampling with replacement, sorted;
* eval: centre crop (offset 16 for 224 from 256), no temporal change, deterministic;
* normalisation ``(x/255 - 0.45) / 0.225`` on every channel (PySlowFast/Kinetics statistics).

Kept: the exact crop/flip/rescale rules and statistics. Differences (none changes the distribution): randomness
comes from a per-sample NumPy generator instead of Python's ``random``; the temporal indices are drawn before
decoding so only the selected frames are decoded (crop/flip are per-clip, so order does not matter); frames
stay uint8 (T, h, w, 3) channel-last per sample and are normalised when the batch is built
(``batching.collate``, ``video_normalize='host'``) or on the device (``'device'``, with ``normalize_video``).

Optional, off by default: ``top_crop`` rows removed before resizing (CSL-Daily uses 40 then resizes back to
256x256), ``image_size`` resize after decoding (for synthetic frames of another size).

Config fields read (ConfigDict / dataclass / dict; defaults in ``DEFAULTS``): ``image_size`` ((H, W) or None),
``top_crop``, ``crop_size`` (int or (h, w)), ``flip_prob``, ``temporal_scale``, ``min_frames``, ``max_frames``,
``length_multiple``, ``on_bad_frame`` ('error' | 'skip').
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from data_pipelines.transforms import PipelineStats, cfg_get, temporal_rescale_indices, warn

MEAN = 0.45
STD = 0.225

DEFAULTS = dict(image_size=None, top_crop=0, crop_size=224, flip_prob=0.5, temporal_scale=0.2, min_frames=32,
                max_frames=230, length_multiple=4, on_bad_frame="error")


def normalize_video(x, mean: float = MEAN, std: float = STD):
  """``(x/255 - mean)/std`` in float32; works on NumPy and jax arrays (use on device for uint8 batches)."""
  scale = np.float32(1.0 / (255.0 * std))
  shift = np.float32(mean / std)
  return x.astype(np.float32) * scale - shift


def _pair(v) -> tuple[int, int]:
  if isinstance(v, (int, np.integer)):
    return int(v), int(v)
  v = tuple(int(a) for a in v)
  if len(v) != 2:
    raise ValueError(f"expected an int or an (h, w) pair, got {v}")
  return v


def decode_frame(data: bytes, sample_id: str, index: int, top_crop: int = 0,
                 image_size: tuple[int, int] | None = None) -> np.ndarray:
  """Encoded image bytes -> uint8 (H, W, 3) RGB. Raises ValueError naming the sample id and frame index."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      if img.mode != "RGB":
        img = img.convert("RGB")
      if top_crop:
        img = img.crop((0, top_crop, img.width, img.height))
      if image_size is not None and (img.height, img.width) != tuple(image_size):
        img = img.resize((image_size[1], image_size[0]), Image.BILINEAR)
      return np.asarray(img, dtype=np.uint8)
  except Exception as e:  # PIL raises several types for corrupt data
    raise ValueError(f"sample {sample_id!r}: frame {index} cannot be decoded ({type(e).__name__}: {e})") from e


class VideoTransform:
  """Record -> {'video': uint8 (T', h, w, 3), 'num_frames': T', 'skipped_frames': n} (train or eval rules)."""

  def __init__(self, config: Any = None, train: bool = True, stats: PipelineStats | None = None):
    g = lambda k: cfg_get(config, k, DEFAULTS[k])
    self.train = train
    size = g("image_size")
    self.image_size = None if size is None else _pair(size)
    self.top_crop = int(g("top_crop"))
    self.crop_size = _pair(g("crop_size"))
    self.flip_prob = float(g("flip_prob"))
    self.temporal_scale = float(g("temporal_scale"))
    self.min_frames = int(g("min_frames"))
    self.max_frames = int(g("max_frames"))
    self.length_multiple = int(g("length_multiple"))
    self.on_bad_frame = g("on_bad_frame")
    if self.on_bad_frame not in ("error", "skip"):
      raise ValueError(f"on_bad_frame must be 'error' or 'skip', got {self.on_bad_frame!r}")
    self.stats = stats if stats is not None else PipelineStats()

  def _decode(self, frames: list[bytes], indices: np.ndarray, sample_id: str) -> tuple[np.ndarray, int]:
    """Decodes the (sorted, possibly repeated) ``indices``; each distinct frame is decoded once."""
    unique, inverse = np.unique(indices, return_inverse=True)
    decoded: list[np.ndarray | None] = []
    skipped = 0
    shape = None
    for i in unique:
      try:
        img = decode_frame(frames[i], sample_id, int(i), self.top_crop, self.image_size)
        if shape is not None and img.shape != shape:
          raise ValueError(f"sample {sample_id!r}: frame {int(i)} has shape {img.shape}, frame 0 of the clip "
                           f"{shape}; set image_size to resize")
        shape = img.shape
      except ValueError as e:
        if self.on_bad_frame == "error":
          raise
        warn(self.stats, "bad_frames_skipped", f"skipping a frame: {e}")
        img = None
        skipped += 1
      decoded.append(img)
    keep = [j for j in inverse.reshape(-1) if decoded[j] is not None]
    if not keep:
      raise ValueError(f"sample {sample_id!r}: none of its {len(frames)} frames can be decoded")
    return np.stack([decoded[j] for j in keep]), skipped

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
    sample_id = record.get("id", "?")
    frames = record.get("frames")
    if not frames:
      raise ValueError(f"sample {sample_id!r} has no 'frames' (a video pipeline needs encoded frames)")
    length = len(frames)
    if self.train:
      if rng is None:
        raise ValueError("the train video transform needs a random generator")
      indices = temporal_rescale_indices(length, rng, self.temporal_scale, self.min_frames, self.max_frames,
                                         self.length_multiple)
    else:
      indices = np.arange(length)
    video, skipped = self._decode(frames, indices, sample_id)
    _, height, width, _ = video.shape
    ch, cw = self.crop_size
    if ch > height or cw > width:
      raise ValueError(f"sample {sample_id!r}: crop {self.crop_size} is larger than the frames ({height}, {width})")
    if self.train:
      top = int(rng.integers(0, height - ch + 1))
      left = int(rng.integers(0, width - cw + 1))
      flip = bool(rng.random() < self.flip_prob)
    else:
      top, left, flip = (height - ch) // 2, (width - cw) // 2, False
    video = video[:, top:top + ch, left:left + cw]
    if flip:
      video = video[:, :, ::-1]
    return {"video": np.ascontiguousarray(video), "num_frames": int(video.shape[0]), "skipped_frames": skipped}
