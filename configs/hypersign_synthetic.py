"""HyperSign S2T on the synthetic corpus with STAND-IN features (no download, no feature encoders needed).

The features are NOT S3D features: `data_pipelines/synthetic_features.py` derives an 'rgb' and a 'keypoint'
stream deterministically from each synthetic record (fixed random projections of downsampled frames / normalised
keypoints, pooled over 4 frames, independent noise). If `data.dir` is missing it is built on first use from
`data.synthetic_features_preset` (a few seconds for smoke, a few minutes for demo); or build it yourself:

  python -m data_pipelines.synthetic_features --preset demo --out workdirs/data/hypersign_synthetic_demo

Default: preset 'demo' (2000 training sentences), 64-d stand-in features, a small model (heads 64, mBART d 128,
2+2 layers), a 300-piece SentencePiece model trained on the training texts (the same as
configs/g2t_synthetic.py, so `--config.model.init_from_g2t=<that G2T workdir>` fits when both use the same
corpus preset and seed), the paper's loss and its optimizer shape with larger learning rates for the small
from-scratch model.

On features extracted by the two trained S2G streams (what `make demo` feeds it: `--config.data.dir=<merged
features> --config.data.synthetic_features_preset= --config.model.init_from_g2t=<G2T run>`), dev BLEU-4 on the
demo corpus: both streams 95.57, RGB only 93.82, keypoint only 90.66 (docs/benchmarks.md, "Fusion on the demo
corpus with lost arm detections"; measured with the earlier 5 x 4 feature/target buckets, which met 8 batch
shapes instead of 2: the step compiled 8 times). `make demo`'s 6-epoch S2T with the 1 x 2 buckets: 180 s instead
of 280 s, dev BLEU-4 54.38 (55.42 with the old buckets; docs/benchmarks.md, session 7).

Variants:
  smoke: preset 'smoke' (24 training sentences), a tiny model (heads 16, mBART d 32, 1+1 layers, no dropout),
         60 steps, one feature / target bucket so the step compiles once, dev evaluated once at the end; builds
         its data under workdirs/data/hypersign_synthetic_smoke if missing; runs through
         `python main.py --config configs/hypersign_synthetic.py:smoke --workdir W` in under a minute on 2 CPU cores.
"""
import ml_collections

from configs import common
from configs import hypersign_phoenix2014t as p14t


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = p14t.slt_config("workdirs/data/hypersign_synthetic_demo", tgt_lang="de_DE", src_lang="de_DGS")
  c.seed = 0
  c.data.synthetic_features_preset = "demo"
  # Demo clips: T up to 35, targets up to 48 tokens. One feature bucket and two target buckets = two train and two
  # eval programs (the earlier (8, 16, 24, 32, 48) x (16, 24, 32, 48) met 8 train shapes, a compile each).
  c.data.pipeline.update(buckets=(36,), label_buckets=(16,))
  c.data.tgt_buckets = (32, 48)
  c.text.vocab_size = 300
  c.model.update(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, dropout=0.1,
                 attention_dropout=0.0, max_position_embeddings=128)
  c.model.head.update(hidden_size=64, ff_size=128, dropout=0.1)
  c.model.mapper.fusion_dropout = 0.1
  c.model.sst.update(sd_num=32, sd_dim=32)
  c.train.batch_size = 32
  c.train.num_epochs = 20
  c.train.eval_every_epochs = 5
  c.train.compile_ahead = 32  # compile the other bucket shapes' steps while the first ones train
  c.model.psc.final_step = 20 * (2000 // 32)
  c.loss.update(kl_warmup_steps=300, gkl_warmup_steps=300)
  c.optimizer.lr = 1e-3
  c.optimizer.groups = ml_collections.ConfigDict(dict(
      mapper=dict(pattern=r"^vl_mapper/", lr=1e-3),
      translation=dict(pattern=r"^translation_network/", lr=1e-3)))
  c.schedule.total = 20
  c.eval.update(batch_size=50, max_length=40)
  if variant == "smoke":
    c.data.dir = "workdirs/data/hypersign_synthetic_smoke"
    c.data.synthetic_features_preset = "smoke"
    p14t.smoke(c)
    c.data.pipeline.update(buckets=(12,), label_buckets=(8,))
    c.data.tgt_buckets = (24,)
    c.model.dropout = 0.0
    c.train.num_steps = 60
    c.train.log_every = 15
    c.train.eval_every_steps = 0
    c.train.eval_every_epochs = 1000
    c.model.psc.final_step = 60
    c.optimizer.lr = 3e-3
    c.eval.max_length = 24
    c.eval.final_splits = ("dev",)
  return c
