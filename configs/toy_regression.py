"""Toy regression through the real trainer (tests, and the smallest runnable job). Variants: smoke."""
from configs import common


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = common.base_config("toy_regression")
  c.data.d_in = 8
  c.data.d_out = 2
  c.data.noise = 0.05
  c.data.train_size = 512
  c.data.eval_size = 128
  c.model.hidden = 64
  c.model.dropout = 0.1
  c.train.batch_size = 32
  c.train.num_epochs = 20
  c.train.log_every = 16
  c.eval.metric = "mse"
  c.eval.batch_size = 32
  c.optimizer.lr = 3e-3
  c.schedule.name = "cosine"
  c.schedule.unit = "epoch"
  c.schedule.total = 20
  if variant == "smoke":
    c.train.num_epochs = 4
    c.schedule.total = 4
    c.train.tensorboard = False
  return c
