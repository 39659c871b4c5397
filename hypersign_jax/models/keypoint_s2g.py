"""Keypoint sign-to-gloss (S2G) encoder: COCO-WholeBody coordinates -> per-step features and gloss logits (CTC).

Design choice (issue #8, part 2). TwoStream-SLR's keypoint stream renders 79 selected keypoints per frame as
Gaussian heatmaps (112 x 112, sigma 8) and runs them through an S3D (in_channel 79, blocks 1-4, 832 channels;
design/HYPERSIGN.md §1.1). This module is the lighter alternative the issue allows: it reads the same 79 points
as *coordinates* and encodes them with

  per-frame normalisation -> per-frame MLP -> TemporalConv K5-P2-K5-P2 -> masked BiLSTM -> NormLinear

i.e. SlowFastSign's temporal part (``temporal_conv.py``, ``layers.py``) on top of a coordinate embedding instead of
a SlowFast backbone. Why: the heatmap S3D costs a 3-D CNN over 79 x 112 x 112 x T inputs per clip (the same order
of compute as the RGB stream), which is out of reach of the CPU budget of the synthetic corpus and would make the
keypoint stream as slow to train as the RGB one; coordinates carry the same information (the heatmaps are rendered
from them) in 79 x 3 numbers per frame, and a per-frame MLP learns the spatial relations the S3D's first blocks
learn from the rendered images. What is lost: the S3D's Kinetics/WLASL initialisation and its spatial
convolutions' tolerance to jittery detections (a Gaussian blob is smoother than a coordinate); keypoint detector
noise reaches the MLP directly (the confidence channel and the threshold below mitigate this). How it compares on
the synthetic corpus: see the notes of issue #8 (the RGB tiny SlowFast and this encoder trained on the same demo
corpus; the keypoint stream reaches a low dev WER in minutes on CPU, the RGB one does not).

Output rate and lengths: the model consumes keypoints in SlowFastSign's padded layout (``kp_padding='slowfast'``:
6 copies of the first frame, the T frames, copies of the last; ``video_length = 4 ceil(T/4) + 12``), so the
TemporalConv gives exactly ``ceil(T/4)`` valid steps, the same T' as the RGB SlowFastSign model on the same clip.
HyperSign's S2T stage needs both streams of a sample to have the same length; this makes them equal by
construction (the extraction asserts it when streams are merged).

Input handling (``normalise``):

* selection: the 79 TwoStream points, in TwoStream's order (part names sorted: face_others_1_3, hand,
  mouth_half, pose): face contour/brows/nose/eyes 23-70 every 3rd (16), both hands 91-132 (42), the outer/inner
  mouth 71-89 every 2nd (10), body 0-10 (nose, eyes, ears, shoulders, elbows, wrists: 11);
* the data pipeline has already mapped pixels to [-1, 1] of the frame (``transforms/keypoints.py``);
* per frame the points are centred on the shoulder midpoint (COCO 5, 6) and divided by the shoulder width,
  which removes the signer's position and distance to the camera (``norm='frame'``; ``'clip'`` uses the clip's
  mean centre/width, ``'none'`` keeps frame coordinates). Frames whose shoulders are not both confident use the
  clip mean; a clip with no such frame is left unnormalised (centre 0, width 1);
* points with confidence below ``conf_threshold`` get coordinates 0 (the detector's guess for an invisible point
  is noise); the confidence itself is an input channel;
* each hand is also given in hand-local coordinates (relative to its wrist, 91 / 112, same scale), which makes
  hand shape visible independently of hand position.

Per frame that is 79 x 2 + 79 + 42 x 2 = 321 inputs -> ``Linear -> LayerNorm -> ReLU -> Dropout -> Linear ->
LayerNorm -> ReLU`` (``embed_size``). The rest is SlowFastSign's main path: the classifier is shared between the
conv features and the BiLSTM output (``share_classifier``), so the CSLR task's loss (SeqCTC + ConvCTC + SeqKD) and
decoding apply unchanged (``tasks/keypoint_s2g.py``).

Outputs: ``__call__`` returns the CSLR model's dictionary with the single path ``'main'``;
``sequence_features(keypoints, lengths)`` returns the BiLSTM output (B, T', hidden) and its lengths: the
representation the classifier sees, which ``--mode extract`` writes as the stream's features.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hypersign_jax.models import layers
from hypersign_jax.models import temporal_conv as tconv

# TwoStream-SLR's 79 COCO-WholeBody points, concatenated in the sorted order of its part names.
FACE_OTHERS = tuple(range(23, 71, 3))     # 16
HANDS = tuple(range(91, 133))             # 42: left 91-111, right 112-132
MOUTH_HALF = tuple(range(71, 91, 2))      # 10
POSE = tuple(range(0, 11))                # 11
TWOSTREAM_79 = FACE_OTHERS + HANDS + MOUTH_HALF + POSE
L_SHOULDER, R_SHOULDER = 5, 6
LEFT_HAND, RIGHT_HAND = tuple(range(91, 112)), tuple(range(112, 133))
NORMS = ("frame", "clip", "none")


@dataclasses.dataclass(frozen=True)
class KeypointS2GConfig:
  """Keypoint S2G model; widths of the temporal part as SlowFastSign's (``cslr.SlowFastSignConfig``)."""
  num_classes: int
  points: tuple[int, ...] = TWOSTREAM_79
  embed_size: int = 256                     # per-frame MLP width (the TemporalConv input)
  embed_dropout: float = 0.1
  hidden_size: int = 1024                   # TemporalConv width = BiLSTM output width
  conv_spec: tuple[str, ...] = tconv.DEFAULT_SPEC
  lstm_layers: int = 2
  lstm_dropout: float = 0.3
  share_classifier: bool = True
  norm: str = "frame"                       # 'frame' | 'clip' | 'none' (see the module docstring)
  conf_threshold: float = 0.3
  hand_local: bool = True
  dtype: Any = jnp.float32

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"keypoint norm {self.norm!r}: expected one of {NORMS}")
    if any(not 0 <= p < 133 for p in self.points):
      raise ValueError("keypoint indices must be COCO-WholeBody indices in [0, 133)")
    missing = [p for p in (L_SHOULDER, R_SHOULDER) if p not in self.points]
    if self.norm != "none" and missing:
      raise ValueError(f"norm={self.norm!r} needs the shoulders (COCO {missing}) among the selected points")

  @property
  def input_size(self) -> int:
    hand_points = sum(1 for p in self.points if p in HANDS) if self.hand_local else 0
    return 3 * len(self.points) + 2 * hand_points


def _masked_mean(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean of x (B, T, ...) over the steps where mask (B, T) holds, and whether any did."""
  w = mask.astype(jnp.float32).reshape(mask.shape + (1,) * (x.ndim - 2))
  n = jnp.sum(w, axis=1)
  return jnp.sum(x * w, axis=1) / jnp.maximum(n, 1.0), n > 0


def normalise(keypoints: jax.Array, lengths: jax.Array, cfg: KeypointS2GConfig) -> jax.Array:
  """(B, T, 133, 3) frame-normalised keypoints, (B,) lengths -> (B, T, input_size) per-frame inputs (float32)."""
  kp = keypoints.astype(jnp.float32)
  sel = jnp.asarray(cfg.points)
  pts = kp[:, :, sel]                                     # (B, T, K, 3)
  xy, conf = pts[..., :2], pts[..., 2]
  b, t = kp.shape[:2]
  if cfg.norm != "none":
    ls, rs = kp[:, :, L_SHOULDER], kp[:, :, R_SHOULDER]
    centre = 0.5 * (ls[..., :2] + rs[..., :2])            # (B, T, 2)
    width = jnp.linalg.norm(ls[..., :2] - rs[..., :2], axis=-1)
    in_clip = jnp.arange(t)[None, :] < lengths[:, None]
    ok = (ls[..., 2] >= cfg.conf_threshold) & (rs[..., 2] >= cfg.conf_threshold) & (width > 1e-3) & in_clip
    clip_centre, any_ok = _masked_mean(centre, ok)
    clip_width, _ = _masked_mean(width[..., None], ok)
    clip_centre = jnp.where(any_ok, clip_centre, 0.0)
    clip_width = jnp.where(any_ok, clip_width, 1.0)
    if cfg.norm == "frame":
      centre = jnp.where(ok[..., None], centre, clip_centre[:, None])
      width = jnp.where(ok, width, clip_width[:, None, 0])
    else:
      centre = jnp.broadcast_to(clip_centre[:, None], (b, t, 2))
      width = jnp.broadcast_to(clip_width[:, None, 0], (b, t))
    xy = (xy - centre[:, :, None]) / width[:, :, None, None]
  visible = (conf >= cfg.conf_threshold)[..., None]
  xy = jnp.where(visible, xy, 0.0)
  parts = [xy.reshape(b, t, -1), conf]
  if cfg.hand_local:
    for hand in (LEFT_HAND, RIGHT_HAND):
      idx = [cfg.points.index(p) for p in hand if p in cfg.points]
      if not idx:
        continue
      wrist = hand[0]
      hxy = xy[:, :, jnp.asarray(idx)]
      hvis = visible[:, :, jnp.asarray(idx)]
      if wrist in cfg.points:
        w_i = cfg.points.index(wrist)
        hxy = hxy - xy[:, :, w_i:w_i + 1]
        hvis = hvis & visible[:, :, w_i:w_i + 1]
      parts.append(jnp.where(hvis, hxy, 0.0).reshape(b, t, -1))
  return jnp.concatenate(parts, axis=-1)


class FrameMLP(nnx.Module):
  """Per-frame embedding: Linear -> LayerNorm -> ReLU -> Dropout -> Linear -> LayerNorm -> ReLU."""

  def __init__(self, in_features: int, width: int, dropout: float, *, dtype: Any, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(in_features, width, dtype=dtype, rngs=rngs)
    self.ln1 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
    self.ln2 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.dropout(nnx.relu(self.ln1(self.fc1(x))))
    return nnx.relu(self.ln2(self.fc2(x)))


class KeypointS2G(nnx.Module):
  """Keypoints -> per-frame MLP -> TemporalConv -> BiLSTM -> NormLinear (see the module docstring)."""

  branch_names = ("main",)

  def __init__(self, cfg: KeypointS2GConfig, *, rngs: nnx.Rngs):
    self.config = cfg
    self.embed = FrameMLP(cfg.input_size, cfg.embed_size, cfg.embed_dropout, dtype=cfg.dtype, rngs=rngs)
    self.main_temporal_conv = tconv.TemporalConv(cfg.embed_size, cfg.hidden_size, cfg.conv_spec, dtype=cfg.dtype,
                                                 rngs=rngs)
    self.temporal_model = layers.MaskedBiLSTM(cfg.hidden_size, cfg.hidden_size, cfg.lstm_layers, cfg.lstm_dropout,
                                              dtype=cfg.dtype, rngs=rngs)
    self.classifier = layers.NormLinear(cfg.hidden_size, cfg.num_classes, dtype=cfg.dtype, rngs=rngs)
    if not cfg.share_classifier:
      self.conv_classifier = layers.NormLinear(cfg.hidden_size, cfg.num_classes, dtype=cfg.dtype, rngs=rngs)

  def features(self, keypoints: jax.Array, lengths: jax.Array) -> jax.Array:
    """Per-frame embeddings (B, T, embed_size) of (B, T, 133, 3) keypoints with (B,) padded lengths."""
    return self.embed(normalise(keypoints, lengths, self.config).astype(self.config.dtype))

  def _temporal(self, keypoints, lengths):
    x, out_lengths = self.main_temporal_conv(self.features(keypoints, lengths), lengths)
    return x, self.temporal_model(x, out_lengths), out_lengths

  def sequence_features(self, keypoints: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The classifier's input: BiLSTM output (B, T', hidden) (zeros past each length) and int32 lengths (B,)."""
    _, seq, out_lengths = self._temporal(keypoints, lengths)
    return seq, out_lengths

  def __call__(self, keypoints: jax.Array, lengths: jax.Array, *,
               branches: Sequence[str] | None = None) -> dict[str, Any]:
    """Args:
      keypoints: (B, T, 133, 3) frame-normalised keypoints in SlowFastSign's padded layout.
      lengths: (B,) padded lengths (batch key ``video_length``).
      branches: only ``('main',)`` exists (accepted for the CSLR task's interface).

    Returns ``{'conv_logits': {'main': (B, T', C)}, 'sequence_logits': {'main': (B, T', C)},
    'feat_lengths': (B,)}``, as ``cslr.SlowFastSign``.
    """
    if branches is not None and tuple(branches) != ("main",):
      raise ValueError(f"the keypoint S2G model has only the 'main' path, got branches {tuple(branches)}")
    x, seq, out_lengths = self._temporal(keypoints, lengths)
    head = self.classifier if self.config.share_classifier else self.conv_classifier
    return {"conv_logits": {"main": head(x)}, "sequence_logits": {"main": self.classifier(seq)},
            "feat_lengths": out_lengths}
