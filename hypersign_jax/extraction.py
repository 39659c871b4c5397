"""``--mode extract``: a trained sign-to-gloss (S2G) model's per-step features for every split, as a dataset.

HyperSign's S2T stage reads, per video and stream, the sequence its S2G recognition model feeds to the gloss
classifier (design/HYPERSIGN.md §1.1). This module produces that from a training workdir of an S2G task of this
project, the RGB SlowFastSign model (task ``cslr``) or the keypoint model (task ``keypoint_s2g``):

1. the task is built from the config and the workdir's checkpoint restored: ``extract.checkpoint`` = 'auto' (the
   best checkpoint, else the latest), 'best' or 'latest';
2. every split of ``extract.splits`` runs through the task's eval pipeline (no augmentation, every sample once,
   batches of ``extract.batch_size`` or ``eval.batch_size``) and the task's jitted ``feature_fn`` (the main path's
   BiLSTM output and its lengths, at the temporal-conv rate: T' = ceil(frames/4)). ``extract.order`` = 'length'
   (default) reads each split shortest clip first (``data.pipeline.group_by_length`` turned on): batches of
   similar lengths pad less (the demo corpus' RGB extraction computes about half the frames of source order) and
   need fewer bucket shapes, but the split's features wait in host memory until the records before them in the
   source are done (about N x T' x D x 4 bytes: 0.85 GB for PHOENIX-2014-T train at D = 1024); 'source' reads in
   the source's order and writes each record at once. The output is in the source's order either way;
3. each sample becomes a record with the source's ``id`` / ``split`` / ``signer`` / ``gloss`` / ``text`` (and
   ``num_frames``, ``frame_size``, ``dataset``) and ``features`` = {``extract.stream``: float32 (T', D)} cut to the
   sample's valid length (D = the model's hidden size); the lengths are checked against the pipeline's
   ``feat_length`` and the ids against the source;
4. the records go to ``extract.out`` (default ``<workdir>/features_<stream>``) as a feature dataset directory
   (``data_pipelines/merge_features.py``: ArrayRecord shards, the source's ``gloss_vocab.json``, STM files,
   ``dataset_info.json`` recording the workdir, checkpoint step and stream), with a progress bar per split.

Two single-stream directories (RGB and keypoint) are combined into the S2T input with
``python -m data_pipelines.merge_features --stream rgb=DIR1 --stream keypoint=DIR2 --out DIR``. Features are
computed in the config's ``dtype`` and stored as float32. Extraction runs in one process (all its local devices);
a multi-process launch is refused.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from data_pipelines import build
from data_pipelines import merge_features
from data_pipelines import pipeline
from hypersign_jax.tasks import base as task_base
from hypersign_jax.training import checkpointing, sharding, trainer
from hypersign_jax.training import logging as train_logging

CHECKPOINTS = ("auto", "best", "latest")
ORDERS = ("length", "source")


def _settings(config, workdir: str, out: str | None, stream: str | None, splits: Sequence[str] | None):
  ex = config.get("extract", None)
  get = lambda key, default: (ex.get(key, default) if ex is not None else default)
  stream = stream or get("stream", "")
  if not stream:
    raise ValueError("set config key 'extract.stream' (the feature stream name, e.g. 'rgb' or 'keypoint')")
  out = out or get("out", "") or os.path.join(workdir, f"features_{stream}")
  splits = tuple(splits or get("splits", ("train", "dev", "test")))
  batch_size = int(get("batch_size", 0) or config.eval.batch_size)
  which = get("checkpoint", "auto")
  if which not in CHECKPOINTS:
    raise ValueError(f"config key 'extract.checkpoint' = {which!r}: expected one of {CHECKPOINTS}")
  order = get("order", "length")
  if order not in ORDERS:
    raise ValueError(f"config key 'extract.order' = {order!r}: expected one of {ORDERS}")
  return out, stream, splits, batch_size, which, order


def restore(config, workdir: str, task: task_base.Task, which: str = "auto") -> tuple[trainer.Setup, dict, str,
                                                                                        int]:
  """Builds the training setup of ``config`` and restores ``workdir``'s checkpoint (best, else latest for 'auto').

  Returns (setup, restored state, 'best' | 'latest', step). The checkpoint is looked up before anything is built,
  so a workdir without one fails at once."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"{workdir!r} has no checkpoints; train the S2G model there first "
                            f"(python main.py --config ... --workdir {workdir})")
  ckpts = checkpointing.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  try:
    if which == "auto":
      which = "best" if ckpts.best_step() is not None else "latest"
    if (ckpts.best_step() if which == "best" else ckpts.latest_step()) is None:
      raise FileNotFoundError(f"{workdir!r} has no {which!r} checkpoint (checkpoints/{which}); train the S2G model "
                              f"there first (python main.py --config ... --workdir {workdir})")
    setup = trainer.build(config, task)
    state, _, step = ckpts.restore(which, setup.state)
  finally:
    ckpts.close()
  return setup, state, which, step


def make_feature_step(setup: trainer.Setup):
  """jit: (state without optimizer, device batch) -> the task's ``feature_fn`` outputs, model in eval mode."""
  task, graphdef = setup.task, setup.graphdef_eval

  def step(state, batch):
    keys = jax.tree.map(jax.random.wrap_key_data, state["rng"])
    model = nnx.merge(graphdef, state["params"], keys, state["rng_count"], state["model_state"], copy=True)
    return task.feature_fn(model, batch)

  return jax.jit(step)


def _reading_order(config, order: str):
  """``config`` with its eval pipeline reading shortest first ('length') or in source order ('source')."""
  pipe = config.get("data", {}).get("pipeline", None)
  if pipe is None:
    return config
  grouped = pipeline.group_by_length(pipe) > 0
  if grouped == (order == "length"):
    return config
  config = config.copy_and_resolve_references()
  config.data.pipeline.group_by_length = 1 if order == "length" else 0
  return config


def extract_features(config, workdir: str, *, out: str | None = None, stream: str | None = None,
                     splits: Sequence[str] | None = None, task: task_base.Task | None = None,
                     progress: bool = True) -> dict:
  """Writes the feature dataset directory of ``workdir``'s trained S2G model (see the module docstring).

  Returns a summary: output directory, stream, width, checkpoint, and the number of records per split."""
  if jax.process_count() > 1:
    raise RuntimeError("--mode extract runs in a single process (it uses all local devices); launch it without "
                       "multi-process initialisation")
  out, stream, splits, batch_size, which, order = _settings(config, workdir, out, stream, splits)
  if task is None:  # (a given task reads in its own config's order; the output is in source order either way)
    config = _reading_order(config, order)
    task = task_base.get_task(config.task)(config)
  if not hasattr(task, "feature_fn"):
    raise ValueError(f"task {config.task!r} has no feature extraction (feature_fn); --mode extract needs a "
                     "sign-to-gloss task ('cslr' or 'keypoint_s2g')")
  if os.path.abspath(out) == os.path.abspath(task.data_dir):
    raise ValueError(f"extract.out {out!r} is the source dataset directory; choose another directory")
  for split in splits:
    task.source(split)  # fails early, naming the missing split's shards
  setup, state, which, step = restore(config, workdir, task, which)
  state = {k: state[k] for k in ("params", "model_state", "rng", "rng_count", "step")}
  feature_step = make_feature_step(setup)
  width = int(task.feature_size())

  def records(split: str):
    """The split's feature records in source order: a batch's rows wait in ``ready`` until every record before
    them in the source is written (at once when the pipeline reads in source order)."""
    source = task.source(split)
    index, ready, seen = 0, {}, set()
    waiting = None  # source[index], read once while its features are not computed yet
    for batch in task.eval_batches(split, batch_size):
      device_part, _ = sharding.split_host_fields(batch)
      result = jax.device_get(feature_step(state, sharding.make_global_batch(device_part, setup.mesh)))
      features, lengths = np.asarray(result["features"]), np.asarray(result["lengths"])
      if features.ndim != 3 or features.shape[-1] != width:
        raise ValueError(f"feature_fn returned shape {features.shape}, expected (B, T', {width})")
      expected = batch.get("feat_length")
      for row, valid in enumerate(np.asarray(batch["valid"]) > 0):
        if not valid:
          continue
        sample_id = str(batch["id"][row])
        if sample_id in seen:
          raise RuntimeError(f"split {split!r}: sample id {sample_id!r} occurs twice (extraction needs unique ids)")
        seen.add(sample_id)
        n = int(lengths[row])
        if expected is not None and n != int(expected[row]):
          raise RuntimeError(f"sample {sample_id!r}: the model's output length {n} differs from the pipeline's "
                             f"feat_length {int(expected[row])}")
        if not 0 < n <= features.shape[1]:
          raise RuntimeError(f"sample {sample_id!r}: output length {n} outside (0, {features.shape[1]}]")
        ready[sample_id] = features[row, :n].copy()  # a copy: the batch array is not kept alive
      while index < len(source) and ready:
        waiting = source[index] if waiting is None else waiting
        found = ready.pop(str(waiting["id"]), None)
        if found is None:
          break
        record, waiting, index = waiting, None, index + 1
        yield merge_features.feature_record(record, {stream: found})
    if index != len(source) or ready:
      missing = str(source[index]["id"]) if index < len(source) else None
      raise RuntimeError(f"split {split!r}: extracted {index} of {len(source)} samples in source order (first "
                         f"missing: {missing!r}; {len(ready)} computed for ids not reached: "
                         f"{sorted(ready)[:3]})")

  def bar(split, total):
    return train_logging.progress(total, desc=f"extract {split}", enabled=progress).update

  source_info = _source_info(task.data_dir)
  info = {
      "name": f"{source_info.get('name', 'dataset')}_{stream}_features",
      "source": {"data_dir": os.path.abspath(task.data_dir), **(source_info.get("source") or {})},
      "extracted": {"workdir": os.path.abspath(workdir), "task": config.task, "checkpoint": which, "step": int(step),
                    "stream": stream, "dim": width, "dtype": config.dtype,
                    "what": "main-path BiLSTM output (the gloss classifier's input), T' = ceil(frames / 4)"},
      "streams": [stream],
      "notes": [],
  }
  plan = {split: (records(split), len(task.source(split))) for split in splits}
  written = merge_features.write_feature_dataset(out, plan, os.path.join(task.data_dir, build.VOCAB_FILE), info,
                                                 progress=bar)
  return {"out": out, "stream": stream, "dim": width, "checkpoint": which, "step": int(step),
          "splits": {s: v["num_examples"] for s, v in written["splits"].items()}}


def _source_info(data_dir: str) -> dict[str, Any]:
  path = os.path.join(data_dir, build.INFO_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)
