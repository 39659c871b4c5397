"""HyperSign S2T on CSL-Daily: RGB + keypoint features -> Chinese, scored character level (HYPERSIGN.md §1-§7).

Data: as configs/hypersign_phoenix2014t.py (`--dataset slrt --dataset-name csl_daily ... --out
workdirs/data/csl_features`). Text: HyperSign's pruned mBart_zh (spm_model, prune_map = old2new_vocab.pkl,
gloss.vocab) and the G2T workdir of configs/g2t_csl_daily.py:cc25 as `model.init_from_g2t`.

Differences from PHOENIX kept from the original config: `embedding_fuse_share` mapper (a bias-free
Linear(#recognition glosses -> 1024) on each stream's gloss probabilities), DSG dropout 0, PSC schedule over
17265 steps (15 epochs x 1151), learning rates 1e-4 (recognition), 1e-4 (mapper), 5e-6 (translation), seed 201,
validation max length 60 (the original tests with 500; set --config.eval.max_length=500 for test-set numbers),
full-width ，？！： -> ,?!:, character-level BLEU / ROUGE-L, target zh_CN.

Not yet supported: initialising the mapper's columns from mBART-side gloss embeddings (`gls2embed`); the mapper
starts from the default initialiser.

Variants: smoke.
"""
import ml_collections

from configs import common
from configs import hypersign_phoenix2014t as p14t


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = p14t.slt_config("workdirs/data/csl_features", tgt_lang="zh_CN", src_lang="zh_CSL", level="char",
                      fullwidth_to_ascii=True, dataset="csl_daily")
  c.seed = 201
  c.text.vocab_size = 4000
  c.text.character_coverage = 0.9995
  c.model.mapper.update(type="embedding_fuse_share", fusion_dropout=0.0)
  c.model.psc.final_step = 17265
  c.optimizer.groups = ml_collections.ConfigDict(dict(
      mapper=dict(pattern=r"^vl_mapper/", lr=1e-4),
      translation=dict(pattern=r"^translation_network/", lr=5e-6)))
  c.eval.max_length = 60
  if variant == "smoke":
    p14t.smoke(c)
  return c
