"""Keypoint sign-to-gloss (S2G) CSLR on CSL-Daily (settings: keypoint_s2g_phoenix2014t.py).

Data: a prepared directory whose records carry ``keypoints`` (T, 133, 3), e.g. from TwoStream/SLRT's files::

  python -m data_pipelines.build --dataset slrt --dataset-name csl_daily \
      --annotations data/csl-daily/csl-daily.{split} \
      --keypoints data/csl-daily/keypoints_hrnet_dark_coco_wholebody.pkl --out prepared/csl_daily_keypoints

Records without ``frame_size`` use 512 x 512 (CSL-Daily frames). No hypothesis cleanup (Chinese glosses).

Variants: smoke (tiny model, 4 steps; needs the prepared dataset).
"""
from configs import common
from configs import keypoint_s2g_phoenix2014t as kp


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = kp.keypoint_s2g_config("prepared/csl_daily_keypoints", cleanup="none", frame_size=(512, 512))
  if variant == "smoke":
    c = kp.make_smoke(c)
  return c
