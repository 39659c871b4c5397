"""What `make demo` runs: SlowFastSign CSLR on the built-in synthetic corpus (built on first use).

Until the two-stream recipe exists (S2G-RGB, S2G-keypoint, extract, G2T, S2T), the demo is the CSLR stage.
Variants: smoke.
"""
from configs import slowfastsign_synthetic


def get_config(arg=None):
  return slowfastsign_synthetic.get_config(arg)
