"""Task ``g2t``: gloss-to-text translation with mBART (SLRT/MMTLB's G2T stage, which HyperSign starts from).

What the original does and this task keeps (design/HYPERSIGN.md §5, §7):

* source: a gloss sentence -> SLRT `GlossTokenizer_G2T` ids [g1..gn, `</s>`, src_lang] (lower-cased glosses,
  `gloss2ids` layout, `hypersign_jax.text.tokenizer.GlossTokenizer`), embedded by a separate gloss embedding
  table (`gloss_embedding`, pad row 1) times sqrt(d_model) (`input_embed_scale`) and fed to the mBART encoder as
  `inputs_embeds` with the padding mask;
* target: mBART SentencePiece ids in target mode ([y1..yn, `</s>`, tgt_lang]) mapped through HyperSign's pruning
  map; `labels` = the language id replaced by pad; `decoder_input_ids` = HyperSign's wrap-around shift
  (`text.tokenizer.encode_targets`);
* loss: SLRT `XentLoss` with label smoothing 0.2 (`losses/xent.py`), summed over tokens and divided by the batch
  size;
* evaluation: beam search (5 beams, length penalty 1, `max_length` 100 counting the start token) from the target
  language token only (`decoding/beam_search.py`, HF scoring); the first token is dropped, ids are un-pruned and
  detokenized with special tokens skipped (and, as transformers 4.x's slow tokenizer did by default,
  `clean_up_tokenization_spaces`); for German a final '.' glued to a word becomes ' .'; BLEU-1..4 (sacrebleu,
  tokenize none, cumulative) and ROUGE-L (tf_seq2seq) against the split's texts (`metrics/translation.py`),
  character level for CSL-Daily. Model selection: dev BLEU-4, max. Hypotheses go to
  ``<workdir>/g2t_<split>.hyp.txt`` (one per line, split order) and ``<workdir>/g2t_<split>.tsv`` (id, hyp, ref).

Text conventions (config ``data``): ``text_suffix`` is appended to every text (' .' for PHOENIX-2014-T read from
the official CSV, whose sentences lack the ' .' the SLRT files carry; training targets and references both get
it); ``fullwidth_to_ascii`` maps ，？！： to ,?!: (CSL-Daily's `data.translate`).

Tokenizer (config ``text``): ``spm_model`` is a SentencePiece model file or an HF mBART tokenizer directory
(``sentencepiece.bpe.model``); empty = train one on the training texts (deterministic, cached under
``text.cache_dir`` or ``<data.dir>/text``). The pruning map is HyperSign's (``text.prune_map`` file, or built from
the texts (+ lower-cased glosses) of ``text.prune_splits``, as the notebook does from train+dev+test).

Data (config ``data``): ``dir`` a prepared dataset directory (``python -m data_pipelines.build ...
--annotations-only``); if it does not exist, ``root`` + ``dataset`` read the official annotation layout directly
(annotations only, nothing written), or ``synthetic_preset`` builds the synthetic corpus (annotations only) into
``dir``. Only id/gloss/text are kept, in memory.

Deviations (config switches): an unknown source gloss becomes `<unk>` (the original raises); a target longer than
the largest bucket raises unless ``data.truncate``; the from-scratch gloss embedding is initialised
N(0, init_std) like the token embedding (MMTLB initialises it from mBART subunit means).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from data_pipelines import array_record_io
from data_pipelines import pipeline as pipeline_lib
from data_pipelines.batching import pick_bucket
from hypersign_jax.decoding import beam_search
from hypersign_jax.losses import xent
from hypersign_jax.metrics import translation
from hypersign_jax.models import mbart
from hypersign_jax.tasks import base
from hypersign_jax.text import pruning, spm_training
from hypersign_jax.text import tokenizer as tok

SPLITS = ("train", "dev", "test")
FULLWIDTH = str.maketrans({"，": ",", "？": "?", "！": "!", "：": ":"})
INFO_FILE = "dataset_info.json"


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------
class G2TModel(nnx.Module):
  """Gloss embedding + mBART (parameter paths `gloss_embedding`, `model.*` as SLRT's TranslationNetwork)."""

  def __init__(self, config: mbart.MBartConfig, num_gloss_ids: int, gloss_pad_id: int = tok.PAD, *,
               rngs: nnx.Rngs):
    def init(key, shape, dtype=jnp.float32):
      return nnx.initializers.normal(config.init_std)(key, shape, dtype).at[gloss_pad_id].set(0.0)

    self.gloss_embedding = nnx.Embed(num_gloss_ids, config.d_model, dtype=config.dtype, embedding_init=init,
                                     rngs=rngs)
    self.model = mbart.MBartForConditionalGeneration(config, rngs=rngs)
    self.input_embed_scale = config.embed_scale

  def encode(self, src_ids: jax.Array, src_mask: jax.Array) -> jax.Array:
    """(B, S) gloss ids and mask -> encoder states (B, S, D)."""
    embeds = self.gloss_embedding(src_ids) * jnp.asarray(self.input_embed_scale, self.model.config.dtype)
    return self.model.encode(inputs_embeds=embeds, attention_mask=src_mask)

  def __call__(self, src_ids: jax.Array, src_mask: jax.Array, decoder_input_ids: jax.Array) -> jax.Array:
    """Teacher-forced logits (B, L, V) float32."""
    return self.model.decode(decoder_input_ids, self.encode(src_ids, src_mask), src_mask)


# ---------------------------------------------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------------------------------------------
def preprocess_text(text: str, data_cfg) -> str:
  text = " ".join((text or "").split())
  if data_cfg.get("fullwidth_to_ascii", False):
    text = text.translate(FULLWIDTH)
  suffix = data_cfg.get("text_suffix", "") or ""
  if suffix and text and not text.endswith(suffix):
    text = text + suffix
  return text


def ensure_synthetic(data_cfg) -> None:
  """Builds the synthetic corpus of ``data.synthetic_preset`` (annotations only) into ``data.dir`` if missing."""
  from data_pipelines import build  # pylint: disable=import-outside-toplevel
  directory = data_cfg.dir
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
  logging.info("building the synthetic corpus (preset %r, annotations only) into %s", data_cfg.synthetic_preset,
               directory)
  try:
    build.build_dataset("synthetic", None, tmp, preset=data_cfg.synthetic_preset,
                        seed=int(data_cfg.get("synthetic_seed", 0)), annotations_only=True)
    try:
      os.replace(tmp, directory)
    except OSError:
      if not os.path.isfile(os.path.join(directory, INFO_FILE)):
        raise
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def load_annotations(data_cfg) -> dict[str, list[dict]]:
  """{split: [{'id', 'gloss', 'text'}]} from ``data.dir``, ``data.root`` or the synthetic preset."""
  directory = data_cfg.get("dir", "") or ""
  root = data_cfg.get("root", "") or ""
  if directory and not os.path.isfile(os.path.join(directory, INFO_FILE)) and not root:
    if data_cfg.get("synthetic_preset", ""):
      ensure_synthetic(data_cfg)
    else:
      raise FileNotFoundError(
          f"config key 'data.dir' = {directory!r} is not a prepared dataset directory (no {INFO_FILE}); build it "
          f"with `python -m data_pipelines.build --dataset <name> --root <official layout> --out {directory} "
          f"--annotations-only`, or set data.root to the official layout")
  out = {}
  if directory and os.path.isfile(os.path.join(directory, INFO_FILE)):
    for split in SPLITS:
      source = array_record_io.RecordSource(directory, split)
      out[split] = [{k: source[i].get(k, "") or "" for k in ("id", "gloss", "text")} for i in range(len(source))]
  elif root:
    from data_pipelines import readers  # pylint: disable=import-outside-toplevel
    reader = readers.get_reader(data_cfg.dataset, root, annotations_only=True)
    for split in SPLITS:
      out[split] = [{"id": r["id"], "gloss": r.get("gloss", "") or "", "text": r.get("text", "") or ""}
                    for r in reader.read(split)]
  else:
    raise ValueError("set config key 'data.dir' (a prepared dataset) or 'data.root' (the official layout)")
  for split, records in out.items():
    if not records:
      raise ValueError(f"split {split!r} has no samples")
    for r in records:
      r["text"] = preprocess_text(r["text"], data_cfg)
  return out


class _TokenizingIterator:
  """Wraps a checkpointable grain iterator of string batches and adds the token arrays (state passes through)."""

  def __init__(self, inner, fn):
    self._inner, self._fn = inner, fn

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return self._fn(next(self._inner))

  def get_state(self):
    return self._inner.get_state()

  def set_state(self, state):
    self._inner.set_state(state)



# ---------------------------------------------------------------------------------------------------------------
# Task
# ---------------------------------------------------------------------------------------------------------------
@base.register("g2t")
class G2TTask(base.Task):
  """Gloss-to-text translation (see the module docstring)."""

  best_metric = "bleu4"
  best_mode = "max"

  def __init__(self, config):
    super().__init__(config)
    self.records = load_annotations(config.data)
    t = config.text
    self.tgt_lang = t.tgt_lang
    self.tokenizer = tok.MBartTokenizer(self._spm_path())
    self.lang_id_orig = self.tokenizer.lang_id(t.tgt_lang)
    g = config.gloss
    if g.get("vocab", ""):
      self.glosses = tok.GlossTokenizer.load(g.vocab, g.src_lang, g.lower_case)
    else:
      self.glosses = tok.GlossTokenizer.from_gloss_strings(
          (r["gloss"] for s in g.vocab_splits for r in self.records[s]), g.src_lang, g.lower_case)
    if t.get("prune", True):
      if t.get("prune_map", ""):
        self.prune_map = pruning.PruneMap.load(t.prune_map)
      else:
        texts = [r["text"] for s in t.prune_splits for r in self.records[s]]
        if t.get("prune_glosses", True):
          texts += [r["gloss"].lower() for s in t.prune_splits for r in self.records[s]]
        self.prune_map = pruning.PruneMap.build(self.tokenizer, texts)
      self.vocab_size = self.prune_map.vocab_size
      self.lang_id = self.prune_map.new_id(self.lang_id_orig)
    else:
      self.prune_map = None
      self.vocab_size = self.tokenizer.vocab_size
      self.lang_id = self.lang_id_orig
    logging.info("g2t: spm %s (%d pieces), target vocabulary %d, %d gloss ids, %s id %d",
                 self.tokenizer.source, self.tokenizer.spm_size, self.vocab_size, len(self.glosses), t.tgt_lang,
                 self.lang_id)

  # ---- text ----------------------------------------------------------------------------------------------------
  def _cache_dir(self) -> str:
    t, d = self.config.text, self.config.data
    if t.get("cache_dir", ""):
      return t.cache_dir
    if d.get("dir", "") and os.path.isdir(d.dir) and os.access(d.dir, os.W_OK):
      return os.path.join(d.dir, "text")
    return os.path.join("workdirs", "cache", "text")

  def _spm_path(self) -> str:
    t = self.config.text
    if t.get("spm_model", ""):
      return t.spm_model
    texts = [r["text"] for r in self.records["train"]]
    if t.get("spm_with_glosses", False):
      texts += [r["gloss"].lower() for r in self.records["train"]]
    return spm_training.train_spm(texts, self._cache_dir(), vocab_size=t.vocab_size, model_type=t.model_type,
                                  character_coverage=t.character_coverage)

  def encode_text(self, text: str) -> list[int]:
    ids = self.tokenizer.encode(text, self.tgt_lang)
    return self.prune_map.prune(ids) if self.prune_map is not None else ids

  def decode_tokens(self, tokens) -> str:
    """Generated ids (start token first) -> detokenized text with the dataset's conventions."""
    ids = [int(i) for i in tokens[1:]]
    if self.prune_map is not None:
      ids = self.prune_map.unprune(ids)
    text = self.tokenizer.decode(ids, skip_special_tokens=True)
    if self.config.text.get("clean_up_tokenization_spaces", True):
      text = clean_up_tokenization(text)
    if self.config.eval.get("fix_final_period", False):
      text = translation.fix_final_period(text)
    return text

  def encode_batch(self, batch: dict) -> dict:
    """String batch from the pipeline -> + src_ids/src_mask (B, S), labels/decoder_input_ids (B, L) int32."""
    d = self.config.data
    truncate = bool(d.get("truncate", False))
    srcs, tgts = [], []
    for sid, gloss, text in zip(batch["id"], batch["gloss"], batch["text"]):
      src, tgt = self.glosses.encode(str(gloss)), self.encode_text(str(text))
      max_src, max_tgt = max(d.src_buckets), max(d.tgt_buckets)
      if len(src) > max_src or len(tgt) > max_tgt:
        if not truncate:
          raise ValueError(f"sample {sid!r}: {len(src)} source / {len(tgt)} target tokens, longer than the "
                           f"largest bucket (data.src_buckets {tuple(d.src_buckets)}, data.tgt_buckets "
                           f"{tuple(d.tgt_buckets)}); raise them or set data.truncate=True")
        src = src[:max_src - 2] + src[-2:] if len(src) > max_src else src
        tgt = tgt[:max_tgt - 2] + tgt[-2:] if len(tgt) > max_tgt else tgt
      srcs.append(src)
      tgts.append(tgt)
    longest_src, longest_tgt = max(len(s) for s in srcs), max(len(t) for t in tgts)
    if "global_gloss" in batch:  # multi-process: every process must pick the buckets of the whole global batch
      longest_src = max([longest_src] + [min(len(self.glosses.encode(str(g))), max(d.src_buckets))
                                         for g in batch["global_gloss"]])
      longest_tgt = max([longest_tgt] + [min(len(self.encode_text(str(t))), max(d.tgt_buckets))
                                         for t in batch["global_text"]])
    s_len = pick_bucket(longest_src, sorted(d.src_buckets))
    t_len = pick_bucket(longest_tgt, sorted(d.tgt_buckets))
    src_ids, src_mask = tok.pad_batch(srcs, s_len, self.glosses.pad_id)
    target = tok.encode_targets(tgts, self.lang_id, t_len)
    out = dict(batch)
    out.update(src_ids=src_ids, src_mask=src_mask, labels=target["labels"],
               decoder_input_ids=target["decoder_input_ids"])
    return out

  # ---- model ---------------------------------------------------------------------------------------------------
  def model_config(self) -> mbart.MBartConfig:
    m = self.config.model
    fields = {f: m[f] for f in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                                "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "dropout",
                                "attention_dropout", "activation_dropout", "max_position_embeddings",
                                "scale_embedding", "init_std", "activation_function", "remat", "remat_policy")
              if f in m}
    try:
      dtype = jnp.dtype(self.config.dtype)
    except TypeError as e:
      raise ValueError(f"config key 'dtype' = {self.config.dtype!r} is not a dtype name") from e
    return mbart.MBartConfig(vocab_size=self.vocab_size, dtype=dtype, **fields)

  def build_model(self, rngs):
    return G2TModel(self.model_config(), len(self.glosses), self.glosses.pad_id, rngs=rngs)

  def load_weights(self, model: G2TModel) -> None:
    pretrained = self.config.model.get("pretrained", "")
    if pretrained:
      self._load_pretrained(model, pretrained)

  def _load_pretrained(self, model: G2TModel, directory: str) -> None:
    """HF mBART weights (`pytorch_model.bin` / `model.safetensors`), pruned to our vocabulary if they are full."""
    from checkpoints_conversion import hf_mbart  # pylint: disable=import-outside-toplevel
    sd = _read_state_dict(directory)
    cfg = model.model.config
    tied = next((k for k in hf_mbart.TIED_EMBEDDING_KEYS if k in sd), None)
    rows = None if tied is None else sd[tied].shape[0]
    if rows != cfg.vocab_size and self.prune_map is not None and rows == self.tokenizer.vocab_size:
      keep = self.prune_map.kept_ids
      for k in hf_mbart.TIED_EMBEDDING_KEYS:
        if k in sd:
          sd[k] = sd[k][keep]
      if "final_logits_bias" in sd:
        sd["final_logits_bias"] = sd["final_logits_bias"][:, keep]
    hf_mbart.load_into(model.model, hf_mbart.convert(sd, cfg))
    if "gloss_embedding.weight" in sd:
      table = sd["gloss_embedding.weight"]
      if table.shape != model.gloss_embedding.embedding.shape:
        raise ValueError(f"{directory}: gloss_embedding.weight has shape {table.shape}, the gloss vocabulary "
                         f"needs {model.gloss_embedding.embedding.shape} (set gloss.vocab to its gloss2ids)")
      model.gloss_embedding.embedding.value = jnp.asarray(table)
    logging.info("g2t: loaded mBART weights from %s", directory)

  # ---- data ----------------------------------------------------------------------------------------------------
  def _pipeline_config(self, global_batch: int) -> dict:
    cfg = self.config.data.pipeline.to_dict()
    cfg["batch_size"] = int(global_batch)
    return cfg

  def train_size(self):
    return len(self.records["train"])

  def train_iterator(self, seed, batch_size, process_index=0, process_count=1):
    cfg = self._pipeline_config(batch_size * process_count)
    inner = pipeline_lib.make_train_iterator(self.records["train"], "gloss_text", cfg, seed % 2**32,
                                             process_index, process_count)
    return _TokenizingIterator(inner, self.encode_batch)

  def eval_batches(self, split, batch_size):
    cfg = self._pipeline_config(batch_size)
    # The whole global batches on every process: the trainer's evaluation is replicated (trainer.evaluate).
    batches = pipeline_lib.make_eval_batches(self.records[split], "gloss_text", cfg)
    return (self.encode_batch(b) for b in batches)

  # ---- computation -----------------------------------------------------------------------------------------------
  def loss_fn(self, model, batch):
    logits = model(batch["src_ids"], batch["src_mask"], batch["decoder_input_ids"])
    labels = batch["labels"]
    smoothing = float(self.config.loss.label_smoothing)
    total = xent.smoothed_xent_sum(logits, labels, smoothing=smoothing, pad_id=tok.PAD)
    loss = total / labels.shape[0]
    tokens = jnp.maximum(jnp.sum(labels != tok.PAD), 1)
    nll = xent.smoothed_xent_sum(jax.lax.stop_gradient(logits), labels, smoothing=0.0, pad_id=tok.PAD)
    return loss, {"nll_per_token": nll / tokens, "tokens_per_batch": tokens.astype(jnp.float32)}

  def beam_config(self) -> beam_search.BeamSearchConfig:
    e = self.config.eval
    return beam_search.BeamSearchConfig(start_token_id=self.lang_id, max_length=int(e.max_length),
                                        num_beams=int(e.num_beams), length_penalty=float(e.length_penalty),
                                        eos_token_id=tok.EOS, pad_token_id=tok.PAD)

  def eval_fn(self, model, batch):
    enc = model.encode(batch["src_ids"], batch["src_mask"])
    tokens, scores = beam_search.generate(model.model, enc, batch["src_mask"], self.beam_config())
    logits = model.model.decode(batch["decoder_input_ids"], enc, batch["src_mask"])
    labels = batch["labels"]
    nll = xent.smoothed_xent_per_token(logits, labels, smoothing=0.0, pad_id=tok.PAD)
    return {"tokens": tokens, "scores": scores, "nll": jnp.sum(nll, axis=-1),
            "ntok": jnp.sum(labels != tok.PAD, axis=-1)}

  # ---- host side -------------------------------------------------------------------------------------------------
  def compute_metrics(self, split, batches, outputs, workdir):
    ids, hyps, refs = [], [], []
    nll, ntok = 0.0, 0
    for b, o in zip(batches, outputs):
      valid = np.asarray(b["valid"]) > 0
      for i in np.flatnonzero(valid):
        ids.append(str(b["id"][i]))
        hyps.append(self.decode_tokens(np.asarray(o["tokens"][i])))
        refs.append(str(b["text"][i]))
      nll += float(np.sum(np.asarray(o["nll"])[valid]))
      ntok += int(np.sum(np.asarray(o["ntok"])[valid]))
    e = self.config.eval
    scores = translation.translation_scores(hypotheses=hyps, references=refs, level=e.level,
                                            rouge_variant=e.rouge_variant)
    if workdir and jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, f"g2t_{split}.hyp.txt"), "w", encoding="utf-8") as f:
        f.write("".join(h + "\n" for h in hyps))
      with open(os.path.join(workdir, f"g2t_{split}.tsv"), "w", encoding="utf-8") as f:
        f.write("id\thypothesis\treference\n")
        f.write("".join(f"{i}\t{h}\t{r}\n" for i, h, r in zip(ids, hyps, refs)))
    out = {k: v for k, v in scores.items()}
    out.update(nll_per_token=nll / max(ntok, 1), num_samples=len(hyps),
               unknown_glosses=self.glosses.num_unknown)
    return out


def clean_up_tokenization(text: str) -> str:
  """transformers 4.x `clean_up_tokenization` (applied by its slow tokenizers' `decode` by default)."""
  for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
               (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
    text = text.replace(a, b)
  return text


def _read_state_dict(directory: str) -> dict[str, np.ndarray]:
  """HF mBART weights of `directory`; an SLRT/HyperSign checkpoint's `translation_network.model.` prefix is
  reduced to HF's names (`gloss_embedding.weight` is kept under that name)."""
  st = os.path.join(directory, "model.safetensors")
  pt = os.path.join(directory, "pytorch_model.bin")
  if os.path.isfile(st):
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    sd = {k: np.asarray(v, np.float32) for k, v in load_file(st).items()}
  elif os.path.isfile(pt):
    import torch  # pylint: disable=import-outside-toplevel
    raw = torch.load(pt, map_location="cpu", weights_only=True)
    raw = raw.get("model_state", raw)
    sd = {k: v.float().numpy() for k, v in raw.items() if hasattr(v, "float")}
  else:
    raise FileNotFoundError(f"model.pretrained = {directory!r}: no model.safetensors or pytorch_model.bin there")
  sd = {k.removeprefix("translation_network."): v for k, v in sd.items()}
  if "model.model.shared.weight" in sd:
    sd = {(k.removeprefix("model.") if k.startswith("model.") else k): v for k, v in sd.items()}
  return sd
