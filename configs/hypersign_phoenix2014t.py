"""HyperSign S2T on PHOENIX-2014-T: RGB + keypoint features -> German, the paper's settings (HYPERSIGN.md §1-§7).

Data: a prepared directory whose records carry `features` {'rgb', 'keypoint'} (T, 832), e.g. from SLRT's feature
pickles::

  python -m data_pipelines.build --dataset slrt --dataset-name phoenix2014t \
      --annotations data/phoenix-2014t/phoenix-2014t_cleaned.{split} \
      --features rgb=<extract_features>/head_rgb_input/{split}.pkl \
                 keypoint=<extract_features>/head_keypoint_input/{split}.pkl \
      --out workdirs/data/p14t_features

(or `--mode extract` once the S2G encoders exist). Text: HyperSign's pruned mBart_de (`--config.text.spm_model`
= the mBart_de directory, `--config.text.prune_map` = its map_ids.pkl, `--config.gloss.vocab` = its
gloss2ids.pkl), the same three values as the G2T run named by `--config.model.init_from_g2t` (a G2T workdir,
configs/g2t_phoenix2014t.py:cc25; its best checkpoint initialises all mBART weights, as the original's strict
G2T load).

Paper settings kept: mbart-large-cc25 geometry (d 1024, 12+12 layers, 16 heads, FFN 4096), dropout 0.3 /
attention 0.1; VisualHeads 832 -> 512 (FFN 2048, k 3, dropout 0.1); `fuse_projection_share` mapper with DSG
(dropout 0.5); PSC sigma 0.5 -> 0.01 over 17760 steps; SST 128 x 128, temperature 0.07, sparsemax; KL x5 and
gkl x1 warmed up over 4000 steps; label smoothing 0.2; Adam betas (0.9, 0.998), eps 1e-8, coupled weight decay
1e-3, no clipping; learning rates 1e-4 (recognition_network), 2e-3 (vl_mapper), 1e-5 (translation_network =
mBART + SST); cosine over 40 epochs changing at epoch boundaries; batch 16; seed 210; dev BLEU-4 (max) after
every epoch; beam 5, length penalty 1, max length 100 (counting the start token) from de_DE only; BLEU with
tokenize none, ROUGE-L tf_seq2seq, final '.' -> ' .'.

The original steps its cosine scheduler *before* each epoch, so epoch e uses lr * 0.5 (1 + cos(pi (e + 1) / 40))
(0.9985x in epoch 0, 0 in the last): reproduced with `schedule.offset=1`.

Variants:
  smoke: a tiny model and a few steps (for checking a prepared features directory end to end).
"""
import ml_collections

from configs import common
from configs import g2t_phoenix2014t as g2t_p14t


def slt_config(data_dir: str, *, tgt_lang: str, src_lang: str, text_suffix: str = "", level: str = "word",
               fix_final_period: bool = False, fullwidth_to_ascii: bool = False, dataset: str = ""):
  """Every field of the `slt` task, with the paper's PHOENIX-2014-T model and optimisation."""
  c = g2t_p14t.g2t_config(data_dir, tgt_lang=tgt_lang, src_lang=src_lang, text_suffix=text_suffix, level=level,
                          fix_final_period=fix_final_period, fullwidth_to_ascii=fullwidth_to_ascii,
                          dataset=dataset)
  c.task = "slt"
  c.seed = 210
  c.data.update(dict(synthetic_features_preset="", synthetic_features_dim=64, synthetic_features_noise=0.3,
                     tgt_buckets=(16, 24, 32, 48, 64, 96, 128)))
  # features pipeline: feature-length buckets (T <= 100 on PHOENIX: 400 frames / 4)
  c.data.pipeline = ml_collections.ConfigDict(dict(
      read_threads=1, prefetch_batches=2, buckets=(16, 24, 32, 48, 64, 100), bucket_multiple=4,
      label_buckets=(8, 16, 32, 64), overflow="error"))
  g2t_p14t.cc25(c)
  c.model.update(dropout=0.3, attention_dropout=0.1)
  c.model.streams = ("rgb", "keypoint")
  c.model.num_recognition_classes = 0  # 0 = the dataset's gloss_vocab.json (blank included)
  c.model.init_from_g2t = ""
  c.model.head = ml_collections.ConfigDict(dict(hidden_size=512, ff_size=2048, ff_kernel_size=3, dropout=0.1,
                                                mask_padding=False, running_var_unbiased=True))
  c.model.mapper = ml_collections.ConfigDict(dict(type="fuse_projection_share", fusion="DSG", fusion_dropout=0.5,
                                                  global_local_reverse=False))
  c.model.psc = ml_collections.ConfigDict(dict(initial_std=0.5, final_std=0.01, final_step=17760, mean=0.0,
                                               view2_source="view1", enabled=True))
  c.model.sst = ml_collections.ConfigDict(dict(sd_num=128, sd_dim=128, temperature=0.07, att_func="sparsemax",
                                               masked_pooling=False))
  c.loss = ml_collections.ConfigDict(dict(
      label_smoothing=0.2, gkl_weight=1.0, kl_factor=5.0, kl_warmup_steps=4000, gkl_factor=1.0,
      gkl_warmup_steps=4000, sst_weight=1.0, mask_padding=False, ctc=False, recognition_weight=0.0))
  c.train.batch_size = 16
  c.train.num_epochs = 40
  c.train.eval_every_epochs = 1
  c.train.log_every = 50
  c.optimizer.update(name="adam", lr=1e-4, b1=0.9, b2=0.998, eps=1e-8, weight_decay=1e-3,
                     weight_decay_mode="coupled", clip_grad_norm=0.0)
  c.optimizer.groups = ml_collections.ConfigDict(dict(
      mapper=dict(pattern=r"^vl_mapper/", lr=2e-3),
      translation=dict(pattern=r"^translation_network/", lr=1e-5)))
  c.schedule.update(name="cosine", unit="epoch", total=40, eta_min_ratio=0.0, warmup=0, offset=1)
  c.eval.update(batch_size=16, num_beams=5, length_penalty=1.0, max_length=100, metric="bleu4", mode="max")
  return c


def smoke(c):
  """A tiny model (d 32, 1+1 layers, small heads) and a few steps."""
  g2t_p14t.smoke(c)
  c.model.head.update(hidden_size=16, ff_size=32, dropout=0.0)
  c.model.mapper.fusion_dropout = 0.0
  c.model.sst.update(sd_num=16, sd_dim=8)
  c.model.psc.final_step = 1000
  c.loss.update(kl_warmup_steps=20, gkl_warmup_steps=20)
  c.optimizer.groups = ml_collections.ConfigDict()
  c.train.batch_size = 8
  c.eval.batch_size = 8
  return c


def get_config(arg=None):
  variant = common.parse_variant(arg, ("smoke",))
  c = slt_config("workdirs/data/p14t_features", tgt_lang="de_DE", src_lang="de_DGS", text_suffix=" .",
                 fix_final_period=True, dataset="phoenix2014t")
  if variant == "smoke":
    smoke(c)
  return c
