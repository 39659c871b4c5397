"""The two-stream recipe on PHOENIX-2014-T (hypersign_jax/recipes/two_stream.py); needs the dataset's root.

  python main.py --mode recipe --config configs/recipe_phoenix2014t.py --workdir workdirs/p14t \\
      --config.corpus.root=/data/PHOENIX-2014-T-release-v3/PHOENIX-2014-T

Stages as configs/recipe_synthetic.py with the paper-setting configs: SlowFastSign R101
(configs/slowfastsign_phoenix2014t.py), keypoint S2G (configs/keypoint_s2g_phoenix2014t.py), G2T
(configs/g2t_phoenix2014t.py), HyperSign S2T (configs/hypersign_phoenix2014t.py). The corpus build reads the
official layout. The official release has no keypoints: for the keypoint stage, prepare the corpus with
keypoints yourself (e.g. ``python -m data_pipelines.build --dataset slrt ... --keypoints keypoints.pkl``, the
TwoStream/SLRT HRNet keypoint pickle) and pass it as ``--config.corpus.prebuilt=DIR`` instead of corpus.root.
Days of accelerator time at the paper's settings.

Variants:
  smoke: every stage's `:smoke` config (still needs corpus.root).
"""
from configs import common
from configs import recipe_synthetic


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  suffix = ":smoke" if variant == "smoke" else ""
  return recipe_synthetic.recipe_config("phoenix2014t", {
      "s2g_rgb": f"configs/slowfastsign_phoenix2014t.py{suffix}",
      "s2g_keypoint": f"configs/keypoint_s2g_phoenix2014t.py{suffix}",
      "g2t": f"configs/g2t_phoenix2014t.py{suffix}",
      "s2t": f"configs/hypersign_phoenix2014t.py{suffix}",
  })
