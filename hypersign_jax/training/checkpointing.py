"""Checkpoints behind one module (orbax-checkpoint ``CheckpointManager``, V0 API).

Two managers under ``<workdir>/checkpoints``:

* ``latest/`` keeps the newest ``keep`` checkpoints: the full training state (parameters, non-parameter model
  state such as BatchNorm statistics, optimizer state, step, RNG) plus a JSON item with the data-iterator state and
  the trainer's bookkeeping (best metric so far, bad-step count). ``--mode train`` resumes from it.
* ``best/`` keeps the one checkpoint with the best value of the configured metric (e.g. lowest dev WER, highest
  dev BLEU-4); ``--mode eval`` and the final evaluation read it.

Both are written synchronously in the order of the calls, so a run killed at any point resumes from a complete
checkpoint. Keeping this in one module means a move to orbax's V1 API touches one file.

Multi-process runs: every process calls ``save`` / ``restore`` / ``close`` at the same point (they are collective:
each process writes the array shards it owns, a replicated shard only once; process 0 writes the JSON item and
the metadata and commits the step directory after a barrier). ``workdir`` must be one directory all processes see
(a shared file system or a bucket path orbax supports).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


_WEIGHT_KEYS = ("params", "model_state")  # the parts of a train state `average_weights` averages


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  policy = ocp.checkpoint_managers.LatestN(n=keep)
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, enable_async_checkpointing=False,
                                         create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs carrying the shardings of ``tree`` (the restore target)."""
  def one(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x
  return jax.tree.map(one, tree)


class Checkpoints:
  """Latest-N and best-by-metric checkpoints of one training run."""

  def __init__(self, workdir: str, keep: int = 2):
    root = os.path.join(workdir, "checkpoints")
    self.latest = _manager(os.path.join(root, "latest"), keep)
    self.best = _manager(os.path.join(root, "best"), 1)

  def save(self, step: int, state: Any, meta: dict, is_best: bool = False) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    self.latest.save(step, args=args, force=True)
    if is_best:
      self.best.save(step, args=args, force=True)
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def kept_steps(self) -> list[int]:
    """The steps of the checkpoints kept under 'latest', oldest first."""
    return sorted(self.latest.all_steps())

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def restore(self, which: str, target: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """Restores (state, meta, step) from 'latest' or 'best' (``step`` picks one checkpoint of 'latest')."""
    manager = {"latest": self.latest, "best": self.best}[which]
    if step is None:
      step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"no {which!r} checkpoint in {manager.directory}")
    if step not in manager.all_steps():
      raise FileNotFoundError(
          f"no checkpoint at step {step} in {manager.directory}; available: {sorted(manager.all_steps())}")
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(target)), meta=ocp.args.JsonRestore())
    restored = manager.restore(step, args=args)
    return restored["state"], restored["meta"], step

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def average_weights(states: Iterable[dict]) -> dict:
  """The last of ``states`` with its weights replaced by their element-wise mean over all of them.

  Weights are the floating-point leaves of ``params`` and ``model_state`` (BatchNorm running statistics are
  averaged like the parameters); everything else (optimizer state, step, RNG, integer counters) is the last
  state's. The mean is a float32 running sum, cast back to each leaf's dtype; ``states`` may be a generator, so
  only one state and the sum are held at a time (full train states hold the optimizer's moments too). Checkpoint
  averaging of the last few epochs' weights is a common last step in neural machine translation.
  """
  def is_float(x):
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)

  def add(total, x):
    return total + jnp.asarray(x, jnp.float32) if is_float(x) else x

  total, last, count = None, None, 0
  for state in states:
    weights = {key: state[key] for key in _WEIGHT_KEYS}
    if total is None:
      total = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32) if is_float(x) else x, weights)
    else:
      total = jax.tree.map(add, total, weights)
    last, count = state, count + 1
  if last is None:
    raise ValueError("average_weights needs at least one state")
  out = dict(last)
  for key in _WEIGHT_KEYS:
    out[key] = jax.tree.map(lambda t, x: (t / count).astype(x.dtype) if is_float(x) else x, total[key], last[key])
  return out
