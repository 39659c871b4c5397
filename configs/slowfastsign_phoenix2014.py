"""SlowFastSign CSLR on PHOENIX-2014 with the paper's settings; also the shared SlowFastSign config builder.

Paper / original code settings (design/SLOWFASTSIGN.md §1-§4): SlowFast R101 + BFF backbone, PFE (slow/fast
auxiliary paths, weight 0.25 each), TemporalConv K5-P2-K5-P2 to 1024, 2-layer BiLSTM 2x512, shared NormLinear
classifiers; losses SeqCTC 1, ConvCTC 1, Dist 25 (SeqKD T=8, blank dropped); 224 crop from 256 px, flip 0.5,
temporal rescale +-20% clamped to [32, 230]; Adam lr 1e-4 with coupled weight decay 1e-4, MultiStep [40, 60]
x0.2 per epoch, 80 epochs, batch 2; beam 10 decoding; model selection by dev WER; the evaluation kit's cleanup.

Data: build the prepared directory first, e.g.
  python -m data_pipelines.build --dataset phoenix2014 --root /data/phoenix2014-release --out prepared/phoenix2014
For numbers comparable with the paper on PHOENIX-2014, score against the evaluation kit's normalised ground
truth: --config.eval.reference_stm=/path/to/phoenix2014-groundtruth-{split}.stm (SLOWFASTSIGN.md §4).

Variants: smoke (tiny backbone and temporal part, 4 steps; needs the prepared dataset).
"""
import ml_collections

from configs import common
from data_pipelines import pipeline


def slowfastsign_config(data_dir: str, cleanup: str, **pipeline_overrides) -> ml_collections.ConfigDict:
  """The paper's SlowFastSign training config on a prepared dataset directory (shared by the dataset configs)."""
  c = common.base_config("cslr")
  c.dtype = "bfloat16"  # the original trains with fp16 autocast; parameters, CTC and SeqKD stay float32

  c.data.dir = data_dir
  c.data.synthetic_preset = ""  # '' = never build; the synthetic configs name a preset (built if dir is missing)
  c.data.synthetic_seed = 0
  p = pipeline.default_config("video")  # SlowFastSign defaults: crop 224, flip 0.5, temporal_scale 0.2, [32, 230]
  p.read_threads = 4
  p.bucket_min = 32       # clip-length buckets (frames); one compiled program per bucket
  p.bucket_max = 352      # longest eval clip: 340 frames (CSL-Daily test); train clips are capped at 232
  p.bucket_ratio = 1.25
  p.update(pipeline_overrides)
  c.data.pipeline = p

  c.model.backbone = "r101"  # models/slowfast.py presets: 'r101' | 'tiny'
  c.model.backbone_overrides = ml_collections.ConfigDict(type_safe=False)  # SlowFastConfig fields
  c.model.hidden_size = 1024
  c.model.conv_spec = ("K5", "P2", "K5", "P2")
  c.model.lstm_layers = 2
  c.model.lstm_dropout = 0.3
  c.model.share_classifier = True
  c.model.pfe = True
  c.model.sequence_residual = False  # True: sequence head on BiLSTM(x) + x (not in the original; DEVIATIONS.md)
  c.model.remat = "none"       # SlowFast backbone: 'none' | 'block' (each ResBlock) | 'stage' (each ResStage)
  c.model.remat_policy = ""    # jax.checkpoint policy: '' (save nothing) | 'dots_saveable' | ... (models/remat.py)

  c.loss = ml_collections.ConfigDict(dict(
      seq_ctc=1.0, conv_ctc=1.0, dist=25.0,  # per path
      slow=0.25, fast=0.25,                  # PFE path weights (README command; 0 = the YAML-only behaviour)
      kd_temperature=8.0, kd_use_blank=False,
      kd_mask="batch_max",                   # 'batch_max' = the original's frames; 'valid' | 'none'
      zero_infeasible=True,                  # False: an infeasible CTC sample makes the loss inf (step skipped)
  ))

  c.train.batch_size = 2
  c.train.num_epochs = 80
  c.train.eval_every_epochs = 1
  c.train.log_every = 100
  c.optimizer.name = "adam"
  c.optimizer.lr = 1e-4
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "coupled"  # torch.optim.Adam(weight_decay=1e-4), on every parameter
  c.schedule.name = "multistep"
  c.schedule.unit = "epoch"
  c.schedule.milestones = (40, 60)
  c.schedule.gamma = 0.2

  c.eval.metric = "wer"
  c.eval.mode = "min"
  c.eval.batch_size = 2
  c.eval.decode = "beam"    # 'beam' (prefix beam search, ctcdecode semantics) | 'greedy'
  c.eval.beam_width = 10
  c.eval.cleanup = cleanup  # hypothesis cleanup before scoring (metrics/gloss_cleanup.py)
  c.eval.reference_stm = ""  # '' = <data.dir>/<split>.stm; else a path with {split}
  c.eval.decode_conv = False  # also decode the conv head (diagnostic 'conv_wer')
  c.extract = common.extract_config("rgb")  # --mode extract: main-path BiLSTM features (T', hidden_size)
  return c


def make_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Tiny model, a few steps, float32 (CPU): checks that the recipe runs end to end on the prepared data."""
  c.dtype = "float32"
  c.model.backbone = "tiny"
  c.model.hidden_size = 64
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
  c = slowfastsign_config("prepared/phoenix2014", cleanup="phoenix2014")
  if variant == "smoke":
    c = make_smoke(c)
  return c
