"""SlowFastSign (ICASSP 2024) continuous sign language recognition model: video -> per-frame gloss logits.

The original's ``slr_network_multi.SLRModel`` (design/SLOWFASTSIGN.md §1 "Model class", §2 "PFE", §3):

* backbone ``conv2d`` = SlowFast R101 with BFF (``models/slowfast.py``): per-frame features (B, T, 2048 + 256),
  head dropout 0.5 included;
* three temporal paths, index 0 = main on all 2304 channels, 1 = slow on ``feat[..., :2048]``, 2 = fast on
  ``feat[..., 2048:]`` (Pathway Feature Enhancement, PFE); each path has its OWN TemporalConv (K5-P2-K5-P2 to
  1024), its own 2-layer BiLSTM (512 per direction) and its own ``NormLinear(1024, C)`` classifier which, with
  ``share_classifier=1``, is also the conv head of that path (``conv1d.fc[i] is classifier[i]``); the paths share
  nothing with each other;
* in training all three paths run; in eval only the main path runs (the original's ``TemporalSlowFastFuse``
  computes only the main stack in eval mode, so BiLSTMs/classifiers 1-2 are never called). The auxiliary
  parameters still exist (checkpoints load with strict=True). Here: ``model.eval()`` (or ``branches=('main',)``)
  gives the main-path-only graph; the PFE modules are not traced at all, so they are absent from the compiled
  inference program;
* outputs per path: conv logits (from the TemporalConv features) and sequence logits (from the BiLSTM), both at the
  temporal-conv rate, batch-major (B, T', C) (the original is time-major), plus the output lengths;
  ``sequence_features`` returns the main path's BiLSTM output (the classifier input) for feature extraction.

Parameter names follow the original's state dict where possible: ``conv2d`` (backbone), ``main_temporal_conv`` /
``slow_temporal_conv`` / ``fast_temporal_conv`` (``conv1d.<x>_temporal_conv``), ``temporal_model[i]``
(``temporal_model.i.rnn``), ``classifier[i]`` (``classifier.i`` = ``conv1d.fc.i``); with ``share_classifier=False``
the conv heads are ``conv_classifier[i]``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hypersign_jax.models import layers
from hypersign_jax.models import temporal_conv as tconv

BRANCHES = ("main", "slow", "fast")


@dataclasses.dataclass(frozen=True)
class SlowFastSignConfig:
  """Temporal part of SlowFastSign; ``backbone`` is a ``slowfast.SlowFastConfig`` (None: pass a module)."""
  num_classes: int
  backbone: Any = None
  hidden_size: int = 1024                  # TemporalConv width = BiLSTM output width (2 x 512)
  conv_spec: tuple[str, ...] = tconv.DEFAULT_SPEC
  lstm_layers: int = 2
  lstm_dropout: float = 0.3
  share_classifier: bool = True
  pfe: bool = True                          # build the slow / fast auxiliary paths (used in training only)
  # Not in the original (False = the original): the sequence head classifies BiLSTM(x) + x, x the TemporalConv
  # features (zeroed past each length), so it starts from what the conv head has learnt (docs/DEVIATIONS.md).
  sequence_residual: bool = False
  dtype: Any = jnp.float32                  # compute dtype of the temporal part; parameters stay float32


class SlowFastSign(nnx.Module):
  """Backbone + main/slow/fast temporal paths; ``__call__(video, video_lengths)`` -> logits per path."""

  def __init__(self, cfg: SlowFastSignConfig, *, rngs: nnx.Rngs, backbone: nnx.Module | None = None,
               feature_dims: Sequence[int] | None = None):
    """Args:
      cfg: the model config.
      rngs: parameter / dropout RNGs.
      backbone: a module mapping frames (B, T, H, W, 3) to ``{'fused': (B, T, C_s + C_f), ...}``; default
        ``slowfast.SlowFast(cfg.backbone)``.
      feature_dims: (C_slow, C_fast) of the backbone features; default ``backbone.config.out_dims``.
    """
    if backbone is None:
      from hypersign_jax.models import slowfast  # pylint: disable=import-outside-toplevel
      if cfg.backbone is None:
        raise ValueError("SlowFastSignConfig.backbone is None and no backbone module was given")
      backbone = slowfast.SlowFast(cfg.backbone, rngs=rngs)
    if feature_dims is None:
      feature_dims = backbone.config.out_dims
    c_slow, c_fast = (int(d) for d in feature_dims)
    self.config = cfg
    self.c_slow = c_slow
    self.conv2d = backbone
    widths = {"main": c_slow + c_fast, "slow": c_slow, "fast": c_fast}
    names = BRANCHES if cfg.pfe else BRANCHES[:1]
    self.branch_names = names
    for name in names:
      setattr(self, f"{name}_temporal_conv", tconv.TemporalConv(widths[name], cfg.hidden_size, cfg.conv_spec,
                                                                 dtype=cfg.dtype, rngs=rngs))
    self.temporal_model = nnx.List([
        layers.MaskedBiLSTM(cfg.hidden_size, cfg.hidden_size, cfg.lstm_layers, cfg.lstm_dropout, dtype=cfg.dtype,
                            rngs=rngs) for _ in names])
    self.classifier = nnx.List([layers.NormLinear(cfg.hidden_size, cfg.num_classes, dtype=cfg.dtype, rngs=rngs)
                                for _ in names])
    if not cfg.share_classifier:
      self.conv_classifier = nnx.List([
          layers.NormLinear(cfg.hidden_size, cfg.num_classes, dtype=cfg.dtype, rngs=rngs) for _ in names])
    # Set by model.train() / model.eval() (nnx set_attributes): eval runs the main path only.
    self.deterministic = False

  def features(self, video: jax.Array) -> jax.Array:
    """Per-frame backbone features (B, T, C_s + C_f)."""
    return self.conv2d(video)["fused"]

  def sequence_features(self, video: jax.Array, video_lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The main path's classifier input: BiLSTM output (B, T', hidden_size) (zeros past each length) and the
    int32 lengths (B,), at the temporal-conv rate. The same computation as ``__call__``'s main path up to the
    classifier (what ``--mode extract`` writes as the 'rgb' stream)."""
    x, lengths = self.main_temporal_conv(self.features(video).astype(self.config.dtype), video_lengths)
    return self._sequence(0, x, lengths), lengths

  def _sequence(self, i: int, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Path ``i``'s classifier input from its TemporalConv features: the BiLSTM output (plus ``x`` with
    ``sequence_residual``); zeros past each length."""
    h = self.temporal_model[i](x, lengths)
    if self.config.sequence_residual:
      valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
      h = h + jnp.where(valid[..., None], x, 0).astype(h.dtype)
    return h

  def __call__(self, video: jax.Array, video_lengths: jax.Array, *,
               branches: Sequence[str] | None = None) -> dict[str, Any]:
    """Args:
      video: (B, T, H, W, 3) normalised frames in SlowFastSign's padded layout (T a multiple of 4).
      video_lengths: (B,) per-sample padded lengths (``4*ceil(n/4) + 12``, batch key ``video_length``).
      branches: paths to compute; default all built paths in training, ``('main',)`` in eval mode.

    Returns:
      ``{'conv_logits': {path: (B, T', C)}, 'sequence_logits': {path: (B, T', C)}, 'feat_lengths': (B,) int32}``;
      sequence logits are exactly 0 at padded steps (the BiLSTM pads with zeros and the classifier has no bias).
    """
    if branches is None:
      branches = ("main",) if self.deterministic else self.branch_names
    unknown = [b for b in branches if b not in self.branch_names]
    if unknown:
      raise ValueError(f"unknown or unbuilt temporal paths {unknown}; this model has {self.branch_names}")
    feat = self.features(video)
    inputs = {"main": feat, "slow": feat[..., :self.c_slow], "fast": feat[..., self.c_slow:]}
    conv_logits, seq_logits, lengths = {}, {}, None
    for name in branches:
      i = self.branch_names.index(name)
      x, lengths = getattr(self, f"{name}_temporal_conv")(inputs[name].astype(self.config.dtype), video_lengths)
      head = self.classifier[i] if self.config.share_classifier else self.conv_classifier[i]
      conv_logits[name] = head(x)
      seq_logits[name] = self.classifier[i](self._sequence(i, x, lengths))
    return {"conv_logits": conv_logits, "sequence_logits": seq_logits, "feat_lengths": lengths}
