"""Keypoint sign-to-gloss (S2G) CSLR on PHOENIX-2014-T; also the shared keypoint S2G config builder.

The keypoint stream of the two-stream recipe (issue #8): ``models/keypoint_s2g.py`` (the 79 TwoStream
COCO-WholeBody points as normalised coordinates -> per-frame MLP 512 -> TemporalConv K5-P2-K5-P2 to 1024 ->
2-layer BiLSTM 2x512 -> NormLinear), trained with the ``cslr`` task's loss (SeqCTC + ConvCTC + 25 SeqKD, main path
only) and scored like SlowFastSign (beam 10, PHOENIX cleanup, sclite-style WER). After training,
``--mode extract`` writes the BiLSTM output (T', 1024) of every split as stream 'keypoint'.

Our settings, not a paper's (TwoStream trains a heatmap S3D instead, see the model's docstring): Adam 5e-4 with
coupled weight decay 1e-4, cosine over 60 epochs, batch 8, keypoint augmentation (rotation +-10 deg, scale +-10 %,
shift +-0.05, SlowFastSign's temporal rescale +-20 % clamped to [32, 230]).

Data: a prepared directory whose records carry ``keypoints`` (T, 133, 3) (HRNet COCO-WholeBody, pixels), e.g. from
TwoStream/SLRT's keypoint pickle::

  python -m data_pipelines.build --dataset slrt --dataset-name phoenix2014t \
      --annotations data/phoenix-2014t/phoenix-2014t_cleaned.{split} \
      --keypoints data/phoenix-2014t/keypoints_hrnet_dark_coco_wholebody.pkl --out prepared/p14t_keypoints

Records without ``frame_size`` use ``data.pipeline.frame_size`` (PHOENIX frames: 260 high x 210 wide). The eval
buckets reach 480 frames so that ``--mode extract`` also covers the longest training clips (475 frames).

Variants: smoke (tiny model, 4 steps; needs the prepared dataset).
"""
import ml_collections

from configs import common
from data_pipelines import pipeline


def keypoint_s2g_config(data_dir: str, cleanup: str, **pipeline_overrides) -> ml_collections.ConfigDict:
  """Every field of the ``keypoint_s2g`` task with the real-data settings (shared by the dataset configs)."""
  c = common.base_config("keypoint_s2g")
  c.dtype = "bfloat16"

  c.data.dir = data_dir
  c.data.synthetic_preset = ""  # '' = never build; the synthetic configs name a preset (built if dir is missing)
  c.data.synthetic_seed = 0
  p = pipeline.default_config("keypoints")
  p.kp_padding = "slowfast"     # video-like padding: T' = ceil(T/4), as the RGB model
  p.frame_size = (260, 210)     # (height, width) fallback for records without frame_size
  p.read_threads = 4
  p.bucket_min = 32
  p.bucket_max = 480
  p.bucket_ratio = 1.25
  p.update(pipeline_overrides)
  c.data.pipeline = p

  c.model.points = ()           # () = TwoStream's 79 points (models/keypoint_s2g.TWOSTREAM_79)
  c.model.norm = "frame"        # 'frame' | 'clip' | 'none': shoulder-centred, shoulder-width-scaled coordinates
  c.model.conf_threshold = 0.3
  c.model.hand_local = True
  c.model.embed_size = 512
  c.model.embed_dropout = 0.1
  c.model.hidden_size = 1024
  c.model.conv_spec = ("K5", "P2", "K5", "P2")
  c.model.lstm_layers = 2
  c.model.lstm_dropout = 0.3
  c.model.share_classifier = True

  c.loss = ml_collections.ConfigDict(dict(
      seq_ctc=1.0, conv_ctc=1.0, dist=25.0, slow=0.0, fast=0.0, kd_temperature=8.0, kd_use_blank=False,
      kd_mask="batch_max", zero_infeasible=True))

  c.train.batch_size = 8
  c.train.num_epochs = 60
  c.train.eval_every_epochs = 1
  c.train.log_every = 100
  c.optimizer.update(name="adam", lr=5e-4, weight_decay=1e-4, weight_decay_mode="coupled")
  c.schedule.update(name="cosine", unit="epoch", total=60)

  c.eval.update(metric="wer", mode="min", batch_size=8)
  c.eval.decode = "beam"
  c.eval.beam_width = 10
  c.eval.cleanup = cleanup
  c.eval.reference_stm = ""
  c.eval.decode_conv = False
  c.extract = common.extract_config("keypoint")
  return c


def make_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Tiny model, a few steps, float32 (CPU): checks that the recipe runs end to end on the prepared data."""
  c.dtype = "float32"
  c.model.update(embed_size=32, hidden_size=32, lstm_layers=1)
  c.train.num_steps = 4
  c.train.log_every = 1
  c.train.eval_every_steps = 4
  c.train.tensorboard = False
  c.eval.decode = "greedy"
  c.eval.final_splits = ("dev",)
  c.data.pipeline.read_threads = 1
  return c


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = keypoint_s2g_config("prepared/p14t_keypoints", cleanup="phoenix2014")
  if variant == "smoke":
    c = make_smoke(c)
  return c
