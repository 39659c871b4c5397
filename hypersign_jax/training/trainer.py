"""The one generic training loop, used by every task.

Sections, top to bottom: build (mesh, model, optimizer, shardings) -> the jitted train and eval steps -> restore
-> the loop (log, evaluate from ``train.eval_from_step`` / ``eval_from_epochs`` on, checkpoint, stop on repeated non-finite losses or
early: a dev target reached or no new best for a number of evaluations) -> final evaluation of the best checkpoint
(its dev metrics reused when it is the state the loop evaluated last).

Design (ARCHITECTURE.md §3): Flax NNX modules are split into pure state (``nnx.split``); the train step is a plain
function of (state, batch) compiled once per batch shape with ``jax.jit``, explicit ``in_shardings`` /
``out_shardings`` over a ('data', 'fsdp') mesh and donation of the old state. Dropout keys are derived from the
run's base keys and the step number (``fold_in``), so a resumed run draws exactly the masks an uninterrupted one
would.

Multi-process runs (``training/distributed.py`` initialises them): every process runs this same loop. Each reads
its own share of every training batch (``task.train_iterator(..., process_index, process_count)``), assembled
into global arrays by ``sharding.make_global_batch``; checkpoints are saved and restored by all processes together
(orbax writes each array shard once, the primary process writes the metadata); evaluation is replicated (see
``evaluate``); only process 0 writes config.json, metrics.jsonl, TensorBoard and final_metrics.json.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from hypersign_jax.tasks import base as task_base
from hypersign_jax.training import checkpointing, compile_ahead, distributed, optim, sharding
from hypersign_jax.training import logging as train_logging


class TrainingDiverged(RuntimeError):
  """Raised when more than ``train.max_bad_steps`` steps had a non-finite loss or gradient."""


# ---------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Setup:
  """Everything built once from the config."""
  task: task_base.Task
  mesh: jax.sharding.Mesh
  graphdef_train: Any
  graphdef_eval: Any
  state: dict            # {'params', 'model_state', 'opt_state', 'rng', 'rng_count', 'step'}, sharded
  state_shardings: Any
  tx: optax.GradientTransformation
  schedules: dict
  steps_per_epoch: int
  num_steps: int


def build(config, task: task_base.Task | None = None) -> Setup:
  task = task or task_base.get_task(config.task)(config)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  global_batch = config.train.batch_size
  if global_batch % sharding.num_batch_shards(mesh):
    raise ValueError(f"train.batch_size={global_batch} is not divisible by the {sharding.num_batch_shards(mesh)} "
                     f"batch shards of the mesh {dict(mesh.shape)}")
  steps_per_epoch = task.train_size() // global_batch
  if steps_per_epoch < 1:
    raise ValueError(f"train.batch_size={global_batch} is larger than the training set ({task.train_size()})")
  if config.train.num_steps > 0:
    num_steps = int(config.train.num_steps)
  elif config.train.num_epochs > 0:
    num_steps = int(round(config.train.num_epochs * steps_per_epoch))
  else:
    raise ValueError("set train.num_steps or train.num_epochs to a positive value")

  model = init_model(task, config.seed)
  graphdef_train, graphdef_eval, params, rng_keys, rng_count, model_state = split_model(model)
  accum = int(config.optimizer.get("grad_accum_steps", 1))
  tx, schedules = optim.make_optimizer(config.optimizer, config.schedule, params,
                                       max(1, steps_per_epoch // accum))
  state = initial_state(params, rng_keys, rng_count, model_state, tx)
  state_shardings = sharding.param_shardings(state, mesh, config.mesh.fsdp_min_size)
  state = jax.device_put(state, state_shardings)
  return Setup(task, mesh, graphdef_train, graphdef_eval, state, state_shardings, tx, schedules,
               steps_per_epoch, num_steps)


def split_model(model: nnx.Module):
  """(graphdef in train mode, graphdef in eval mode, params, rng keys, rng counts, other state) of ``model``."""
  model.train()
  graphdef_train, params, rng_keys, rng_count, model_state = nnx.split(
      model, nnx.Param, nnx.RngKey, nnx.RngCount, ...)
  model.eval()
  return graphdef_train, nnx.graphdef(model), params, rng_keys, rng_count, model_state


def initial_state(params, rng_keys, rng_count, model_state, tx: optax.GradientTransformation) -> dict:
  """The train state at step 0 (the layout every step, checkpoint and sharding rule works on)."""
  return {
      "params": params,
      "model_state": model_state,
      "opt_state": tx.init(params),
      # Typed PRNG keys are stored as raw key data so that checkpoints hold plain integer arrays.
      "rng": jax.tree.map(jax.random.key_data, rng_keys),
      "rng_count": rng_count,
      "step": jnp.zeros((), jnp.int32),
  }


def init_model(task: task_base.Task, seed: int) -> nnx.Module:
  """Builds the task's model with all initialisers in one compiled program, then loads the config's pretrained /
  initial weights eagerly (``task.load_weights``: file I/O cannot run inside the traced program).

  Eager initialisation compiles one small random-number program per distinct parameter shape (seconds each on a
  CPU for a SlowFast backbone); tracing the whole construction under ``jax.jit`` compiles once.
  """
  abstract = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(seed)))
  graphdef = nnx.graphdef(abstract)
  init = jax.jit(lambda: nnx.state(task.build_model(nnx.Rngs(seed)))).lower()
  state = init.compile(compiler_options=FAST_COMPILE_OPTIONS)()  # runs once: compile time is what matters
  model = nnx.merge(graphdef, state)
  task.load_weights(model)
  return model


def _model_from_state(graphdef, state, step):
  keys = jax.tree.map(lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), step), state["rng"])
  return nnx.merge(graphdef, state["params"], keys, state["rng_count"], state["model_state"], copy=True)


# ---------------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------------
def make_train_step(setup: Setup, accum: int):
  task, tx, graphdef = setup.task, setup.tx, setup.graphdef_train
  lr_fn = setup.schedules["default"]

  def train_step(state, batch):
    step = state["step"]

    def loss_of(params):
      model = _model_from_state(graphdef, {**state, "params": params}, step)
      loss, metrics = task.loss_fn(model, batch)
      new_model_state = nnx.split(model, nnx.Param, nnx.RngKey, nnx.RngCount, ...)[4]
      return loss.astype(jnp.float32), (metrics, new_model_state)

    (loss, (metrics, new_model_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
    updates, new_opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_params = optax.apply_updates(state["params"], updates)
    grad_norm = optax.tree.norm(grads)
    # A NaN/inf anywhere in the gradient makes its norm non-finite (so does a finite gradient whose squared norm
    # overflows float32: also a bad step). One reduction: a per-leaf isfinite/all/stack
    # makes XLA's CPU compile time explode for models with hundreds of parameter arrays.)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = {
        **state,
        "params": keep(new_params, state["params"]),
        "model_state": keep(new_model_state, state["model_state"]),
        "opt_state": keep(new_opt_state, state["opt_state"]),
        "step": step + 1,
    }
    out = {"loss": loss, "grad_norm": grad_norm, "lr": lr_fn(step // accum),
           "bad_step": (~ok).astype(jnp.int32), **metrics}
    return new_state, out

  return train_step


def make_eval_step(setup: Setup):
  task, graphdef = setup.task, setup.graphdef_eval

  def eval_step(state, batch):
    model = _model_from_state(graphdef, state, state["step"])
    return task.eval_fn(model, batch)

  return eval_step


# XLA options that trade run-time speed for much shorter CPU compiles (init programs; `train.fast_compile`).
FAST_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


class _Jitted:
  """A step function compiled once per batch signature with explicit shardings (one compile per bucket shape).

  Programs are compiled for the abstract train state and batch (``compile_ahead``), so they can be compiled ahead
  on ``pool``'s threads (``prefetch``) before the first batch of their shape arrives.
  """

  def __init__(self, fn, setup: Setup, train: bool, fast_compile: bool = False,
               pool: concurrent.futures.Executor | None = None):
    self._fn, self._setup, self._train = fn, setup, train
    self._options = FAST_COMPILE_OPTIONS if fast_compile else None
    self._state = compile_ahead.abstract_state(setup.state, setup.state_shardings)
    self._programs = compile_ahead.StepPrograms(self._compile, pool)
    self._scheduling: list[concurrent.futures.Future] = []

  def schedule_first(self, future: concurrent.futures.Future) -> None:
    """Makes the next call wait for ``future`` (a pool task that schedules this step's compiles) to finish first.

    Without it, a call that comes before the task has scheduled its signature compiles the program itself; the
    task then finds it in progress and skips it, but the compile has moved onto the training thread.
    """
    self._scheduling.append(future)

  def _compile(self, batch):
    s = self._setup
    batch_sh = jax.tree.map(lambda v: v.sharding, batch)
    if self._train:
      jitted = jax.jit(self._fn, in_shardings=(s.state_shardings, batch_sh),
                       out_shardings=(s.state_shardings, sharding.replicated(s.mesh)), donate_argnums=(0,))
    else:  # outputs replicated: every process gets the whole batch's outputs (see `evaluate`)
      jitted = jax.jit(self._fn, in_shardings=(s.state_shardings, batch_sh),
                       out_shardings=sharding.replicated(s.mesh))
    start = time.time()
    with jax.set_mesh(s.mesh):  # models' activation sharding hints (sharding.constrain_batch) see the mesh
      compiled = jitted.lower(self._state, batch).compile(compiler_options=self._options)
    if jax.process_index() == 0:  # compiles take seconds to minutes: say what is being waited for
      print(f"[compile] {'train' if self._train else 'eval'} step for {_shape_summary(batch)}: "
            f"{time.time() - start:.1f} s", flush=True)
    return compiled

  def prefetch(self, host_batch: dict, process_local: bool) -> None:
    """Schedules the compile for a NumPy device batch's signature (no-op without a pool or if already known)."""
    self._programs.prefetch(compile_ahead.abstract_global_batch(host_batch, self._setup.mesh, process_local))

  def _abstract(self, batch):
    """The abstract form of a global (device) batch: its shape is already global."""
    return compile_ahead.abstract_global_batch(batch, self._setup.mesh, process_local=False)

  def __call__(self, state, batch):
    if self._scheduling:  # failures are the task's own to report (see `_compile_ahead`)
      concurrent.futures.wait(self._scheduling)
      self._scheduling = []
    return self._programs.get(self._abstract(batch))(state, batch)

  def has_program(self, batch) -> bool:
    """Whether a program for this global batch's shape is compiled (or being compiled)."""
    return self._abstract(batch) in self._programs

  def programs(self) -> list:
    """The compiled programs (XLA ``Compiled`` objects: cost and memory analysis), in order of first use."""
    return self._programs.compiled()


def _shape_summary(batch) -> str:
  """The batch's largest array, e.g. 'video (4, 92, 28, 28, 3)' (what distinguishes one bucket's program)."""
  path, leaf = max(jax.tree_util.tree_leaves_with_path(batch),
                   key=lambda item: (np.prod(item[1].shape), len(item[1].shape)))
  return f"{jax.tree_util.keystr(path, simple=True, separator='/')} {tuple(leaf.shape)}"


def _prefetch_eval_programs(setup: Setup, eval_step: _Jitted, split: str, batch_size: int) -> None:
  """Reads ``split`` once and schedules the compile of each of its batch signatures (runs on a pool thread)."""
  device_parts = (sharding.split_host_fields(b)[0] for b in setup.task.eval_batches(split, batch_size))
  for batch in compile_ahead.signatures_in_order(device_parts):
    eval_step.prefetch(batch, process_local=False)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------
def evaluate(setup: Setup, eval_step, state, split: str, batch_size: int, workdir: str | None) -> dict:
  """Metrics of ``split``: each eval batch through the jitted ``eval_step``, then ``task.compute_metrics``.

  With several processes, evaluation is replicated: ``task.eval_batches`` yields the same whole (global) batches
  on every process (it is not sharded by process), ``make_global_batch(..., process_local=False)`` gives each
  device its rows of them, and the step's outputs are replicated (``out_shardings``), so every process holds the
  whole batches and the whole outputs and computes the same metrics. Every process therefore takes the same
  best-checkpoint decision (checkpoint saves are collective). Only process 0 gets ``workdir`` (hypothesis and
  CTM files). The cost: every host reads and decodes the whole split; the devices still split the computation.
  """
  host_batches, outputs = [], []
  for batch in setup.task.eval_batches(split, batch_size):
    device_part, _ = sharding.split_host_fields(batch)
    out = eval_step(state, sharding.make_global_batch(device_part, setup.mesh, process_local=False))
    host_batches.append(batch)
    outputs.append(jax.device_get(out))
  if not host_batches:
    raise ValueError(f"split {split!r} has no samples to evaluate")
  return setup.task.compute_metrics(split, host_batches, outputs, workdir if jax.process_index() == 0 else None)


def _iterator_meta(train_iter) -> dict:
  """The data-iterator state for the checkpoint (collective: every process calls it at the same step).

  Processes normally have equal iterator states (each has consumed the same number of local batches); then one
  state is stored and a resume may even use another process count. Differing states are stored per process.
  """
  states = distributed.allgather_json(train_iter.get_state())
  if all(s == states[0] for s in states):
    return {"iterator": states[0], "process_count": len(states)}
  return {"iterator": None, "iterator_per_process": states, "process_count": len(states)}


def _restore_iterator(train_iter, saved_meta: dict) -> None:
  """Sets the iterator state saved by ``_iterator_meta`` (pops its keys from ``saved_meta``)."""
  state = saved_meta.pop("iterator")
  per_process = saved_meta.pop("iterator_per_process", None)
  saved_count = saved_meta.pop("process_count", 1)
  if per_process is not None:
    if len(per_process) != jax.process_count():
      raise ValueError(f"the checkpoint holds per-process data-iterator states of {saved_count} processes; "
                       f"resume it with {saved_count} processes (this run has {jax.process_count()})")
    state = per_process[jax.process_index()]
  train_iter.set_state(state)


def early_stop_reason(tcfg, meta: dict, step: int, eval_every: int, mode: str) -> str | None:
  """Why training stops before ``num_steps`` (``train.stop_at`` reached by the best dev metric, or
  ``train.early_stop_evals`` evaluations without a new best), or None to go on."""
  best, target = meta.get("best"), tcfg.get("stop_at", None)
  if best is not None and target is not None and (best <= target if mode == "min" else best >= target):
    return f"the best dev metric {best:.4g} (step {meta['best_step']}) reached train.stop_at={target}"
  patience = int(tcfg.get("early_stop_evals", 0) or 0)
  if patience < 0:
    raise ValueError(f"train.early_stop_evals must be >= 0, got {patience}")
  if best is not None and patience and eval_every > 0 and (step - meta["best_step"]) >= patience * eval_every:
    return (f"no new best dev metric in {patience} evaluations (train.early_stop_evals) since step "
            f"{meta['best_step']} ({best:.4g})")
  return None


def _is_better(value: float, best: float | None, mode: str) -> bool:
  if best is None:
    return True
  return value < best if mode == "min" else value > best


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------
def train_and_evaluate(config, workdir: str, task: task_base.Task | None = None) -> dict:
  """Trains (resuming from ``workdir`` if it has a checkpoint), then evaluates the best checkpoint."""
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  setup = build(config, task)
  tcfg = config.train
  accum = int(config.optimizer.get("grad_accum_steps", 1))
  if tcfg.batch_size % jax.process_count():
    raise ValueError(f"train.batch_size={tcfg.batch_size} is not divisible by the {jax.process_count()} processes")
  per_process_batch = tcfg.batch_size // jax.process_count()
  ckpts = checkpointing.Checkpoints(workdir, keep=tcfg.keep_checkpoints)
  logger = train_logging.MetricLogger(workdir, enabled=is_main, tensorboard=tcfg.get("tensorboard", True))
  task = setup.task
  train_iter = task.train_iterator(config.seed, per_process_batch, jax.process_index(), jax.process_count())
  ahead = int(tcfg.get("compile_ahead", 0) or 0)
  if ahead < 0:
    raise ValueError(f"train.compile_ahead must be >= 0, got {ahead}")
  if ahead:
    train_iter = compile_ahead.Lookahead(train_iter)
  state = setup.state
  meta = {"best": None, "best_step": None, "bad_steps": 0}
  start = 0
  if ckpts.latest_step() is not None:
    state, saved_meta, start = ckpts.restore("latest", state)
    _restore_iterator(train_iter, saved_meta)
    meta.update(saved_meta)
    logging.info("resumed from step %d in %s", start, workdir)
  fast = bool(tcfg.get("fast_compile", False))
  pool = None
  if ahead:
    threads = int(tcfg.get("compile_threads", 1))
    if threads < 1:
      raise ValueError(f"train.compile_threads must be >= 1 with train.compile_ahead > 0, got {threads}")
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="compile")
  train_step = _Jitted(make_train_step(setup, accum), setup, train=True, fast_compile=fast, pool=pool)
  eval_step = _Jitted(make_eval_step(setup), setup, train=False, fast_compile=fast, pool=pool)
  try:
    if pool is not None:
      _compile_ahead(setup, config, train_iter, ahead, train_step, eval_step, pool)
    return _loop(config, workdir, setup, state, start, meta, train_iter, train_step, eval_step, ckpts, logger,
                 ahead)
  finally:
    if pool is not None:
      pool.shutdown(wait=False, cancel_futures=True)


def _compile_ahead(setup: Setup, config, train_iter, ahead: int, train_step: _Jitted, eval_step: _Jitted,
                   pool: concurrent.futures.Executor) -> None:
  """Schedules the compiles of the first ``ahead`` training batches' signatures and of the dev split's."""
  for batch in compile_ahead.signatures_in_order(
      sharding.split_host_fields(b)[0] for b in train_iter.fill(ahead)):
    train_step.prefetch(batch, process_local=True)
  future = pool.submit(_prefetch_eval_programs, setup, eval_step, "dev", config.eval.batch_size)
  eval_step.schedule_first(future)  # the first evaluation finds the dev compiles scheduled, never starts its own
  # A failure here is not fatal (the evaluation compiles on demand and meets the same error itself): say so.
  future.add_done_callback(lambda f: f.cancelled() or f.exception() is None or logging.warning(
      "compile-ahead of the dev programs failed (they compile on first use): %r", f.exception()))


def _loop(config, workdir, setup: Setup, state, start: int, meta: dict, train_iter, train_step: _Jitted,
          eval_step: _Jitted, ckpts, logger, ahead: int) -> dict:
  """The training loop from step ``start``, then the final evaluation of the best checkpoint."""
  tcfg, task = config.train, setup.task
  is_main = jax.process_index() == 0
  metric_key = task.best_metric

  eval_every = tcfg.eval_every_steps or (tcfg.eval_every_epochs * setup.steps_per_epoch)
  from_step, from_epochs = tcfg.get("eval_from_step", 0) or 0, tcfg.get("eval_from_epochs", 0) or 0
  if from_step < 0 or from_epochs < 0:
    raise ValueError(f"train.eval_from_step and train.eval_from_epochs must be >= 0, got {from_step} and "
                     f"{from_epochs}")
  eval_from = int(from_step or round(from_epochs * setup.steps_per_epoch))
  ckpt_every = tcfg.checkpoint_every_steps
  last_dev = None  # (step, metrics) of the latest dev evaluation of this run
  bar = train_logging.progress(setup.num_steps, initial=start, desc="train", enabled=is_main)
  pending: list[dict] = []
  t0 = time.time()
  step = start
  stop = early_stop_reason(tcfg, meta, step, eval_every, task.best_mode)  # a resumed run that had stopped early
  while step < setup.num_steps and stop is None:
    batch, _ = sharding.split_host_fields(next(train_iter))
    if ahead:  # keep `ahead` batches read; a new signature among them starts compiling now
      for upcoming in train_iter.fill(ahead)[-1:]:
        train_step.prefetch(sharding.split_host_fields(upcoming)[0], process_local=True)
    state, out = train_step(state, sharding.make_global_batch(batch, setup.mesh))
    pending.append(out)
    step += 1
    bar.update(1)
    last = step == setup.num_steps
    if step % tcfg.log_every == 0 or last:
      values = jax.device_get(pending)
      bad = int(sum(v["bad_step"] for v in values))
      meta["bad_steps"] += bad
      summary = {k: float(np.mean([v[k] for v in values])) for k in values[0] if k != "bad_step"}
      summary.update(bad_steps=meta["bad_steps"], epoch=step / setup.steps_per_epoch,
                     steps_per_sec=len(values) / max(time.time() - t0, 1e-9))
      logger.write(step, "train", summary)
      bar.set_postfix(loss=f"{summary['loss']:.4g}")
      pending, t0 = [], time.time()
      if meta["bad_steps"] > tcfg.max_bad_steps:
        bar.close()
        raise TrainingDiverged(
            f"{meta['bad_steps']} steps had a non-finite loss or gradient (limit train.max_bad_steps="
            f"{tcfg.max_bad_steps}); last logged loss {summary['loss']}. Lower the learning rate or check the data.")
    do_eval = (eval_every > 0 and step % eval_every == 0 and step >= eval_from) or last
    if do_eval or (ckpt_every > 0 and step % ckpt_every == 0):
      is_best = False
      if do_eval:
        metrics = evaluate(setup, eval_step, state, "dev", config.eval.batch_size, workdir)
        logger.write(step, "dev", metrics)
        last_dev = (step, metrics)
        if metric_key not in metrics:
          raise KeyError(f"eval.metric={metric_key!r} is not among the dev metrics {sorted(metrics)}")
        if _is_better(metrics[metric_key], meta["best"], task.best_mode):
          meta["best"], meta["best_step"], is_best = float(metrics[metric_key]), step, True
        stop = early_stop_reason(tcfg, meta, step, eval_every, task.best_mode)
      if stop is not None and not last:
        logging.info("stopping early at step %d of %d: %s", step, setup.num_steps, stop)
        if is_main:
          print(f"[train] stopping early at step {step} of {setup.num_steps}: {stop}", flush=True)
      ckpts.save(step, state, {**meta, **_iterator_meta(train_iter)}, is_best=is_best)
  bar.close()

  final = {}
  if ckpts.best_step() is not None:
    state, _, best_step = ckpts.restore("best", state)
    for split in config.eval.final_splits:
      if split == "dev" and last_dev is not None and last_dev[0] == best_step:
        # The best checkpoint is the state this run evaluated last: the same program on the same parameters and
        # data gives the same metrics (and has already written the same hypothesis files), so reuse them.
        metrics = last_dev[1]
      else:
        metrics = evaluate(setup, eval_step, state, split, config.eval.batch_size, workdir)
      logger.write(best_step, f"final/{split}", metrics)
      final[split] = metrics
    if is_main:
      with open(os.path.join(workdir, "final_metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"best_step": best_step, **final}, f, indent=2)
  logger.close()
  ckpts.close()
  return final


def evaluate_checkpoint(config, workdir: str, step: int | None = None, splits=None,
                        task: task_base.Task | None = None, average_last: int = 0) -> dict:
  """``--mode eval``: the best checkpoint of ``workdir`` (or the latest-kept one at ``step``) on each split.

  ``average_last`` = N > 1 evaluates instead the mean weights (``checkpointing.average_weights``) of the N newest
  checkpoints kept under 'latest' (those up to ``step`` if given); keep enough of them while training with
  ``train.keep_checkpoints`` and ``train.checkpoint_every_steps``.
  """
  if average_last < 0:
    raise ValueError(f"average_last must be >= 0, got {average_last}")
  setup = build(config, task)
  ckpts = checkpointing.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  averaged = []
  if average_last > 1:
    kept = [s for s in ckpts.kept_steps() if step is None or s <= step]
    if len(kept) < average_last:
      raise FileNotFoundError(
          f"cannot average the last {average_last} checkpoints: {len(kept)} kept in {workdir}/checkpoints/latest"
          f"{'' if step is None else f' up to step {step}'} ({kept}); train with a larger train.keep_checkpoints "
          f"and train.checkpoint_every_steps")
    averaged = kept[-average_last:]
    state = checkpointing.average_weights(ckpts.restore("latest", setup.state, step=s)[0] for s in averaged)
    step = averaged[-1]
  elif step is None:
    state, _, step = ckpts.restore("best", setup.state)
  else:
    state, _, step = ckpts.restore("latest", setup.state, step=step)
  eval_step = _Jitted(make_eval_step(setup), setup, train=False)
  results = {}
  for split in splits or config.eval.final_splits:
    results[split] = evaluate(setup, eval_step, state, split, config.eval.batch_size, workdir)
  ckpts.close()
  return {"step": step, **({"averaged_steps": averaged} if averaged else {}), **results}
