"""Keypoint sign-to-gloss (S2G) CSLR on the built-in synthetic signing corpus (no download needed).

The corpus is built into ``data.dir`` on first use if the directory is missing (``data.synthetic_preset``); or
build it yourself: python -m data_pipelines.build --dataset synthetic --preset demo --out workdirs/data/synthetic_demo
(the same directory as configs/slowfastsign_synthetic.py: every record has frames and keypoints).

Default: preset 'demo' (2000 training sentences, 64 px frames, keypoints in pixels), the 79 TwoStream points as
coordinates, a 256-wide per-frame MLP and temporal part (TemporalConv K5-P2-K5-P2, 2-layer BiLSTM 2x128), no
dropout, SeqCTC + ConvCTC without SeqKD, batch 8, Adam 2e-3 constant, keypoint augmentation on, 6 epochs (1500
steps), greedy dev decoding every 125 steps, three clip buckets. Sized for CPU time-to-accuracy. Tuning runs of
500 steps on 2 CPU cores (dev WER): 128 wide with dropout 0.1 and SeqKD x25: 86 %; without SeqKD: 70 %; without
dropout: 76 %; 256 wide: 74 %; all three changes: 11 % (0 % after 1000 steps, 80 s) -- on the demo corpus before
its detector lost arms; with the arm misses (``Timing.arm_miss_rate``, ≈ 10 % of the frames) the same run ends at
5.4 % dev / 5.0 % test WER (best at step 1375, 190 s): the missed spans hide signs that only the frames still show.

Variants:
  smoke: preset 'smoke' (24 training sentences), a tiny model (widths 32, one LSTM layer), a dozen steps, one clip
         bucket so the step compiles once; runs through `python main.py` in well under a minute on 2 CPU cores.
"""
from configs import common
from configs import keypoint_s2g_phoenix2014t as kp


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = kp.keypoint_s2g_config("workdirs/data/synthetic_demo", cleanup="none", frame_size=(64, 64),
                             buckets=(48, 96, 168), label_buckets=(16,), read_threads=2)
  c.dtype = "float32"
  c.data.synthetic_preset = "demo"
  c.model.update(embed_size=256, hidden_size=256, lstm_layers=2, lstm_dropout=0.0, embed_dropout=0.0)
  c.loss.dist = 0.0  # SeqKD off: on this corpus it slows the escape from the CTC blank plateau (see below)
  c.train.batch_size = 8
  c.train.num_epochs = 6
  c.train.log_every = 25
  c.train.eval_every_steps = 125
  c.train.eval_every_epochs = 0
  c.train.compile_ahead = 32  # compile the other bucket shapes' steps while the first ones train
  c.optimizer.update(lr=2e-3, weight_decay=0.0)
  c.schedule.update(name="constant", unit="step")
  c.eval.update(batch_size=40, decode="greedy", final_splits=("dev", "test"))
  if variant == "smoke":
    c.data.dir = "workdirs/data/synthetic_smoke"
    c.data.synthetic_preset = "smoke"
    c.data.pipeline.update(buckets=(64,), label_buckets=(8,), read_threads=1)
    c.model.update(embed_size=32, hidden_size=32, lstm_layers=1, lstm_dropout=0.0, embed_dropout=0.0)
    c.train.batch_size = 4
    c.train.num_steps = 12
    c.train.log_every = 1
    c.train.eval_every_steps = 0
    c.train.eval_every_epochs = 1000  # evaluate once, at the end
    c.train.fast_compile = True
    c.train.tensorboard = False
    c.eval.batch_size = 4
    c.eval.final_splits = ("dev",)
    c.optimizer.lr = 3e-3
  return c
