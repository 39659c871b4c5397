"""COCO-WholeBody keypoints (T, 133, 3) in pixels -> normalised coordinates, with optional augmentation.

Coordinates become ``x' = 2 x / W - 1``, ``y' = 2 y / H - 1`` (the frame maps onto [-1, 1]; points outside the
frame fall outside that range), the confidence channel is kept as is. ``W, H`` come from the record's
``frame_size`` ((height, width)) or the config's ``frame_size`` when the record has none.

Training augmentation (clip-level, all optional, config-driven): a random rotation by U[-rotation_degrees,
+rotation_degrees], isotropic scale by U[1-scale, 1+scale] about the frame centre, shift by U[-shift, shift] per axis
(in normalised units), and the SlowFastSign temporal rescale (same rule as the video; its own min/max).
Points with zero confidence are left at their (normalised) position. This is the project's own light keypoint
input (the TwoStream keypoint stream renders heatmaps instead; see docs/DEVIATIONS.md).

Config fields read: ``frame_size`` ((H, W) fallback), ``kp_scale``, ``kp_shift``, ``kp_rotation_degrees``,
``kp_temporal_scale``, ``kp_min_frames``, ``kp_max_frames``, ``length_multiple``, ``kp_augment`` (bool).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from data_pipelines.transforms import cfg_get, temporal_rescale_indices

DEFAULTS = dict(frame_size=None, kp_augment=True, kp_scale=0.1, kp_shift=0.05, kp_rotation_degrees=10.0,
                kp_temporal_scale=0.2, kp_min_frames=32, kp_max_frames=230, length_multiple=4)


def normalize_keypoints(kp: np.ndarray, height: float, width: float) -> np.ndarray:
  """(T, K, 3) pixels -> float32 (T, K, 3) with x, y in [-1, 1] for points inside the frame; confidence kept."""
  out = np.array(kp, dtype=np.float32, copy=True)
  out[..., 0] = out[..., 0] * (2.0 / width) - 1.0
  out[..., 1] = out[..., 1] * (2.0 / height) - 1.0
  return out


class KeypointTransform:
  """Record -> {'keypoints': float32 (T', 133, 3), 'num_frames': T'}."""

  def __init__(self, config: Any = None, train: bool = True):
    g = lambda k: cfg_get(config, k, DEFAULTS[k])
    self.train = train
    self.frame_size = g("frame_size")
    self.augment = bool(g("kp_augment")) and train
    self.scale = float(g("kp_scale"))
    self.shift = float(g("kp_shift"))
    self.rotation = float(g("kp_rotation_degrees"))
    self.temporal_scale = float(g("kp_temporal_scale"))
    self.min_frames = int(g("kp_min_frames"))
    self.max_frames = int(g("kp_max_frames"))
    self.length_multiple = int(g("length_multiple"))

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
    sample_id = record.get("id", "?")
    kp = record.get("keypoints")
    if kp is None:
      raise ValueError(f"sample {sample_id!r} has no 'keypoints' (a keypoint pipeline needs them)")
    kp = np.asarray(kp)
    if kp.ndim != 3 or kp.shape[-1] != 3 or kp.shape[0] == 0:
      raise ValueError(f"sample {sample_id!r}: keypoints must be (T>0, K, 3), got {kp.shape}")
    size = record.get("frame_size") or self.frame_size
    if size is None:
      raise ValueError(f"sample {sample_id!r} has no 'frame_size' and the config sets no frame_size fallback")
    height, width = float(size[0]), float(size[1])
    out = normalize_keypoints(kp, height, width)
    if self.augment:
      if rng is None:
        raise ValueError("keypoint augmentation needs a random generator")
      if self.temporal_scale > 0:
        idx = temporal_rescale_indices(out.shape[0], rng, self.temporal_scale, self.min_frames, self.max_frames,
                                       self.length_multiple)
        out = out[idx]
      angle = np.deg2rad(rng.uniform(-self.rotation, self.rotation))
      s = rng.uniform(1.0 - self.scale, 1.0 + self.scale)
      shift = rng.uniform(-self.shift, self.shift, size=2).astype(np.float32)
      c, si = np.cos(angle) * s, np.sin(angle) * s
      mat = np.array([[c, -si], [si, c]], dtype=np.float32)
      out[..., :2] = out[..., :2] @ mat.T + shift
    return {"keypoints": np.ascontiguousarray(out), "num_frames": int(out.shape[0])}
