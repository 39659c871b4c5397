"""Task ``cslr``: continuous sign language recognition (video -> glosses) with SlowFastSign, trained with CTC.

The original's training objective and evaluation (design/SLOWFASTSIGN.md §1 "Loss weights", §3, §4), kept:

* per path p (main, and in training the PFE paths slow and fast): ``SeqCTC * CTC(seq_p) + ConvCTC * CTC(conv_p)
  + Dist * SeqKD(conv_p <- stop_gradient(seq_p))`` with the path's OWN BiLSTM as teacher; total = L_main +
  Slow * L_slow + Fast * L_fast with weights {SeqCTC 1, ConvCTC 1, Dist 25, Slow 0.25, Fast 0.25} (the README
  command's effective weights; ``loss.slow = loss.fast = 0`` gives the YAML-only behaviour);
* CTC: per-sequence summed NLL averaged over the batch, float32 (``losses/ctc.py``); SeqKD T = 8, blank dropped,
  averaged over the original's frames (``losses/distill.py``; ``loss.kd_mask``);
* evaluation decodes the main BiLSTM's logits with a beam-10 CTC prefix beam search (ctcdecode semantics, repeats
  merged again afterwards), cleans hypotheses with the dataset's rule set (``eval.cleanup``: 'phoenix2014' for both
  PHOENIX sets as the original, 'none' for CSL-Daily), scores them against the split's STM with the sclite-style
  scorer (``metrics/wer.py``: ins 3 / del 3 / sub 4, hypothesis repeats merged, empty -> ``[EMPTY]``) and writes
  the raw hypotheses as ``<workdir>/hyp_<split>.ctm`` (the original's CTM layout).

Deliberate differences (config switches, listed in docs/DEVIATIONS.md): an infeasible CTC sample (labels +
adjacent repeats longer than the output) gets zero loss and is counted (``ctc_infeasible``) instead of making the
loss inf and the batch skipped (``loss.zero_infeasible=False`` restores that); batches are padded to buckets rather
than to the batch maximum, so SeqKD masks frames past the batch's longest clip to average over exactly the
original's frames (``loss.kd_mask='batch_max'``; 'valid' = per-sample mask, 'none' = every frame of the bucket);
eval decoding can be greedy (``eval.decode='greedy'``).

Data: ``config.data.dir`` is a prepared dataset directory (``python -m data_pipelines.build``: ArrayRecord shards,
``gloss_vocab.json``, ``<split>.stm``). If it does not exist and ``config.data.synthetic_preset`` is set (the
synthetic configs), the synthetic corpus of that preset is built there first (``data.synthetic_seed``); real
datasets are never built implicitly. ``config.data.pipeline`` holds the grain video pipeline fields
(``data_pipelines.pipeline.default_config('video')``).

Subclasses with another input (``tasks/keypoint_s2g.py``) change ``input_kind`` (the pipeline kind),
``model_inputs`` (batch -> model arguments) and the model; the loss, decoding and scoring stay these.
``feature_fn`` (the main path's BiLSTM output and lengths) is what ``--mode extract``
(``hypersign_jax/extraction.py``) writes as stream ``extract.stream`` (default 'rgb').
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

from data_pipelines import array_record_io
from data_pipelines import pipeline as pipeline_lib
from data_pipelines.transforms.video import normalize_video
from data_pipelines.vocab import GlossVocab
from hypersign_jax.decoding import ctc as ctc_decoding
from hypersign_jax.losses import ctc as ctc_lib
from hypersign_jax.losses import distill
from hypersign_jax.metrics import sclite_files
from hypersign_jax.metrics import wer as wer_lib
from hypersign_jax.models import cslr as cslr_model
from hypersign_jax.tasks import base

VOCAB_FILE = "gloss_vocab.json"
KD_MASKS = ("batch_max", "valid", "none")
DECODERS = ("beam", "greedy")


def _dtype(name: str):
  try:
    return jnp.dtype(name)
  except TypeError as e:
    raise ValueError(f"config key 'dtype' = {name!r} is not a dtype name (e.g. 'float32', 'bfloat16')") from e


def backbone_config(model_cfg, dtype) -> Any:
  """``config.model.backbone`` (preset name) + ``config.model.backbone_overrides`` -> ``SlowFastConfig``."""
  from hypersign_jax.models import slowfast  # pylint: disable=import-outside-toplevel
  presets = {"r101": slowfast.slowfast_r101, "tiny": slowfast.slowfast_tiny}
  name = model_cfg.backbone
  if name not in presets:
    raise ValueError(f"config key 'model.backbone' = {name!r}: expected one of {sorted(presets)}")
  overrides = dict(model_cfg.get("backbone_overrides", {}) or {})
  for key, value in overrides.items():
    if isinstance(value, list):
      overrides[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
  overrides.setdefault("remat", model_cfg.get("remat", "none"))
  overrides.setdefault("remat_policy", model_cfg.get("remat_policy", ""))
  return presets[name](dtype=dtype, **overrides)


def ensure_dataset(data_cfg) -> str:
  """The prepared dataset directory; builds the synthetic corpus there if it is missing and a preset is set."""
  directory = data_cfg.dir
  if os.path.isfile(os.path.join(directory, VOCAB_FILE)):
    return directory
  preset = data_cfg.get("synthetic_preset", "") or ""
  if not preset:
    raise FileNotFoundError(
        f"config key 'data.dir' = {directory!r} is not a prepared dataset directory (no {VOCAB_FILE}); build it "
        f"with `python -m data_pipelines.build --dataset <name> --root <official layout> --out {directory}`")
  from data_pipelines import build  # pylint: disable=import-outside-toplevel
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
  logging.info("building the synthetic corpus (preset %r) into %s", preset, directory)
  try:
    build.build_dataset("synthetic", None, tmp, preset=preset, seed=int(data_cfg.get("synthetic_seed", 0)))
    try:
      os.replace(tmp, directory)
    except OSError:  # another process finished first (or the directory exists but is incomplete)
      if not os.path.isfile(os.path.join(directory, VOCAB_FILE)):
        raise
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return directory


@base.register("cslr")
class CSLRTask(base.Task):
  """SlowFastSign CSLR on a prepared video dataset (see the module docstring)."""

  best_metric = "wer"
  best_mode = "min"
  #: Pipeline kind of the model input (``data_pipelines.pipeline``) and the feature stream ``--mode extract``
  #: writes by default (subclasses with another input change both).
  input_kind = "video"
  stream = "rgb"

  def __init__(self, config):
    super().__init__(config)
    self.data_dir = ensure_dataset(config.data)
    self.vocab = GlossVocab.load_json(os.path.join(self.data_dir, VOCAB_FILE))
    self._sources: dict[str, array_record_io.RecordSource] = {}
    loss = config.loss
    if loss.kd_mask not in KD_MASKS:
      raise ValueError(f"config key 'loss.kd_mask' = {loss.kd_mask!r}: expected one of {KD_MASKS}")
    if config.eval.decode not in DECODERS:
      raise ValueError(f"config key 'eval.decode' = {config.eval.decode!r}: expected one of {DECODERS}")

  # ---- model -------------------------------------------------------------------------------------------------
  def model_config(self) -> cslr_model.SlowFastSignConfig:
    m, dtype = self.config.model, _dtype(self.config.dtype)
    return cslr_model.SlowFastSignConfig(
        num_classes=self.vocab.num_classes, backbone=backbone_config(m, dtype), hidden_size=m.hidden_size,
        conv_spec=tuple(m.conv_spec), lstm_layers=m.lstm_layers, lstm_dropout=m.lstm_dropout,
        share_classifier=bool(m.share_classifier), pfe=bool(m.pfe),
        sequence_residual=bool(m.sequence_residual), dtype=dtype)

  def build_model(self, rngs):
    return cslr_model.SlowFastSign(self.model_config(), rngs=rngs)

  # ---- data --------------------------------------------------------------------------------------------------
  def source(self, split: str) -> array_record_io.RecordSource:
    if split not in self._sources:
      self._sources[split] = array_record_io.RecordSource(self.data_dir, split)
    return self._sources[split]

  def _pipeline_config(self, global_batch: int) -> dict:
    cfg = self.config.data.pipeline.to_dict()
    cfg["batch_size"] = int(global_batch)
    return cfg

  def train_size(self):
    return len(self.source("train"))

  def train_iterator(self, seed, batch_size, process_index=0, process_count=1):
    cfg = self._pipeline_config(batch_size * process_count)
    return pipeline_lib.make_train_iterator(self.source("train"), self.input_kind, cfg, seed % 2**32, process_index,
                                            process_count, vocab=self.vocab)

  def eval_batches(self, split, batch_size):
    cfg = self._pipeline_config(batch_size)
    # The whole global batches on every process: the trainer's evaluation is replicated (trainer.evaluate).
    return pipeline_lib.make_eval_batches(self.source(split), self.input_kind, cfg, vocab=self.vocab)

  # ---- computation -------------------------------------------------------------------------------------------
  @staticmethod
  def _video(batch):
    video = batch["video"]
    if video.dtype == jnp.uint8:  # data.pipeline.video_normalize='device'
      video = normalize_video(video)
    return video

  def model_inputs(self, batch) -> tuple[jax.Array, jax.Array]:
    """The model's positional inputs from a device batch: (frames, padded lengths)."""
    return self._video(batch), batch["video_length"]

  def loss_fn(self, model, batch):
    lc = self.config.loss
    out = model(*self.model_inputs(batch))
    lengths = out["feat_lengths"]
    labels, label_lengths = batch["labels"], batch["label_lengths"]
    weights = batch.get("valid")
    t_out = out["conv_logits"]["main"].shape[1]
    steps = jnp.arange(t_out)[None, :]
    if lc.kd_mask == "batch_max":
      kd_mask = jnp.broadcast_to(steps < jnp.max(lengths), (lengths.shape[0], t_out))
    elif lc.kd_mask == "valid":
      kd_mask = steps < lengths[:, None]
    else:
      kd_mask = None
    branch_weight = {"main": 1.0, "slow": float(lc.slow), "fast": float(lc.fast)}
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for name, seq in out["sequence_logits"].items():
      conv = out["conv_logits"][name]
      seq_ctc, info = ctc_lib.mean_ctc_loss(seq, lengths, labels, label_lengths, weights,
                                            zero_infeasible=bool(lc.zero_infeasible))
      conv_ctc, _ = ctc_lib.mean_ctc_loss(conv, lengths, labels, label_lengths, weights,
                                          zero_infeasible=bool(lc.zero_infeasible))
      kd = distill.seqkd_loss(conv, seq, kd_mask, temperature=float(lc.kd_temperature),
                              use_blank=bool(lc.kd_use_blank))
      path = lc.seq_ctc * seq_ctc + lc.conv_ctc * conv_ctc + lc.dist * kd
      total = total + branch_weight[name] * path
      metrics.update({f"{name}/seq_ctc": seq_ctc, f"{name}/conv_ctc": conv_ctc, f"{name}/seqkd": kd,
                      f"{name}/loss": path})
      if name == "main":
        metrics["ctc_infeasible"] = info["num_infeasible"]
    return total, metrics

  def eval_fn(self, model, batch):
    out = model(*self.model_inputs(batch), branches=("main",))
    result = {"log_probs": jax.nn.log_softmax(out["sequence_logits"]["main"].astype(jnp.float32), axis=-1),
              "lengths": out["feat_lengths"]}
    if self.config.eval.decode_conv:
      result["conv_log_probs"] = jax.nn.log_softmax(out["conv_logits"]["main"].astype(jnp.float32), axis=-1)
    return result

  def feature_fn(self, model, batch):
    """``--mode extract`` (inside jit): the main path's BiLSTM output (B, T', D) and its lengths (B,)."""
    features, lengths = model.sequence_features(*self.model_inputs(batch))
    return {"features": features.astype(jnp.float32), "lengths": lengths}

  def feature_size(self) -> int:
    """Width D of the extracted features (the BiLSTM output = ``model.hidden_size``)."""
    return int(self.config.model.hidden_size)

  # ---- host side ---------------------------------------------------------------------------------------------
  def decode(self, log_probs: np.ndarray, lengths: np.ndarray) -> list[list[str]]:
    """(B, T', C) log-probabilities + lengths -> gloss lists (repeats merged, as the original)."""
    e = self.config.eval
    if e.decode == "beam":
      ids = ctc_decoding.beam_search_decode(log_probs, lengths, beam_width=int(e.beam_width), log_probs=True,
                                            merge_repeats=True)
    else:
      ids = ctc_decoding.labels_to_lists(*ctc_decoding.greedy_decode(jnp.asarray(log_probs),
                                                                     jnp.asarray(lengths)))
    return [self.vocab.decode(x) for x in ids]

  def references(self, split: str) -> dict[str, str]:
    pattern = self.config.eval.get("reference_stm", "") or os.path.join(self.data_dir, "{split}.stm")
    path = pattern.format(split=split)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"reference STM {path!r} for split {split!r} not found (config key "
                              f"'eval.reference_stm'; the build CLI writes <data.dir>/<split>.stm)")
    return {utt: gloss for utt, _, gloss in sclite_files.read_stm(path)}

  def _score(self, split, hyps, refs, workdir, tag):
    if workdir:
      os.makedirs(workdir, exist_ok=True)
      sclite_files.write_ctm(os.path.join(workdir, f"{tag}_{split}.ctm"), sorted(hyps.items()))
    result = wer_lib.corpus_wer(refs, {k: " ".join(v) for k, v in hyps.items()}, cleanup=self.config.eval.cleanup)
    return result

  def compute_metrics(self, split, batches, outputs, workdir):
    hyps: dict[str, list[str]] = {}
    conv_hyps: dict[str, list[str]] = {}
    for batch, out in zip(batches, outputs):
      valid = np.asarray(batch["valid"]).astype(bool)
      ids = list(batch["id"])
      lengths = np.asarray(out["lengths"])
      decoded = self.decode(np.asarray(out["log_probs"]), lengths)
      conv = self.decode(np.asarray(out["conv_log_probs"]), lengths) if "conv_log_probs" in out else None
      for i, ok in enumerate(valid):
        if ok:
          hyps[str(ids[i])] = decoded[i]
          if conv is not None:
            conv_hyps[str(ids[i])] = conv[i]
    refs = self.references(split)
    result = self._score(split, hyps, refs, workdir, "hyp")
    t = result.totals
    pct = lambda k: 100.0 * k / t.n
    metrics = {"wer": result.wer, "sub": pct(t.s), "del": pct(t.d), "ins": pct(t.i), "num_samples": len(hyps),
               "num_references": len(refs)}
    if conv_hyps:
      metrics["conv_wer"] = self._score(split, conv_hyps, refs, workdir, "hyp_conv").wer
    logging.info("%s: %s", split, result.summary().replace("\n", " | "))
    return metrics
