"""Compile-ahead: the trainer's step programs compiled on background threads before their first batch arrives.

A length-bucketed pipeline yields batches of several shapes, and each shape is its own compiled program (seconds to
tens of seconds each for a video model on a CPU). Compiled one after another on first use, each holds the training
loop up. Here the trainer reads ``train.compile_ahead`` batches ahead (``Lookahead``), and ``StepPrograms``
compiles every new batch signature among them on ``train.compile_threads`` background threads while the loop
trains on the programs already compiled. The dev split is read once on a pool thread for its signatures
(``trainer._prefetch_eval_programs``), so the first evaluation does not wait for its compiles either (it waits
only for that read when it comes before the read has finished, so no program compiles on the training thread).

Reading ahead does not change what is trained: the batches come out in the same order, and ``Lookahead``'s
iterator state is the wrapped iterator's state after the last batch handed out (not after the last one read), so
checkpoints resume exactly where an uninterrupted run would be.
"""
from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Any, Callable, Iterator

import jax
import numpy as np

from hypersign_jax.training import sharding


class Lookahead:
  """Wraps a checkpointable iterator (``get_state`` / ``set_state``) with a read-ahead buffer."""

  def __init__(self, iterator):
    self._it = iterator
    self._buffer: collections.deque = collections.deque()
    self._state = iterator.get_state()  # the state after the last batch handed out

  def fill(self, depth: int) -> list:
    """Reads until ``depth`` batches are buffered (fewer at the end of the iterator); returns the buffered batches."""
    while len(self._buffer) < depth:
      try:
        batch = next(self._it)
      except StopIteration:
        break
      self._buffer.append((batch, self._it.get_state()))
    return [batch for batch, _ in self._buffer]

  def __iter__(self):
    return self

  def __next__(self):
    if not self._buffer:
      self.fill(1)
      if not self._buffer:
        raise StopIteration
    batch, self._state = self._buffer.popleft()
    return batch

  def get_state(self):
    return self._state

  def set_state(self, state) -> None:
    self._buffer.clear()
    self._it.set_state(state)
    self._state = self._it.get_state()

  def __getattr__(self, name):  # e.g. the pipeline's ``stats``
    return getattr(self._it, name)


def abstract_state(state, shardings):
  """ShapeDtypeStructs (with shardings) of the train state: what a step program is compiled for."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s, weak_type=getattr(x, "weak_type", False)),
      state, shardings)


def abstract_global_batch(batch: dict, mesh: jax.sharding.Mesh, process_local: bool) -> dict:
  """ShapeDtypeStructs of the global arrays ``sharding.make_global_batch`` makes from a NumPy device batch."""
  rows = jax.process_count() if process_local else 1
  return jax.tree.map(
      lambda v: jax.ShapeDtypeStruct((v.shape[0] * rows,) + tuple(v.shape[1:]), v.dtype,
                                     sharding=sharding.batch_sharding(mesh, np.ndim(v))), batch)


class StepPrograms:
  """Compiled programs of one step function, one per batch signature; compiles on a shared thread pool.

  ``compile_fn(abstract_batch)`` lowers and compiles the step for that batch shape. ``prefetch`` schedules a
  compile in the background (once per signature); ``get`` returns the program, waiting for a scheduled compile or
  compiling on the calling thread if none was scheduled.
  """

  def __init__(self, compile_fn: Callable[[dict], Any], pool: concurrent.futures.Executor | None):
    self._compile = compile_fn
    self._pool = pool
    self._programs: dict[tuple, Any] = {}
    self._lock = threading.Lock()

  def prefetch(self, abstract_batch: dict) -> None:
    if self._pool is None:
      return
    sig = sharding.batch_signature(abstract_batch)
    with self._lock:
      if sig not in self._programs:
        self._programs[sig] = self._pool.submit(self._compile, abstract_batch)

  def get(self, abstract_batch: dict):
    sig = sharding.batch_signature(abstract_batch)
    with self._lock:
      entry = self._programs.get(sig)
      own = entry is None
      if own:  # registered before compiling, so a prefetch of the same signature meanwhile does not compile it again
        entry = self._programs[sig] = concurrent.futures.Future()
    if own:
      try:
        program = self._compile(abstract_batch)
      except BaseException as e:
        entry.set_exception(e)
        with self._lock:  # a later request tries again (and meets the same error itself)
          del self._programs[sig]
        raise
      entry.set_result(program)
    elif isinstance(entry, concurrent.futures.Future):
      program = entry.result()  # re-raises a compile error on the thread that needs the program
    else:
      program = entry
    with self._lock:
      self._programs[sig] = program
    return program

  def __len__(self) -> int:
    return len(self._programs)

  def __contains__(self, abstract_batch: dict) -> bool:
    """Whether a program for this batch's signature is compiled or scheduled."""
    with self._lock:
      return sharding.batch_signature(abstract_batch) in self._programs

  def compiled(self) -> list:
    """Every program, in order of first request (waits for scheduled compiles)."""
    with self._lock:
      entries = list(self._programs.values())
    return [e.result() if isinstance(e, concurrent.futures.Future) else e for e in entries]


def signatures_in_order(batches: Iterator[dict]) -> list[dict]:
  """The first batch of every distinct signature, in order of first appearance."""
  seen, out = set(), []
  for batch in batches:
    sig = sharding.batch_signature(batch)
    if sig not in seen:
      seen.add(sig)
      out.append(batch)
  return out
