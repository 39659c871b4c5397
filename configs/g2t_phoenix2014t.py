"""Gloss-to-text (G2T) on PHOENIX-2014-T: glosses -> German with mBART (SLRT/MMTLB's G2T stage).

Data: a prepared directory (`python -m data_pipelines.build --dataset phoenix2014t --root <PHOENIX-2014-T>
--out workdirs/data/p14t_ann --annotations-only`), or the official layout read directly with
`--config.data.root=<PHOENIX-2014-T>` (annotations only, nothing written). Texts get the SLRT files' ' .'
suffix (targets and references); the decoder output's final '.' is rewritten to ' .' (EVALUATION.md).

Default: a from-scratch small mBART for ~7k sentences (d 256, 3+3 layers, 4 heads, FFN 1024, dropout 0.3 /
attention 0.1) on a SentencePiece unigram model (2000 pieces) trained on the training texts, HyperSign's pruning
map, label smoothing 0.2, beam 5.

Variants:
  cc25:  the paper-style model: mbart-large-cc25 geometry (d 1024, 12+12 layers, 16 heads, FFN 4096), dropout
         0.3 / 0.1, Adam 1e-5, batch 8, 80 epochs (SLRT phoenix-2014t_g2t.yaml). Set
         --config.text.spm_model=<mBART dir> and --config.model.pretrained=<mBART dir> (HF layout:
         sentencepiece.bpe.model, pytorch_model.bin or model.safetensors; full cc25 weights are pruned with the
         map built here, or give HyperSign's pruned mBart_de with --config.text.prune_map=<dir>/map_ids.pkl and
         --config.gloss.vocab=<dir>/gloss2ids.pkl).
  word:  the real-text benchmark in the report (from scratch, 2 CPU cores, about 72 min): word-level targets (a
         SentencePiece `word` model over the training texts, every training word), 2+2 layers, Adam 1e-3 without
         weight decay, label smoothing 0.1, 35 epochs, dev BLEU every epoch from epoch 15 (about 45 s each here),
         those 21 checkpoints kept (about 1 GB).
  cpu:   a model sized for a couple of shared CPU cores (d 128, 2+2 layers, 4 heads, FFN 512, 1000 pieces,
         16 epochs, dev BLEU every 2 epochs, beam search up to 64 tokens); an earlier, shorter benchmark.
  smoke: a tiny model and a few steps (for checking a prepared directory end to end).
"""
import ml_collections

from configs import common


def g2t_config(data_dir: str, *, tgt_lang: str, src_lang: str, text_suffix: str = "", level: str = "word",
               fix_final_period: bool = False, fullwidth_to_ascii: bool = False, dataset: str = ""):
  """The fields of the g2t task with the from-scratch small model (shared by every G2T config)."""
  c = common.base_config("g2t")
  c.data = ml_collections.ConfigDict(dict(
      dir=data_dir, root="", dataset=dataset, synthetic_preset="", synthetic_seed=0,
      text_suffix=text_suffix, fullwidth_to_ascii=fullwidth_to_ascii,
      src_buckets=(16, 32), tgt_buckets=(48, 96), truncate=False,
      pipeline=ml_collections.ConfigDict(dict(read_threads=1, prefetch_batches=2)),
  ))
  c.text = ml_collections.ConfigDict(dict(
      spm_model="", cache_dir="", vocab_size=2000, model_type="unigram", character_coverage=1.0,
      spm_with_glosses=False, tgt_lang=tgt_lang, prune=True, prune_map="", prune_splits=("train", "dev", "test"),
      prune_glosses=True, clean_up_tokenization_spaces=True,
  ))
  c.gloss = ml_collections.ConfigDict(dict(vocab="", vocab_splits=("train", "dev", "test"), src_lang=src_lang,
                                           lower_case=True))
  c.model = ml_collections.ConfigDict(dict(
      d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4,
      encoder_ffn_dim=1024, decoder_ffn_dim=1024, dropout=0.3, attention_dropout=0.1, activation_dropout=0.0,
      max_position_embeddings=256, scale_embedding=True, init_std=0.02, activation_function="gelu",
      pretrained="",
      remat="none",       # 'layer': rematerialise each mBART encoder/decoder layer in the backward pass
      remat_policy="",    # jax.checkpoint policy: '' (save nothing) | 'dots_saveable' | ... (models/remat.py)
  ))
  c.loss = ml_collections.ConfigDict(dict(label_smoothing=0.2))
  c.eval = ml_collections.ConfigDict(dict(
      metric="bleu4", mode="max", batch_size=32, final_splits=("dev", "test"), num_beams=5, length_penalty=1.0,
      max_length=100, level=level, rouge_variant="tf_seq2seq", fix_final_period=fix_final_period))
  c.train.batch_size = 32
  c.train.num_epochs = 40
  c.train.log_every = 50
  c.train.eval_every_epochs = 2
  c.optimizer.name = "adam"
  c.optimizer.lr = 5e-4
  c.optimizer.b2 = 0.998
  c.optimizer.weight_decay = 1e-3
  c.optimizer.clip_grad_norm = 1.0
  c.schedule.name = "cosine"
  c.schedule.unit = "epoch"
  c.schedule.total = 40
  c.schedule.warmup = 500
  return c


def cc25(c):
  """mbart-large-cc25 geometry and SLRT's G2T optimisation (see the module docstring)."""
  c.model.update(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                 decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, dropout=0.3,
                 attention_dropout=0.1, max_position_embeddings=1024)
  c.train.batch_size = 8
  c.train.num_epochs = 80
  c.train.eval_every_epochs = 1
  c.optimizer.lr = 1e-5
  c.optimizer.clip_grad_norm = 0.0
  c.schedule.name = "cosine"
  c.schedule.unit = "epoch"
  c.schedule.total = 80
  c.schedule.warmup = 0
  c.eval.batch_size = 8
  return c


def smoke(c):
  c.model.update(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, dropout=0.1,
                 attention_dropout=0.0, max_position_embeddings=64)
  c.text.vocab_size = 100
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.eval_every_steps = 0
  c.train.eval_every_epochs = 1000  # evaluate once, at the end
  c.train.tensorboard = False
  c.schedule.name = "constant"
  c.schedule.warmup = 0
  c.optimizer.lr = 3e-3
  c.eval.max_length = 32
  c.eval.final_splits = ("dev",)
  return c


def get_config(arg=None):
  variant = common.parse_variant(arg, ("cc25", "word", "cpu", "smoke"))
  c = g2t_config("workdirs/data/p14t_ann", tgt_lang="de_DE", src_lang="de_DGS", text_suffix=" .",
                 fix_final_period=True, dataset="phoenix2014t")
  if variant == "cc25":
    cc25(c)
  elif variant == "word":
    c.text.update(model_type="word", vocab_size=3500)  # fewer words in the training texts: all of them (~2.9k)
    c.model.update(encoder_layers=2, decoder_layers=2)
    c.optimizer.update(lr=1e-3, weight_decay=0.0)
    c.loss.label_smoothing = 0.1
    c.train.num_epochs = 35
    c.schedule.total = 35
    c.train.eval_every_epochs = 1            # model selection on dev BLEU-4 after every epoch ...
    c.train.eval_from_epochs = 15            # ... from epoch 15
    c.train.keep_checkpoints = 21            # every evaluated epoch stays, for --mode eval --average_last
  elif variant == "cpu":
    c.model.update(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512, dropout=0.2)
    c.text.vocab_size = 1000
    c.data.tgt_buckets = (32, 48, 96)
    c.train.num_epochs = 16
    c.schedule.total = 16
    c.schedule.warmup = 300
    c.optimizer.lr = 1e-3
    c.eval.max_length = 64
    c.eval.batch_size = 64
  elif variant == "smoke":
    smoke(c)
    c.train.batch_size = 8
    c.eval.batch_size = 16
  return c
