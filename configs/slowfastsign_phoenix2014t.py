"""SlowFastSign CSLR on PHOENIX-2014-T (paper settings; see slowfastsign_phoenix2014.py for the full list).

Data: python -m data_pipelines.build --dataset phoenix2014t --root /data/PHOENIX-2014-T --out prepared/phoenix2014t
Scoring: the evaluation STM is the raw annotation (as the original) with the PHOENIX-2014 kit cleanup applied to
hypotheses, as SlowFastSign does for every dataset.

Variants: smoke (tiny backbone and temporal part, 4 steps; needs the prepared dataset).
"""
from configs import common
from configs import slowfastsign_phoenix2014 as sfs


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = sfs.slowfastsign_config("prepared/phoenix2014t", cleanup="phoenix2014")
  if variant == "smoke":
    c = sfs.make_smoke(c)
  return c
