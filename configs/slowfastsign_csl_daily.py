"""SlowFastSign CSLR on CSL-Daily (paper settings; see slowfastsign_phoenix2014.py for the full list).

CSL-Daily frames: the top 40 rows are cropped and the result resized back to 256x256 (train and eval), as the
original feeder does. No hypothesis cleanup (Chinese glosses).

Data: python -m data_pipelines.build --dataset csl_daily --root /data/CSL-Daily --out prepared/csl_daily

Variants: smoke (tiny backbone and temporal part, 4 steps; needs the prepared dataset).
"""
from configs import common
from configs import slowfastsign_phoenix2014 as sfs


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = sfs.slowfastsign_config("prepared/csl_daily", cleanup="none", top_crop=40, image_size=(256, 256))
  if variant == "smoke":
    c = sfs.make_smoke(c)
  return c
