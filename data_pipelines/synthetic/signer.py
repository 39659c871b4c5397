"""Procedural signer of the synthetic corpus: gloss sequence -> COCO-WholeBody 133-point keypoints over time.

No part of SlowFastSign or HyperSign; it stands in for real signing video. It keeps the keypoint layout those
systems consume (COCO-WholeBody, 133 points of (x, y, confidence) in pixels): 0-16 body (COCO-17), 17-22 feet,
23-90 face (the 68-point iBUG layout), 91-111 left hand, 112-132 right hand (wrist + 4 points per finger).
"Left"/"right" are the person's, so the right hand appears on the image's left side.

Motion model. A pose is a small parameter vector (both wrist positions, both hand shapes as five finger curls,
spread and orientation, head offset/tilt, mouth opening, brow raise) in a canonical frame of unit size. Each gloss
owns a deterministic motion drawn from (corpus seed, gloss index): Catmull-Rom splines through 3-4 control points
for each wrist (one- or two-handed, symmetric or not), a start and an end hand shape, a head nod/shake and a
mouthing rhythm. Motions are drawn so that every pair of glosses differs by a minimum trajectory distance. A
sentence concatenates its signs with co-articulation (smooth transitions of a few frames between the end pose of
one sign and the start of the next), optional rest poses at both ends, per-instance jitter of the control points
and durations, and per-signer variation (body scale, position, signing-space size, speed, handedness). Arms
follow the wrists by two-bone inverse kinematics. The keypoints handed out carry Gaussian detector noise with
confidences that drop where the noise is large and, where a preset asks for it (``Timing.arm_miss_rate``), spans in
which the detector loses both arms; the renderer draws the noise-free skeleton.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

NUM_KEYPOINTS = 133
BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)
FACE0, LHAND0, RHAND0 = 23, 91, 112
# COCO-17 body indices.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16
MOUTH_OUTER = slice(FACE0 + 48, FACE0 + 60)
MOUTH_INNER = slice(FACE0 + 60, FACE0 + 68)

# Pose parameter vector layout.
P_RH, P_LH = slice(0, 2), slice(2, 4)
P_RSHAPE, P_LSHAPE = slice(4, 11), slice(11, 18)  # curl x5, spread, orientation (rad)
P_HEAD = slice(18, 21)  # dx, dy, tilt (rad)
P_MOUTH, P_BROW = 21, 22
NUM_PARAMS = 23

# Canonical body (unit frame, y down). The renderer uses the same constants.
HEAD_CENTER = np.array([0.5, 0.19])
HEAD_RADII = np.array([0.075, 0.095])
NECK = np.array([0.5, 0.31])
SHOULDERS = {"right": np.array([0.36, 0.37]), "left": np.array([0.64, 0.37])}
HIPS = {"right": np.array([0.40, 0.97]), "left": np.array([0.60, 0.97])}
UPPER_ARM, FOREARM = 0.22, 0.21
HAND_LENGTH = 0.09
ANCHOR = np.array([0.5, 0.45])  # signer scaling is about this point
REST_WRIST = {"right": np.array([0.41, 0.76]), "left": np.array([0.59, 0.76])}
REST_SHAPE = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.2, np.pi / 2])

_SIGN_SPACE_X = (0.22, 0.62)  # dominant (right) hand
_SIGN_SPACE_Y = (0.28, 0.74)


@dataclasses.dataclass(frozen=True)
class GlossMotion:
  """The deterministic motion of one gloss, in canonical coordinates of a right-handed signer."""
  gloss: str
  right_path: np.ndarray  # (K, 2) wrist control points
  left_path: np.ndarray  # (K, 2)
  right_shapes: np.ndarray  # (2, 7) hand shape at start / end
  left_shapes: np.ndarray  # (2, 7)
  head: np.ndarray  # (4,) nod amplitude, nod cycles, shake amplitude, tilt
  mouth: np.ndarray  # (3,) amplitude, cycles, brow raise
  duration: float  # in [0, 1]: position inside the preset's sign-duration range

  def params(self, u: np.ndarray, right_path: np.ndarray | None = None,
             left_path: np.ndarray | None = None) -> np.ndarray:
    """Pose parameters (len(u), NUM_PARAMS) at sign phases ``u`` in [0, 1]."""
    u = np.asarray(u, np.float64)
    out = np.zeros((len(u), NUM_PARAMS))
    out[:, P_RH] = catmull_rom(self.right_path if right_path is None else right_path, u)
    out[:, P_LH] = catmull_rom(self.left_path if left_path is None else left_path, u)
    s = _smoothstep(u)[:, None]
    out[:, P_RSHAPE] = (1 - s) * self.right_shapes[0] + s * self.right_shapes[1]
    out[:, P_LSHAPE] = (1 - s) * self.left_shapes[0] + s * self.left_shapes[1]
    nod_amp, nod_cycles, shake_amp, tilt = self.head
    env = np.sin(np.pi * u)
    out[:, 18] = shake_amp * np.sin(2 * np.pi * 3 * u)
    out[:, 19] = nod_amp * np.sin(np.pi * nod_cycles * u) * env
    out[:, 20] = tilt * env
    amp, cycles, brow = self.mouth
    out[:, P_MOUTH] = amp * np.abs(np.sin(np.pi * cycles * u))
    out[:, P_BROW] = brow * env
    return out


@dataclasses.dataclass(frozen=True)
class SignerStyle:
  """Per-signer variation; colours are used by the renderer."""
  name: str
  scale: float
  offset: tuple[float, float]
  space: float  # size of the signing space around the body
  speed: float  # >1 signs faster (fewer frames)
  left_handed: bool
  background: tuple[int, int, int]
  shirt: tuple[int, int, int]
  skin: tuple[int, int, int]
  hair: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Timing:
  """Frame counts of a performance (before the signer's speed factor)."""
  sign_frames: tuple[int, int] = (6, 12)
  transition_frames: tuple[int, int] = (2, 4)
  rest_frames: tuple[int, int] = (2, 6)
  rest_probability: float = 0.8
  duration_jitter: float = 0.12
  path_jitter: float = 0.006  # per-instance std of the control points (canonical units)
  noise: float = 0.004  # keypoint detector noise std (canonical units)
  # Spans where the detector loses both arms (elbows, wrists, both hands: x = y = confidence = 0), as pose
  # estimators do under motion blur and occlusion; the frames still show the arms. ``arm_miss_rate`` is the
  # expected fraction of frames inside such a span (0 = never), ``arm_miss_frames`` the span length range.
  arm_miss_rate: float = 0.0
  arm_miss_frames: tuple[int, int] = (6, 14)

  def __post_init__(self):
    lo, hi = self.arm_miss_frames
    if not 0.0 <= self.arm_miss_rate < 1.0 or not 1 <= lo <= hi:
      raise ValueError(f"arm_miss_rate must be in [0, 1) and arm_miss_frames an increasing positive range, got "
                       f"{self.arm_miss_rate} and {self.arm_miss_frames}")


@dataclasses.dataclass(frozen=True)
class Performance:
  keypoints: np.ndarray  # float32 (T, 133, 3): noisy x, y (pixels) and confidence
  clean: np.ndarray  # float32 (T, 133, 2): noise-free x, y (pixels), what the renderer draws
  spans: tuple[tuple[int, int], ...]  # [start, end) frames of each sign


# --- Geometry helpers ------------------------------------------------------------------------------------------


def _smoothstep(u: np.ndarray) -> np.ndarray:
  u = np.clip(u, 0.0, 1.0)
  return u * u * (3 - 2 * u)


def catmull_rom(points: np.ndarray, u: np.ndarray) -> np.ndarray:
  """Uniform Catmull-Rom spline through ``points`` (K, D) at ``u`` in [0, 1] -> (len(u), D)."""
  points = np.asarray(points, np.float64)
  k = len(points)
  if k == 1:
    return np.repeat(points, len(u), axis=0)
  padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
  x = np.clip(u, 0.0, 1.0) * (k - 1)
  seg = np.minimum(np.floor(x).astype(int), k - 2)
  t = (x - seg)[:, None]
  p0, p1, p2, p3 = padded[seg], padded[seg + 1], padded[seg + 2], padded[seg + 3]
  return 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2 +
                (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)


def _rot(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def _dir(angle: np.ndarray) -> np.ndarray:
  return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


# --- Gloss motions ---------------------------------------------------------------------------------------------


def _sample_motion(gloss: str, rng: np.random.Generator) -> GlossMotion:
  k = int(rng.integers(3, 5))
  lo, hi = np.array([_SIGN_SPACE_X[0], _SIGN_SPACE_Y[0]]), np.array([_SIGN_SPACE_X[1], _SIGN_SPACE_Y[1]])
  right = [rng.uniform(lo, hi)]
  while len(right) < k:  # consecutive control points far enough apart for a visible movement
    p = rng.uniform(lo, hi)
    if np.linalg.norm(p - right[-1]) > 0.1:
      right.append(p)
  right = np.array(right)
  mode = rng.choice(3, p=[0.4, 0.3, 0.3])  # one-handed, mirrored two-handed, independent two-handed
  if mode == 0:
    hold = np.array([rng.uniform(0.55, 0.7), rng.uniform(0.6, 0.76)])
    left = np.repeat(hold[None], k, axis=0) + rng.normal(0, 0.01, (k, 2))
  elif mode == 1:
    left = right.copy()
    left[:, 0] = 1.0 - left[:, 0]
    if rng.random() < 0.5:  # alternating rather than parallel
      left = left[::-1].copy()
  else:
    left = rng.uniform([1 - _SIGN_SPACE_X[1], _SIGN_SPACE_Y[0]], [1 - _SIGN_SPACE_X[0], _SIGN_SPACE_Y[1]], (k, 2))

  def shape() -> np.ndarray:
    curls = rng.uniform(0, 1, 5) * (rng.random(5) < 0.6)
    return np.concatenate([curls, [rng.uniform(0, 1), rng.uniform(-0.3, np.pi + 0.3)]])

  right_shapes = np.stack([shape(), shape()]) if rng.random() < 0.5 else np.stack([shape()] * 2)
  left_shapes = np.stack([shape(), shape()])
  if mode == 1:
    left_shapes = right_shapes.copy()
    left_shapes[:, 6] = np.pi - left_shapes[:, 6]
  elif mode == 0:
    left_shapes = np.stack([REST_SHAPE, REST_SHAPE]) + rng.normal(0, 0.05, (2, 7))
  shake = 0.0
  if gloss == "NOT":
    shake = 0.02
  head = np.array([rng.uniform(0, 0.015), rng.integers(1, 3), shake, rng.uniform(-0.12, 0.12)])
  mouth = np.array([rng.uniform(0.2, 1.0), rng.integers(1, 4), rng.uniform(0, 1) * (rng.random() < 0.3)])
  return GlossMotion(gloss, right, left, right_shapes, left_shapes, head, mouth, float(rng.uniform(0, 1)))


def _signature(m: GlossMotion) -> np.ndarray:
  u = np.linspace(0, 1, 8)
  return np.concatenate([catmull_rom(m.right_path, u).ravel(), 0.7 * catmull_rom(m.left_path, u).ravel()])


def motion_bank(lexicon: Sequence[str], seed: int, min_distance: float = 0.5,
                tries: int = 100) -> dict[str, GlossMotion]:
  """Deterministic motions of every gloss in ``lexicon`` (the gloss's index there seeds it).

  Each motion is redrawn (up to ``tries`` times, then the most distant draw is kept) until its trajectory
  signature is at least ``min_distance`` away from all earlier glosses.
  """
  bank: dict[str, GlossMotion] = {}
  sigs: list[np.ndarray] = []
  for index, gloss in enumerate(lexicon):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6C05, index]))
    best, best_d = None, -1.0
    for _ in range(tries):
      m = _sample_motion(gloss, rng)
      s = _signature(m)
      d = min((float(np.linalg.norm(s - o)) for o in sigs), default=np.inf)
      if d > best_d:
        best, best_d = m, d
      if d >= min_distance:
        break
    bank[gloss] = best
    sigs.append(_signature(best))
  return bank


# --- Signers ---------------------------------------------------------------------------------------------------

_BACKGROUNDS = np.array([[196, 206, 214], [210, 200, 180], [180, 200, 190], [200, 190, 205], [190, 196, 176]])
_SHIRTS = np.array([[40, 44, 70], [70, 40, 40], [30, 60, 50], [55, 55, 58], [80, 60, 30], [45, 30, 65]])
_SKINS = np.array([[236, 200, 170], [222, 176, 140], [190, 140, 105], [150, 105, 75], [245, 215, 190]])
_HAIRS = np.array([[40, 30, 20], [90, 60, 30], [20, 20, 20], [150, 120, 70], [110, 100, 95]])


def sample_signer(index: int, seed: int, left_handed_fraction: float = 0.0,
                  variation: float = 1.0) -> SignerStyle:
  """Signer number ``index`` (1-based) of a corpus; ``variation`` scales the geometric differences."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5167, index]))
  v = variation

  def pick(table: np.ndarray) -> tuple[int, int, int]:
    base = table[int(rng.integers(len(table)))].astype(int) + rng.integers(-12, 13, 3)
    return tuple(int(c) for c in np.clip(base, 0, 255))

  return SignerStyle(
      name=f"Signer{index:02d}",
      scale=float(1.0 + v * rng.uniform(-0.1, 0.08)),
      offset=(float(v * rng.uniform(-0.05, 0.05)), float(v * rng.uniform(-0.03, 0.03))),
      space=float(1.0 + v * rng.uniform(-0.1, 0.1)),
      speed=float(1.0 + v * rng.uniform(-0.15, 0.2)),
      left_handed=bool(rng.random() < left_handed_fraction),
      background=pick(_BACKGROUNDS), shirt=pick(_SHIRTS), skin=pick(_SKINS), hair=pick(_HAIRS))


# --- Performance -----------------------------------------------------------------------------------------------


def rest_params() -> np.ndarray:
  p = np.zeros(NUM_PARAMS)
  p[P_RH], p[P_LH] = REST_WRIST["right"], REST_WRIST["left"]
  p[P_RSHAPE] = p[P_LSHAPE] = REST_SHAPE  # fingers pointing down: the same angle for both hands
  return p


def _transition(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
  s = _smoothstep(np.arange(1, n + 1) / (n + 1))[:, None]
  return (1 - s) * a + s * b


def sequence_params(glosses: Sequence[str], bank: dict[str, GlossMotion], style: SignerStyle,
                    timing: Timing, rng: np.random.Generator) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
  """Pose parameters (T, NUM_PARAMS) of a whole sentence and the frame span of each sign."""
  lo, hi = timing.sign_frames
  chunks: list[np.ndarray] = []
  spans: list[tuple[int, int]] = []
  t = 0
  rest = rest_params()

  def frames(n_range: tuple[int, int]) -> int:
    return int(rng.integers(n_range[0], n_range[1] + 1))

  if rng.random() < timing.rest_probability:
    n = frames(timing.rest_frames)
    chunks.append(np.repeat(rest[None], n, axis=0))
    t += n
  prev_end = rest
  for i, gloss in enumerate(glosses):
    if gloss not in bank:
      raise ValueError(f"gloss {gloss!r} has no motion in the bank (vocabulary of {len(bank)} glosses)")
    m = bank[gloss]
    base = lo + m.duration * (hi - lo)
    n = int(round(base / style.speed * (1 + rng.uniform(-timing.duration_jitter, timing.duration_jitter))))
    n = max(n, 3)
    rp = m.right_path + rng.normal(0, timing.path_jitter, m.right_path.shape)
    lp = m.left_path + rng.normal(0, timing.path_jitter, m.left_path.shape)
    sign = m.params(np.linspace(0, 1, n), rp, lp)
    if i > 0 or chunks:
      nt = max(1, int(round(frames(timing.transition_frames) / style.speed)))
      chunks.append(_transition(prev_end, sign[0], nt))
      t += nt
    chunks.append(sign)
    spans.append((t, t + n))
    t += n
    prev_end = sign[-1]
  if rng.random() < timing.rest_probability:
    nt = max(1, int(round(frames(timing.transition_frames) / style.speed)))
    n = frames(timing.rest_frames)
    chunks.append(_transition(prev_end, rest, nt))
    chunks.append(np.repeat(rest[None], n, axis=0))
  return np.concatenate(chunks), tuple(spans)


def _mirror(params: np.ndarray) -> np.ndarray:
  """Left-handed signer: the dominant motion goes to the left hand, mirrored."""
  out = params.copy()
  out[:, P_RH], out[:, P_LH] = params[:, P_LH], params[:, P_RH]
  out[:, P_RSHAPE], out[:, P_LSHAPE] = params[:, P_LSHAPE], params[:, P_RSHAPE]
  out[:, 0] = 1 - out[:, 0]
  out[:, 2] = 1 - out[:, 2]
  out[:, 10] = np.pi - out[:, 10]
  out[:, 17] = np.pi - out[:, 17]
  out[:, 18] = -out[:, 18]
  out[:, 20] = -out[:, 20]
  return out


# Finger geometry: base angle offsets (rad, thumb..pinky) and segment lengths (fraction of the hand length).
_FINGER_BASE = np.array([-1.0, -0.32, -0.05, 0.2, 0.45])
_PALM = np.array([0.22, 0.42, 0.45, 0.42, 0.38])
_SEGMENTS = np.array([[0.2, 0.16, 0.13], [0.24, 0.15, 0.11], [0.27, 0.17, 0.12], [0.25, 0.16, 0.11],
                      [0.19, 0.12, 0.1]])


def hand_points(wrist: np.ndarray, shape: np.ndarray, side: float, length: float) -> np.ndarray:
  """21 hand keypoints (T, 21, 2) from wrist (T, 2) and shape (T, 7); ``side`` +1 right hand, -1 left."""
  T = len(wrist)
  curls, spread, theta = shape[:, :5], shape[:, 5], shape[:, 6]
  pts = np.zeros((T, 21, 2))
  pts[:, 0] = wrist
  for f in range(5):
    angle = theta + side * _FINGER_BASE[f] * (0.7 + 0.8 * spread)
    base = wrist + length * _PALM[f] * _dir(angle)
    pts[:, 1 + 4 * f] = base
    p, a = base, angle.copy()
    bend = side * (-1.0 if f == 0 else 1.0) * 1.1 * curls[:, f]
    for j in range(3):
      a = a + bend
      seg = length * _SEGMENTS[f, j] * (1 - 0.45 * curls[:, f])
      p = p + seg[:, None] * _dir(a)
      pts[:, 2 + 4 * f + j] = p
  return pts


def _elbow(shoulder: np.ndarray, wrist: np.ndarray, upper: float, fore: float,
           outward: float) -> tuple[np.ndarray, np.ndarray]:
  """Two-bone IK; returns (elbow, wrist clamped to the arm's reach)."""
  d_vec = wrist - shoulder
  d = np.linalg.norm(d_vec, axis=-1, keepdims=True)
  reach = 0.985 * (upper + fore)
  d_clamped = np.clip(d, abs(upper - fore) + 1e-3, reach)
  unit = d_vec / np.maximum(d, 1e-9)
  wrist = shoulder + unit * d_clamped
  a = (upper ** 2 - fore ** 2 + d_clamped ** 2) / (2 * d_clamped)
  h = np.sqrt(np.maximum(upper ** 2 - a ** 2, 0.0))
  perp = np.stack([unit[:, 1], -unit[:, 0]], axis=-1) * outward
  return shoulder + a * unit + h * perp, wrist


def _face_template() -> np.ndarray:
  """68 face points in head-local units (multiples of the head radii), mouth closed."""
  pts = np.zeros((68, 2))
  phi = np.linspace(np.pi, 0, 17)
  pts[0:17] = np.stack([0.95 * np.cos(phi), 0.1 + 0.85 * np.sin(phi)], axis=-1)
  bx = np.linspace(-0.72, -0.18, 5)
  pts[17:22] = np.stack([bx, -0.38 - 0.08 * np.sin(np.linspace(0, np.pi, 5))], axis=-1)
  pts[22:27] = np.stack([-bx[::-1], pts[17:22, 1][::-1]], axis=-1)
  pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.25, 0.12, 4)], axis=-1)
  nx = np.linspace(-0.2, 0.2, 5)
  pts[31:36] = np.stack([nx, 0.22 + 0.04 * (1 - np.abs(nx) / 0.2)], axis=-1)
  eye = np.linspace(0, 2 * np.pi, 7)[:-1] + np.pi
  for start, cx in ((36, -0.4), (42, 0.4)):
    pts[start:start + 6] = np.stack([cx + 0.17 * np.cos(eye), -0.15 + 0.06 * np.sin(eye)], axis=-1)
  mo = np.linspace(0, 2 * np.pi, 13)[:-1] + np.pi
  pts[48:60] = np.stack([0.36 * np.cos(mo), 0.52 + 0.07 * np.sin(mo)], axis=-1)
  mi = np.linspace(0, 2 * np.pi, 9)[:-1] + np.pi
  pts[60:68] = np.stack([0.25 * np.cos(mi), 0.52 + 0.02 * np.sin(mi)], axis=-1)
  return pts


_FACE = _face_template()
_LOWER_LIP = np.zeros(68, bool)
_LOWER_LIP[[48 + i for i in range(7, 12)] + [60 + i for i in range(5, 8)]] = True  # below the corners
_UPPER_LIP = np.zeros(68, bool)
_UPPER_LIP[[48 + i for i in range(1, 6)] + [60 + i for i in range(1, 4)]] = True
_BROWS = np.zeros(68, bool)
_BROWS[17:27] = True


def canonical_keypoints(params: np.ndarray) -> np.ndarray:
  """Pose parameters (T, NUM_PARAMS) -> (T, 133, 2) canonical coordinates (unit frame, right-handed layout)."""
  T = len(params)
  kp = np.zeros((T, NUM_KEYPOINTS, 2))
  head_c = HEAD_CENTER + params[:, 18:20]
  tilt = params[:, 20]
  local = np.broadcast_to(_FACE, (T, 68, 2)).copy()
  opening = params[:, P_MOUTH][:, None]
  local[:, _LOWER_LIP, 1] += 0.22 * opening
  local[:, _UPPER_LIP, 1] -= 0.03 * opening
  local[:, _BROWS, 1] -= 0.12 * params[:, P_BROW][:, None]
  face = head_c[:, None] + _rot(local * HEAD_RADII, tilt[:, None])
  kp[:, FACE] = face
  kp[:, NOSE] = face[:, 30]
  kp[:, R_EYE] = face[:, 36:42].mean(1)
  kp[:, L_EYE] = face[:, 42:48].mean(1)
  kp[:, R_EAR] = head_c + _rot(np.array([-1.0, 0.0]) * HEAD_RADII, tilt)
  kp[:, L_EAR] = head_c + _rot(np.array([1.0, 0.0]) * HEAD_RADII, tilt)
  for side, sh, el, wr, hip, knee, ankle, p_hand, p_shape, h0, sgn in (
      ("right", R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_KNEE, R_ANKLE, P_RH, P_RSHAPE, RHAND0, 1.0),
      ("left", L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_KNEE, L_ANKLE, P_LH, P_LSHAPE, LHAND0, -1.0)):
    # The elbow bends away from the body: towards -x for the right arm (image left), +x for the left arm.
    shoulder = np.broadcast_to(SHOULDERS[side], (T, 2))
    elbow, wrist = _elbow(shoulder, params[:, p_hand], UPPER_ARM, FOREARM, -sgn)
    kp[:, sh], kp[:, el], kp[:, wr] = shoulder, elbow, wrist
    kp[:, h0:h0 + 21] = hand_points(wrist, params[:, p_shape], sgn, HAND_LENGTH)
    kp[:, hip] = HIPS[side]
    kp[:, knee] = HIPS[side] + [0.0, 0.45]
    kp[:, ankle] = HIPS[side] + [0.0, 0.9]
  for i, (ankle, dx) in enumerate(((L_ANKLE, 1.0), (R_ANKLE, -1.0))):  # feet: big toe, small toe, heel
    kp[:, 17 + 3 * i] = kp[:, ankle] + [0.02 * dx, 0.06]
    kp[:, 18 + 3 * i] = kp[:, ankle] + [0.06 * dx, 0.05]
    kp[:, 19 + 3 * i] = kp[:, ankle] + [-0.01 * dx, 0.02]
  return kp


def to_pixels(kp: np.ndarray, style: SignerStyle, size: tuple[int, int]) -> np.ndarray:
  """Canonical -> pixel coordinates of a (H, W) frame, with the signer's scale and offset."""
  h, w = size
  p = (kp - ANCHOR) * style.scale + ANCHOR + np.asarray(style.offset)
  return p * np.array([w, h], np.float64)


_ARM_POINTS = np.zeros(NUM_KEYPOINTS, bool)
_ARM_POINTS[[L_ELBOW, R_ELBOW, L_WRIST, R_WRIST]] = True
_ARM_POINTS[LEFT_HAND] = _ARM_POINTS[RIGHT_HAND] = True


def arm_miss_mask(num_frames: int, timing: Timing, rng: np.random.Generator) -> np.ndarray:
  """(T,) bool: frames inside a lost-arms span. A span starts at each frame with probability
  rate / mean span length, so the expected missed fraction is about ``timing.arm_miss_rate``."""
  lo, hi = timing.arm_miss_frames  # checked by Timing
  starts = rng.random(num_frames) < timing.arm_miss_rate / ((lo + hi) / 2)
  lengths = rng.integers(lo, hi + 1, num_frames)
  mask = np.zeros(num_frames, bool)
  for t in np.flatnonzero(starts):
    mask[t:t + lengths[t]] = True
  return mask


def perform(glosses: Sequence[str], bank: dict[str, GlossMotion], style: SignerStyle, timing: Timing,
            size: tuple[int, int], rng: np.random.Generator) -> Performance:
  """Signs ``glosses`` as ``style``: noisy keypoints (T, 133, 3), clean pixel keypoints and sign spans."""
  params, spans = sequence_params(glosses, bank, style, timing, rng)
  # Signing space is scaled about the chest by the signer's space factor.
  chest = np.array([0.5, 0.52])
  params[:, P_RH] = chest + (params[:, P_RH] - chest) * style.space
  params[:, P_LH] = chest + (params[:, P_LH] - chest) * style.space
  if style.left_handed:
    params = _mirror(params)
  clean = to_pixels(canonical_keypoints(params), style, size)
  h, w = size
  T = len(clean)
  visible = np.ones(NUM_KEYPOINTS, bool)
  visible[[L_KNEE, R_KNEE, L_ANKLE, R_ANKLE]] = False
  visible[FEET] = False
  group_sigma = np.ones(NUM_KEYPOINTS)
  group_sigma[FACE] = 0.6
  group_sigma[LEFT_HAND] = group_sigma[RIGHT_HAND] = 1.5
  base_conf = np.full(NUM_KEYPOINTS, 0.95)
  base_conf[FACE] = 0.9
  base_conf[LEFT_HAND] = base_conf[RIGHT_HAND] = 0.85
  sigma_px = timing.noise * min(h, w) * group_sigma
  err = rng.normal(0.0, 1.0, (T, NUM_KEYPOINTS, 2)) * sigma_px[None, :, None]
  # Rare detector failures on hand points: a large displacement with a low confidence.
  fail = rng.random((T, NUM_KEYPOINTS)) < 0.004
  fail[:, :91] = False
  err += fail[..., None] * rng.normal(0.0, 0.05 * min(h, w), (T, NUM_KEYPOINTS, 2))
  ref = 3.0 * np.maximum(sigma_px, 1e-6)
  conf = base_conf * np.exp(-0.5 * (np.linalg.norm(err, axis=-1) / ref) ** 2)
  conf = np.where(visible, conf, 0.0)
  noisy = clean + err
  limits = np.array([w - 1, h - 1], np.float64)
  noisy = np.clip(noisy, 0.0, limits)
  kp = np.concatenate([noisy, conf[..., None]], axis=-1).astype(np.float32)
  if timing.arm_miss_rate > 0:  # drawn last: every other draw (and so the frames) is the same with or without
    kp[arm_miss_mask(T, timing, rng)[:, None] & _ARM_POINTS[None, :]] = 0.0
  return Performance(keypoints=kp, clean=np.clip(clean, 0.0, limits).astype(np.float32), spans=spans)
