"""Task ``keypoint_s2g``: continuous sign language recognition from COCO-WholeBody keypoints, trained with CTC.

The keypoint stream's sign-to-gloss (S2G) model of the two-stream recipe (issue #8): ``models/keypoint_s2g.py``
(79 TwoStream points as normalised coordinates -> per-frame MLP -> TemporalConv -> BiLSTM -> NormLinear; the
module docstring explains the choice against TwoStream's heatmap S3D). Everything else is the ``cslr`` task's
(this class subclasses it): the dataset directory (built on first use for the synthetic presets), the gloss
vocabulary, the loss (SeqCTC + ConvCTC + SeqKD on the single 'main' path; ``loss.slow``/``loss.fast`` have no
path to weigh), decoding (beam or greedy), WER scoring against the split's STM, CTM output, and the
``feature_fn`` that ``--mode extract`` runs (here: stream 'keypoint').

Data: ``config.data.pipeline`` holds the grain keypoint pipeline fields (``pipeline.default_config('keypoints')``)
with ``kp_padding='slowfast'``: keypoints are padded exactly as SlowFastSign pads video (batch key
``video_length``), so the recognition output has ``ceil(T/4)`` steps, equal to the RGB model's on the same clip.
"""
from __future__ import annotations

from hypersign_jax.models import keypoint_s2g as kp_model
from hypersign_jax.tasks import base
from hypersign_jax.tasks import cslr


@base.register("keypoint_s2g")
class KeypointS2GTask(cslr.CSLRTask):
  """Keypoint CSLR (see the module docstring)."""

  input_kind = "keypoints"
  stream = "keypoint"

  def __init__(self, config):
    padding = config.data.pipeline.get("kp_padding", "zero")
    if padding != "slowfast":
      raise ValueError(f"config key 'data.pipeline.kp_padding' = {padding!r}: the keypoint S2G model needs "
                       "'slowfast' (video-like padding and lengths)")
    super().__init__(config)

  def model_config(self) -> kp_model.KeypointS2GConfig:
    m = self.config.model
    return kp_model.KeypointS2GConfig(
        num_classes=self.vocab.num_classes, points=tuple(int(p) for p in m.points) or kp_model.TWOSTREAM_79,
        embed_size=int(m.embed_size), embed_dropout=float(m.embed_dropout), hidden_size=int(m.hidden_size),
        conv_spec=tuple(m.conv_spec), lstm_layers=int(m.lstm_layers), lstm_dropout=float(m.lstm_dropout),
        share_classifier=bool(m.share_classifier), norm=m.norm, conf_threshold=float(m.conf_threshold),
        hand_local=bool(m.hand_local), dtype=cslr._dtype(self.config.dtype))  # pylint: disable=protected-access

  def build_model(self, rngs):
    return kp_model.KeypointS2G(self.model_config(), rngs=rngs)

  def model_inputs(self, batch):
    return batch["keypoints"], batch["video_length"]
