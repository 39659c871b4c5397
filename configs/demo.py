"""What `make demo` runs: SlowFastSign CSLR on the built-in synthetic corpus (built on first use).

Until the two-stream recipe exists (S2G-RGB, S2G-keypoint, extract, G2T, S2T), the demo is the CSLR stage.
Variants: smoke.
"""
from configs import slowfastsign_synthetic


def get_config(arg=None):
  c = slowfastsign_synthetic.get_config(arg)
  if not arg:
    c.train.num_epochs = 1  # ~500 steps, ~20 min on 2 CPU cores: a demonstration, not a converged model
  return c
