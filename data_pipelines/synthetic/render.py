"""Renderer of the synthetic corpus: pixel keypoints -> RGB frames (pure NumPy) -> PNG bytes (Pillow).

No part of SlowFastSign or HyperSign; it produces the video those systems read. A frame shows a plain background,
the torso (filled quadrilateral), neck, head (ellipse with a hair cap), eyes, brows, mouth (an ellipse that opens
with the mouth keypoints), sleeves (thick shoulder-elbow-wrist lines) and both hands (a palm disc and one thin
line per finger bone). All frames of a clip are drawn at once: thick lines are stamped as discs at points sampled
along each segment with fancy indexing into the (T, H, W, 3) canvas, large shapes are evaluated on a pixel grid
cropped to their bounding box. Pixel (row i, column j) covers [j, j+1) x [i, i+1) in keypoint coordinates.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from data_pipelines.synthetic import signer as sg

_FINGER_BONES = np.array([(0, 1), (1, 2), (2, 3), (3, 4)] +
                         [(b, b + 1) for f in range(1, 5) for b in (4 * f + 1, 4 * f + 2, 4 * f + 3)] +
                         [(0, 4 * f + 1) for f in range(1, 5)])
_MOUTH_COLOUR = (120, 30, 40)
_EYE_COLOUR = (25, 25, 30)


def _offsets(radius: float) -> np.ndarray:
  """Integer (dy, dx) offsets whose pixel centre can lie within ``radius`` of a point in the base pixel."""
  r = int(np.ceil(radius + 0.5))
  g = np.arange(-r, r + 1)
  yy, xx = np.meshgrid(g, g, indexing="ij")
  keep = yy ** 2 + xx ** 2 <= (radius + 0.71) ** 2
  return np.stack([yy[keep], xx[keep]], axis=-1)


def _stamp(canvas: np.ndarray, pad: int, t: np.ndarray, pts: np.ndarray, radius: float, colour) -> None:
  """Paints discs of ``radius`` pixels at points ``pts`` (N, 2: x, y) of frames ``t`` (N,).

  ``canvas`` is the frame padded by ``pad`` pixels on every side (more than any stamp radius) and the points lie
  inside the frame, so no stamp leaves the buffer and no bounds test is needed.
  """
  T, Hp, Wp, _ = canvas.shape
  radius = max(float(radius), 0.5)
  offs = _offsets(radius)
  base = np.floor(pts).astype(np.int32)
  frac = (pts - base - 0.5).astype(np.float32)  # point relative to the base pixel centre
  dy = offs[None, :, 0].astype(np.float32) - frac[:, 1:2]
  dx = offs[None, :, 1].astype(np.float32) - frac[:, 0:1]
  keep = dx * dx + dy * dy <= np.float32(radius * radius)
  start = (t.astype(np.int64) * Hp + base[:, 1] + pad) * Wp + base[:, 0] + pad
  flat = start[:, None] + (offs[:, 0] * Wp + offs[:, 1])[None, :]
  canvas.reshape(-1, 3)[flat[keep]] = colour


def _segments(canvas: np.ndarray, pad: int, p0: np.ndarray, p1: np.ndarray, radius: float, colour) -> None:
  """Thick lines from ``p0`` to ``p1`` (T, S, 2) in every frame."""
  T, S, _ = p0.shape
  radius = max(float(radius), 0.5)
  length = float(np.max(np.linalg.norm(p1 - p0, axis=-1), initial=0.0))
  n = int(np.ceil(length / max(0.5, 0.7 * radius))) + 1
  s = np.linspace(0.0, 1.0, n)[None, None, :, None]
  pts = p0[:, :, None] + (p1 - p0)[:, :, None] * s  # (T, S, n, 2)
  t = np.broadcast_to(np.arange(T)[:, None, None], pts.shape[:3])
  _stamp(canvas, pad, t.reshape(-1), pts.reshape(-1, 2), radius, colour)


def _ellipses(canvas: np.ndarray, centre: np.ndarray, radii: np.ndarray, colour, hair=None) -> None:
  """Filled axis-aligned ellipses, one per frame (centre, radii: (T, 2)); ``hair`` colours the top cap."""
  T, H, W, _ = canvas.shape
  lo = np.floor(np.min(centre - radii, axis=0)).astype(int) - 1
  hi = np.ceil(np.max(centre + radii, axis=0)).astype(int) + 2
  x0, y0 = max(lo[0], 0), max(lo[1], 0)
  x1, y1 = min(hi[0], W), min(hi[1], H)
  if x0 >= x1 or y0 >= y1:
    return
  xs = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, None, :]
  ys = (np.arange(y0, y1, dtype=np.float32) + 0.5)[None, :, None]
  cx, cy = centre[:, 0, None, None], centre[:, 1, None, None]
  rx, ry = np.maximum(radii[:, 0, None, None], 0.5), np.maximum(radii[:, 1, None, None], 0.5)
  inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
  region = canvas[:, y0:y1, x0:x1]
  region[inside] = colour
  if hair is not None:
    region[inside & (ys < cy - 0.45 * ry)] = hair


def _torso_mask(kp: np.ndarray, H: int, W: int) -> np.ndarray:
  """Convex quadrilateral right shoulder -> left shoulder -> left hip -> right hip of one frame."""
  widen = 0.04 * W
  quad = np.stack([kp[sg.R_SHOULDER] - [widen, 0], kp[sg.L_SHOULDER] + [widen, 0],
                   kp[sg.L_HIP] + [widen * 0.5, 0], kp[sg.R_HIP] - [widen * 0.5, 0]])
  ys, xs = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
  inside = np.ones((H, W), bool)
  for k in range(4):
    a, b = quad[k], quad[(k + 1) % 4]
    cross = (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])
    inside &= cross >= 0
  return inside


def render_clip(clean: np.ndarray, style: sg.SignerStyle, size: tuple[int, int]) -> np.ndarray:
  """Clean pixel keypoints (T, 133, 2) -> uint8 frames (T, H, W, 3).

  The torso is drawn from the first frame's shoulders and hips (the signer model keeps them still).
  """
  clean = np.asarray(clean, np.float64)
  if clean.ndim != 3 or clean.shape[1:] != (sg.NUM_KEYPOINTS, 2):
    raise ValueError(f"render_clip expects clean keypoints (T, 133, 2), got {clean.shape}")
  H, W = size
  T = len(clean)
  clean = np.clip(clean, 0.0, [W - 1e-3, H - 1e-3])
  unit = style.scale * min(H, W)  # one canonical unit in pixels
  pad = int(np.ceil(0.04 * unit)) + 3
  padded = np.empty((T, H + 2 * pad, W + 2 * pad, 3), np.uint8)
  canvas = padded[:, pad:pad + H, pad:pad + W]  # a view: the frame itself
  canvas[:] = style.background
  canvas[:, _torso_mask(clean[0], H, W)] = style.shirt
  sleeve = tuple(int(min(255, c * 1.5 + 25)) for c in style.shirt)
  head_c = 0.5 * (clean[:, sg.L_EAR] + clean[:, sg.R_EAR])
  neck = np.broadcast_to(sg.NECK, (T, 2))
  neck = (neck - sg.ANCHOR) * style.scale + sg.ANCHOR + np.asarray(style.offset)
  neck = neck * [W, H]
  _segments(padded, pad, neck[:, None], head_c[:, None], 0.035 * unit, style.skin)
  _ellipses(canvas, head_c, np.broadcast_to(sg.HEAD_RADII * unit, (T, 2)), style.skin, hair=style.hair)
  eyes = clean[:, [sg.L_EYE, sg.R_EYE]].reshape(-1, 2)
  _stamp(padded, pad, np.repeat(np.arange(T), 2), eyes, 0.012 * unit, _EYE_COLOUR)
  brows = clean[:, sg.FACE0 + 17:sg.FACE0 + 27]
  _segments(padded, pad, brows[:, [0, 2, 5, 7]], brows[:, [2, 4, 7, 9]], 0.008 * unit, style.hair)
  outer = clean[:, sg.MOUTH_OUTER]
  mouth_c = outer.mean(1)
  half_w = 0.5 * np.linalg.norm(outer[:, 6] - outer[:, 0], axis=-1)
  half_h = 0.5 * (outer[:, :, 1].max(1) - outer[:, :, 1].min(1))
  _ellipses(canvas, mouth_c, np.stack([half_w, half_h], axis=-1), _MOUTH_COLOUR)
  arm = 0.032 * unit
  for sh, el, wr in ((sg.R_SHOULDER, sg.R_ELBOW, sg.R_WRIST), (sg.L_SHOULDER, sg.L_ELBOW, sg.L_WRIST)):
    _segments(padded, pad, clean[:, [sh, el]], clean[:, [el, wr]], arm, sleeve)
  palm_r = 0.022 * unit
  finger_r = 0.009 * unit
  for h0 in (sg.LHAND0, sg.RHAND0):
    hand = clean[:, h0:h0 + 21]
    palm = hand[:, [0, 5, 9, 13, 17]].mean(1)
    _stamp(padded, pad, np.arange(T), palm, palm_r, style.skin)
    _segments(padded, pad, hand[:, _FINGER_BONES[:, 0]], hand[:, _FINGER_BONES[:, 1]], finger_r, style.skin)
  return np.ascontiguousarray(canvas)


def encode_png(frame: np.ndarray, compress_level: int = 1) -> bytes:
  """uint8 (H, W, 3) -> PNG bytes (deterministic: no timestamps or text chunks are written)."""
  if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
    raise ValueError(f"encode_png expects uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
  buf = io.BytesIO()
  Image.fromarray(frame, "RGB").save(buf, format="PNG", compress_level=compress_level)
  return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
  """PNG bytes -> uint8 (H, W, 3)."""
  with Image.open(io.BytesIO(data)) as img:
    return np.asarray(img.convert("RGB"))
