"""Task ``slt``: HyperSign sign-to-text translation from pre-extracted RGB + keypoint features (S2T stage).

Model: `hypersign_jax.models.slt.HyperSignSLT` (two VisualHeads -> VLMapper/DSG -> PSC views -> mBART, SST).
Text side, tokenizer, pruning map, target tensors, decoding conventions and BLEU/ROUGE scoring are the G2T task's
(`tasks/g2t.py`; this task subclasses it), so an S2T run and the G2T run it starts from share one vocabulary.

Training loss (design/HYPERSIGN.md §4; B = batch size, every term a sum divided by B):

  total = gkl_weight * CE_ls(view 1)/B + CE_ls(view 2)/B + kl_loss + gkl_loss + SST_loss
          [+ recognition_weight * (CTC_rgb + CTC_keypoint), weight 0 in the original]

with CE_ls SLRT's label-smoothed XentLoss (`losses/xent.py`), `kl_loss` the symmetric decoder-distribution KL
(x kl_factor warmed up 0 -> 5 over 4000 steps), `gkl_loss` the symmetric KL of softmaxes over the encoder
channels (0 -> 1 over 4000 steps) and the SST contrastive loss (`losses/hypersign.auxiliary_losses`). The
warm-up step is the model's training-forward counter (the original's `set_num_updates(global_step)`).
The zero-weighted CTC of the original is only computed when ``loss.ctc`` is set (it needs the recognition
gloss vocabulary of the dataset directory; the original always computes it, at weight 0).

Evaluation (no references needed to translate): features -> heads -> mapper -> F_f -> suffix -> encoder -> beam
search (5 beams, length penalty 1, ``eval.max_length`` counting the start token, start = target-language token
only); BLEU-1..4 and ROUGE-L with SLRT's conventions (model selection: dev ``bleu4``, max); also the
teacher-forced NLL per token of the F_f view. Hypotheses go to ``<workdir>/slt_<split>.hyp.txt`` and
``<workdir>/slt_<split>.tsv`` (id, hypothesis, reference).

Data (config ``data``): ``dir`` a prepared dataset directory whose records carry ``features`` {'rgb': (T, D),
'keypoint': (T, D)} (the SLRT pickle reader, ``--mode extract``, or the synthetic STAND-IN features of
`data_pipelines/synthetic_features.py`, built into ``dir`` on first use when ``data.synthetic_features_preset`` is
set). Both streams of a sample must have the same T (as the original's features).

mBART initialisation: ``model.init_from_g2t`` = a G2T workdir: its best checkpoint's mBART parameters (and
`final_logits_bias`) replace ours (the original strictly loads the G2T `translation_network.*`); the vocabulary
must match (same tokenizer / pruning map). Or ``model.pretrained`` = an HF mBART directory (as the G2T task).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from data_pipelines import array_record_io
from data_pipelines import pipeline as pipeline_lib
from data_pipelines import vocab as vocab_lib
from data_pipelines.batching import pick_bucket
from hypersign_jax.decoding import beam_search
from hypersign_jax.losses import ctc as ctc_lib
from hypersign_jax.losses import hypersign as hs_losses
from hypersign_jax.losses import xent
from hypersign_jax.models import fusion, mbart, psc, slt, sst, visual_head
from hypersign_jax.tasks import base, g2t
from hypersign_jax.text import tokenizer as tok
from hypersign_jax.training import checkpointing

GLOSS_VOCAB_FILE = "gloss_vocab.json"


# ---------------------------------------------------------------------------------------------------------------
# Loss (pure function of the model outputs; used by the task and by the PyTorch equivalence test)
# ---------------------------------------------------------------------------------------------------------------
def loss_config(loss_cfg) -> hs_losses.HyperSignLossConfig:
  return hs_losses.HyperSignLossConfig(
      kl_factor=float(loss_cfg.get("kl_factor", 5.0)), kl_warmup_steps=int(loss_cfg.get("kl_warmup_steps", 4000)),
      gkl_factor=float(loss_cfg.get("gkl_factor", 1.0)),
      gkl_warmup_steps=int(loss_cfg.get("gkl_warmup_steps", 4000)),
      sst_weight=float(loss_cfg.get("sst_weight", 1.0)), mask_padding=bool(loss_cfg.get("mask_padding", False)))


def s2t_loss(outputs: dict, labels: jax.Array, loss_cfg, *, gloss_labels: jax.Array | None = None,
             gloss_lengths: jax.Array | None = None, pad_id: int = tok.PAD) -> tuple[jax.Array, dict]:
  """The full HyperSign S2T training loss from `HyperSignSLT.__call__` outputs and the text labels (B, L).

  Returns (total, metrics) with every term (`ce_view1`, `ce_view2`, `kl_loss`, `gkl_loss`, `sst_loss`,
  `ctc_loss`, factors, PSC lambdas)."""
  batch = labels.shape[0]
  smoothing = float(loss_cfg.get("label_smoothing", 0.2))
  logits1, logits2 = outputs["logits"]
  ce1 = xent.smoothed_xent_sum(logits1, labels, smoothing=smoothing, pad_id=pad_id) / batch
  ce2 = xent.smoothed_xent_sum(logits2, labels, smoothing=smoothing, pad_id=pad_id) / batch
  aux = hs_losses.auxiliary_losses(loss_config(loss_cfg), outputs["step"], decoder_logits=outputs["logits"],
                                   encoder_hidden=outputs["encoder"], sst_logits=outputs["sst_logits"],
                                   target_mask=labels != pad_id, encoder_mask=outputs["encoder_mask"])
  total = float(loss_cfg.get("gkl_weight", 1.0)) * ce1 + ce2 + aux["kl_loss"] + aux["gkl_loss"] + aux["sst_loss"]
  ctc_total = jnp.zeros((), jnp.float32)
  if loss_cfg.get("ctc", False):
    if gloss_labels is None:
      raise ValueError("loss.ctc is set but the batch has no gloss labels")
    for logits in outputs["gloss_logits"].values():
      ctc_total = ctc_total + ctc_lib.mean_ctc_loss(logits, outputs["lengths"], gloss_labels, gloss_lengths)[0]
    total = total + float(loss_cfg.get("recognition_weight", 0.0)) * ctc_total
  metrics = {"ce_view1": ce1, "ce_view2": ce2, "ctc_loss": ctc_total,
             "lambda1": outputs["lambda1"], "lambda2": outputs["lambda2"], "psc_sigma": outputs["sigma"],
             **{k: aux[k] for k in ("kl_loss", "gkl_loss", "sst_loss", "kl_factor", "gkl_factor")}}
  return total, metrics


# ---------------------------------------------------------------------------------------------------------------
# G2T checkpoint -> mBART parameters
# ---------------------------------------------------------------------------------------------------------------
def _abstract(meta: Any) -> Any:
  def one(m):
    if hasattr(m, "shape") and hasattr(m, "dtype"):
      return jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)
    return m
  return jax.tree.map(one, meta, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))


def read_g2t_mbart(workdir: str) -> dict:
  """The mBART subtree (`model.*` of the G2T model: parameters + `final_logits_bias`) of a G2T workdir's best
  checkpoint, as a nested pure dict. The restore target is the checkpoint's own state layout (so any G2T
  optimizer configuration restores)."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints", "best")):
    raise FileNotFoundError(f"model.init_from_g2t = {workdir!r}: no checkpoints/best there (a G2T training "
                            "workdir is expected)")
  ckpts = checkpointing.Checkpoints(workdir)
  try:
    step = ckpts.best_step()
    if step is None:
      raise FileNotFoundError(f"model.init_from_g2t = {workdir!r}: checkpoints/best is empty")
    target = _abstract(ckpts.best.item_metadata(step)["state"])
    state, _, _ = ckpts.restore("best", target)
  finally:
    ckpts.close()
  params, other = state.get("params", {}), state.get("model_state", {})
  if "model" not in params:
    raise ValueError(f"{workdir!r}: the best checkpoint has no 'model' parameters (keys {sorted(params)}); is it "
                     "a G2T run?")
  out = _int_keys(jax.tree.map(np.asarray, dict(params["model"])))
  bias = _int_keys((other.get("model") or {}).get("final_logits_bias"))
  if bias is not None:
    out["final_logits_bias"] = np.asarray(bias)
  return out


def _int_keys(tree):
  """Restored nnx state -> plain nested dict: list indices as ints, `{'value': x}` variable wrappers unwrapped."""
  if isinstance(tree, dict):
    if set(tree) == {"value"}:
      return _int_keys(tree["value"])
    return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in tree.items()}
  return tree


def load_mbart_params(model: mbart.MBartForConditionalGeneration, params: dict, source: str) -> None:
  """Writes a pure mBART dict into `model`, with a message naming `source` when names or shapes differ."""
  from checkpoints_conversion import hf_mbart  # pylint: disable=import-outside-toplevel
  params = _int_keys(params)
  if "final_logits_bias" not in params:
    params["final_logits_bias"] = np.zeros((1, model.config.vocab_size), np.float32)
  try:
    hf_mbart.load_into(model, params)
  except (KeyError, ValueError) as e:
    raise ValueError(f"{source}: the mBART weights do not fit this model ({e}); the G2T run must use the same "
                     "mBART geometry and the same text vocabulary (tokenizer and pruning map)") from e


# ---------------------------------------------------------------------------------------------------------------
# Task
# ---------------------------------------------------------------------------------------------------------------
@base.register("slt")
class SLTTask(g2t.G2TTask):
  """HyperSign S2T (see the module docstring)."""

  best_metric = "bleu4"
  best_mode = "max"

  def __init__(self, config):
    d = config.data
    preset = d.get("synthetic_features_preset", "")
    if preset and d.get("dir", ""):
      from data_pipelines import synthetic_features  # pylint: disable=import-outside-toplevel
      synthetic_features.ensure_features_dataset(
          d.dir, preset, seed=int(d.get("synthetic_seed", 0)), dim=int(d.get("synthetic_features_dim", 64)),
          noise=float(d.get("synthetic_features_noise", synthetic_features.DEFAULT_NOISE)))
    super().__init__(config)
    self.streams = tuple(config.model.streams)
    self.sources = {s: array_record_io.RecordSource(d.dir, s) for s in g2t.SPLITS}
    first = self.sources["train"][0]
    feats = first.get("features") or {}
    missing = [s for s in self.streams if s not in feats]
    if missing:
      raise ValueError(f"data.dir {d.dir!r}: sample {first['id']!r} has feature streams {sorted(feats)}, "
                       f"model.streams needs {missing}")
    self.input_sizes = tuple(int(feats[s].shape[1]) for s in self.streams)
    vocab_path = os.path.join(d.dir, GLOSS_VOCAB_FILE)
    self.gloss_vocab = vocab_lib.GlossVocab.load(vocab_path) if os.path.isfile(vocab_path) else None
    if config.loss.get("ctc", False) and self.gloss_vocab is None:
      raise FileNotFoundError(f"loss.ctc needs the recognition vocabulary {vocab_path!r}")
    self.num_recognition_classes = (int(config.model.get("num_recognition_classes", 0) or 0)
                                    or (self.gloss_vocab.num_classes if self.gloss_vocab is not None else 1))

  # ---- model ---------------------------------------------------------------------------------------------------
  def slt_config(self) -> slt.SLTConfig:
    m = self.config.model
    mb = self.model_config()
    dtype = mb.dtype
    head = visual_head.VisualHeadConfig(
        hidden_size=int(m.head.hidden_size), ff_size=int(m.head.ff_size), ff_kernel_size=int(m.head.ff_kernel_size),
        num_classes=self.num_recognition_classes, dropout=float(m.head.dropout),
        mask_padding=bool(m.head.mask_padding), running_var_unbiased=bool(m.head.running_var_unbiased), dtype=dtype)
    mapper = fusion.VLMapperConfig(
        type=m.mapper.type, in_features=int(m.head.hidden_size), num_glosses=self.num_recognition_classes,
        out_features=mb.d_model, fusion=m.mapper.fusion, fusion_dropout=float(m.mapper.fusion_dropout),
        global_local_reverse=bool(m.mapper.global_local_reverse), dtype=dtype)
    psc_cfg = psc.PSCConfig(initial_std=float(m.psc.initial_std), final_std=float(m.psc.final_std),
                            final_step=int(m.psc.final_step), mean=float(m.psc.mean),
                            view2_source=m.psc.view2_source, enabled=bool(m.psc.enabled))
    sst_cfg = sst.SSTConfig(video_dim=mb.d_model, text_dim=mb.d_model, sd_num=int(m.sst.sd_num),
                            sd_dim=int(m.sst.sd_dim), temperature=float(m.sst.temperature), att_func=m.sst.att_func,
                            masked_pooling=bool(m.sst.masked_pooling), dtype=dtype)
    return slt.SLTConfig(streams=self.streams, input_sizes=self.input_sizes, head=head, mapper=mapper,
                         psc=psc_cfg, sst=sst_cfg, mbart=mb, lang_id=self.lang_id, eos_id=tok.EOS)

  def build_model(self, rngs):
    return slt.HyperSignSLT(self.slt_config(), rngs=rngs)

  def load_weights(self, model: slt.HyperSignSLT) -> None:
    m = self.config.model
    if m.get("pretrained", ""):
      sd = g2t._read_state_dict(m.pretrained)  # pylint: disable=protected-access
      from checkpoints_conversion import hf_mbart  # pylint: disable=import-outside-toplevel
      params = hf_mbart.convert({k: v for k, v in sd.items() if k != "gloss_embedding.weight"}, model.mbart.config)
      load_mbart_params(model.mbart, params, f"model.pretrained = {m.pretrained!r}")
    if m.get("init_from_g2t", ""):
      load_mbart_params(model.mbart, read_g2t_mbart(m.init_from_g2t), f"model.init_from_g2t = {m.init_from_g2t!r}")
      logging.info("slt: mBART initialised from the G2T checkpoint in %s", m.init_from_g2t)

  # ---- data ----------------------------------------------------------------------------------------------------
  def _features_pipeline_config(self, global_batch: int) -> dict:
    cfg = self.config.data.pipeline.to_dict()
    cfg["batch_size"] = int(global_batch)
    cfg["streams"] = list(self.streams)
    return cfg

  def _recognition_vocab(self):
    return self.gloss_vocab if self.config.loss.get("ctc", False) else None

  def encode_batch(self, batch: dict) -> dict:
    """Features batch -> + text targets `labels` / `decoder_input_ids` (B, L); gloss labels (if any) are renamed
    `gloss_labels` / `gloss_lengths` / `gloss_mask`; `text` holds the preprocessed references."""
    d = self.config.data
    out = dict(batch)
    for old, new in (("labels", "gloss_labels"), ("label_lengths", "gloss_lengths"), ("label_mask", "gloss_mask")):
      if old in out:
        out[new] = out.pop(old)
    texts = [g2t.preprocess_text(str(t), d) for t in batch["text"]]
    tgts = []
    max_tgt = max(d.tgt_buckets)
    for sid, text in zip(batch["id"], texts):
      ids = self.encode_text(text)
      if len(ids) > max_tgt:
        if not d.get("truncate", False):
          raise ValueError(f"sample {sid!r}: {len(ids)} target tokens, more than the largest bucket "
                           f"(data.tgt_buckets {tuple(d.tgt_buckets)}); raise it or set data.truncate=True")
        ids = ids[:max_tgt - 2] + ids[-2:]
      tgts.append(ids)
    longest = max(len(t) for t in tgts)
    if "global_text" in batch:  # multi-process: every process must pick the bucket of the whole global batch
      longest = max([longest] + [min(len(self.encode_text(g2t.preprocess_text(str(t), d))), max_tgt)
                                 for t in batch["global_text"]])
    target = tok.encode_targets(tgts, self.lang_id, pick_bucket(longest, sorted(d.tgt_buckets)))
    out.update(text=np.array(texts, dtype=object), labels=target["labels"],
               decoder_input_ids=target["decoder_input_ids"])
    return out

  def train_iterator(self, seed, batch_size, process_index=0, process_count=1):
    cfg = self._features_pipeline_config(batch_size * process_count)
    inner = pipeline_lib.make_train_iterator(self.sources["train"], "features", cfg, seed % 2**32, process_index,
                                             process_count, vocab=self._recognition_vocab())
    return g2t._TokenizingIterator(inner, self.encode_batch)  # pylint: disable=protected-access

  def eval_batches(self, split, batch_size):
    cfg = self._features_pipeline_config(batch_size)
    # The whole global batches on every process: the trainer's evaluation is replicated (trainer.evaluate).
    batches = pipeline_lib.make_eval_batches(self.sources[split], "features", cfg, vocab=self._recognition_vocab())
    return (self.encode_batch(b) for b in batches)

  # ---- computation -----------------------------------------------------------------------------------------------
  def loss_fn(self, model, batch):
    outputs = model(batch["features"], batch["feature_mask"], batch["decoder_input_ids"])
    total, metrics = s2t_loss(outputs, batch["labels"], self.config.loss, gloss_labels=batch.get("gloss_labels"),
                              gloss_lengths=batch.get("gloss_lengths"))
    labels = batch["labels"]
    tokens = jnp.maximum(jnp.sum(labels != tok.PAD), 1)
    nll = xent.smoothed_xent_sum(jax.lax.stop_gradient(outputs["logits"][0]), labels, smoothing=0.0, pad_id=tok.PAD)
    metrics.update(nll_per_token=nll / tokens, tokens_per_batch=tokens.astype(jnp.float32))
    return total, metrics

  def translate(self, model, features, feature_mask) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Inference without references: (tokens (B, max_length), scores (B,), encoder states, encoder mask)."""
    enc, mask = model.encode_fused(features, feature_mask)
    tokens, scores = beam_search.generate(model.mbart, enc, mask, self.beam_config())
    return tokens, scores, enc, mask

  def eval_fn(self, model, batch):
    tokens, scores, enc, mask = self.translate(model, batch["features"], batch["feature_mask"])
    logits, _ = model.decode(batch["decoder_input_ids"], enc, mask)
    labels = batch["labels"]
    nll = xent.smoothed_xent_per_token(logits, labels, smoothing=0.0, pad_id=tok.PAD)
    return {"tokens": tokens, "scores": scores, "nll": jnp.sum(nll, axis=-1),
            "ntok": jnp.sum(labels != tok.PAD, axis=-1)}

  # ---- host side -------------------------------------------------------------------------------------------------
  def compute_metrics(self, split, batches, outputs, workdir):
    metrics = super().compute_metrics(split, batches, outputs, None)
    metrics.pop("unknown_glosses", None)
    if workdir and jax.process_index() == 0:
      ids, hyps, refs = [], [], []
      for b, o in zip(batches, outputs):
        for i in np.flatnonzero(np.asarray(b["valid"]) > 0):
          ids.append(str(b["id"][i]))
          hyps.append(self.decode_tokens(np.asarray(o["tokens"][i])))
          refs.append(str(b["text"][i]))
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, f"slt_{split}.hyp.txt"), "w", encoding="utf-8") as f:
        f.write("".join(h + "\n" for h in hyps))
      with open(os.path.join(workdir, f"slt_{split}.tsv"), "w", encoding="utf-8") as f:
        f.write("id\thypothesis\treference\n")
        f.write("".join(f"{i}\t{h}\t{r}\n" for i, h, r in zip(ids, hyps, refs)))
    return metrics
