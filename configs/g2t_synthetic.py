"""Gloss-to-text (G2T) on the built-in synthetic corpus (rule-based translations; no download needed).

The corpus is built (annotations only, no frames) into `data.dir` on first use if the directory is missing
(`data.synthetic_preset`); or build it yourself:
  python -m data_pipelines.build --dataset synthetic --preset demo --annotations-only --out workdirs/data/g2t_synthetic_demo

Default: preset 'demo' (2000 training sentences) with a small mBART (d 128, 2+2 layers) and a 300-piece
SentencePiece model trained on the training texts.

Variants:
  smoke: preset 'smoke' (24 training sentences), a tiny model (d 32, 1+1 layers, no dropout), 80 steps, one bucket each side
         so the step compiles once; evaluates dev once at the end; runs through `python main.py` in well under a
         minute on 2 CPU cores.
"""
from configs import common
from configs import g2t_phoenix2014t as p14t


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = p14t.g2t_config("workdirs/data/g2t_synthetic_demo", tgt_lang="de_DE", src_lang="de_DGS")
  c.data.synthetic_preset = "demo"
  c.text.vocab_size = 300
  c.model.update(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, dropout=0.1,
                 attention_dropout=0.0, max_position_embeddings=128)
  c.train.batch_size = 32
  c.train.num_epochs = 20
  c.train.eval_every_epochs = 5
  c.train.compile_ahead = 32  # compile the other bucket shapes' steps while the first ones train
  c.optimizer.lr = 1e-3
  c.schedule.total = 20
  c.schedule.warmup = 100
  c.eval.max_length = 48
  if variant == "smoke":
    c.data.dir = "workdirs/data/g2t_synthetic_smoke"
    c.data.synthetic_preset = "smoke"
    p14t.smoke(c)
    c.data.src_buckets = (8,)
    c.data.tgt_buckets = (24,)
    c.model.dropout = 0.0
    c.train.num_steps = 80
    c.train.log_every = 20
    c.train.batch_size = 8
    c.eval.batch_size = 8
  return c
