"""Gloss-to-text (G2T) on CSL-Daily: Chinese glosses -> Chinese text, scored character level.

Data: `python -m data_pipelines.build --dataset csl_daily --root <CSL-Daily> --out workdirs/data/csl_ann
--annotations-only` (or `--config.data.root=<CSL-Daily>`). Full-width ，？！： become ,?!: in the texts (SLRT's
`data.translate`); BLEU and ROUGE-L are computed on characters; target language zh_CN, source zh_CSL. Same
from-scratch small model as PHOENIX with a larger SentencePiece vocabulary.

Variants: cc25 (mbart-large-cc25 geometry, SLRT's G2T optimisation), smoke.
"""
from configs import common
from configs import g2t_phoenix2014t as p14t


def get_config(arg=None):
  variant = common.parse_variant(arg, ("cc25", "smoke"))
  c = p14t.g2t_config("workdirs/data/csl_ann", tgt_lang="zh_CN", src_lang="zh_CSL", level="char",
                      fullwidth_to_ascii=True, dataset="csl_daily")
  c.text.vocab_size = 4000
  c.text.character_coverage = 0.9995
  if variant == "cc25":
    p14t.cc25(c)
  elif variant == "smoke":
    p14t.smoke(c)
    c.train.batch_size = 8
  return c
