"""Compile-ahead (training/compile_ahead.py): same training, exact resume, programs compiled on pool threads."""
import concurrent.futures
import threading
import time

import grain
import jax
import numpy as np
import pytest

from configs import toy_regression
from hypersign_jax.tasks import toy_regression as toy_task
from hypersign_jax.training import compile_ahead, logging as train_logging, trainer


class ShapedToy(toy_task.ToyRegression):
  """The toy task with batches of three signatures (an unused 'pad' field of width 1, 2 or 3, in runs)."""

  def train_iterator(self, seed, batch_size, process_index=0, process_count=1):
    data = self._splits["train"]
    ds = grain.MapDataset.range(len(data["x"])).seed(seed).shuffle().repeat()
    ds = ds.map(lambda i: {"x": data["x"][i], "y": data["y"][i]}).batch(batch_size, drop_remainder=True)
    ds = ds.map_with_index(lambda k, b: {**b, "pad": np.zeros((batch_size, 1 + (k // 4) % 3), np.float32)})
    return iter(ds.to_iter_dataset())


def config(num_steps, ahead):
  c = toy_regression.get_config("smoke")
  c.train.tensorboard = False
  c.train.log_every = 1
  c.train.eval_every_epochs = 0
  c.train.eval_every_steps = 5
  c.train.num_steps = num_steps
  c.train.compile_ahead = ahead
  return c


def losses(workdir):
  return [(e["step"], e["loss"]) for e in train_logging.read_metrics(workdir) if e["split"] == "train"]


def test_compile_ahead_trains_the_same_and_resumes_exactly(tmp_path, monkeypatch):
  threads = []
  real = trainer._Jitted._compile

  def spy(self, batch):
    threads.append(threading.current_thread().name)
    return real(self, batch)

  monkeypatch.setattr(trainer._Jitted, "_compile", spy)
  real_dev = trainer._prefetch_eval_programs

  def slow_dev(*args):  # the dev split read slowly: the first evaluation (step 5) comes before its signatures
    time.sleep(3)
    return real_dev(*args)

  monkeypatch.setattr(trainer, "_prefetch_eval_programs", slow_dev)
  plain, ahead, part = (str(tmp_path / n) for n in ("plain", "ahead", "part"))
  trainer.train_and_evaluate(config(24, 0), plain, ShapedToy(config(24, 0)))
  assert threads and all(t == "MainThread" for t in threads)
  threads.clear()
  trainer.train_and_evaluate(config(24, 8), ahead, ShapedToy(config(24, 8)))
  # three train signatures and the dev one, each compiled once and on the pool (the first 8 batches hold 2
  # signatures, the third is met while topping the read-ahead up; the first evaluation waits for the dev read)
  assert len(threads) == 4 and all(t.startswith("compile") for t in threads), threads
  assert losses(ahead) == losses(plain)  # bitwise: the same programs on the same batches in the same order
  # stop at step 10 with 8 batches read ahead, resume: the checkpoint holds the iterator after step 10's batch
  trainer.train_and_evaluate(config(10, 8), part, ShapedToy(config(10, 8)))
  trainer.train_and_evaluate(config(24, 8), part, ShapedToy(config(24, 8)))
  assert losses(part) == losses(plain)


class Counter:
  """A checkpointable iterator over 0, 1, 2, ... (state = the next value), ending at ``end``."""

  def __init__(self, end):
    self.next_value, self.end = 0, end

  def __next__(self):
    if self.next_value >= self.end:
      raise StopIteration
    self.next_value += 1
    return self.next_value - 1

  def get_state(self):
    return {"next": self.next_value}

  def set_state(self, state):
    self.next_value = state["next"]


def test_lookahead_state_follows_what_was_handed_out():
  it = compile_ahead.Lookahead(Counter(10))
  assert it.fill(4) == [0, 1, 2, 3]
  assert it.get_state() == {"next": 0}
  assert [next(it), next(it)] == [0, 1]
  assert it.get_state() == {"next": 2}
  assert it.fill(20) == [2, 3, 4, 5, 6, 7, 8, 9]  # fewer at the end
  it.set_state({"next": 7})
  assert list(it) == [7, 8, 9]
  with pytest.raises(StopIteration):
    next(it)


def test_step_programs_compile_once_per_signature_and_pass_errors_on():
  calls = []

  def compile_fn(batch):
    calls.append(batch["x"].shape)
    if batch["x"].shape == (3,):
      raise RuntimeError("cannot compile (3,)")
    return lambda: batch["x"].shape

  a, b, bad = ({"x": jax.ShapeDtypeStruct(s, np.float32)} for s in ((1,), (2,), (3,)))
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    programs = compile_ahead.StepPrograms(compile_fn, pool)
    for batch in (a, b, a, bad):
      programs.prefetch(batch)
    assert programs.get(a)() == (1,) and programs.get(b)() == (2,) and programs.get(a)() == (1,)
    with pytest.raises(RuntimeError, match="cannot compile"):
      programs.get(bad)
    assert a in programs and bad in programs and {"x": jax.ShapeDtypeStruct((4,), np.float32)} not in programs
    del programs._programs[compile_ahead.sharding.batch_signature(bad)]  # keep compiled() to the good ones
    assert [p() for p in programs.compiled()[:2]] == [(1,), (2,)]
  assert sorted(calls) == [(1,), (2,), (3,)]
  direct = compile_ahead.StepPrograms(compile_fn, None)  # no pool: compiles on first use
  assert direct.get(b)() == (2,) and len(direct) == 1


def test_a_program_compiling_on_the_calling_thread_is_not_compiled_again_by_a_prefetch():
  calls, started, release = [], threading.Event(), threading.Event()

  def compile_fn(batch):
    calls.append(threading.current_thread().name)
    if batch["x"].shape == (3,):
      raise RuntimeError("cannot compile (3,)")
    started.set()
    release.wait(10)
    return lambda: batch["x"].shape

  a, bad = ({"x": jax.ShapeDtypeStruct(s, np.float32)} for s in ((1,), (3,)))
  with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool") as pool:
    programs = compile_ahead.StepPrograms(compile_fn, pool)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="loop") as loop:
      got = loop.submit(programs.get, a)  # no prefetch: compiles on the calling ("loop") thread
      assert started.wait(10)
      programs.prefetch(a)  # meanwhile: must not schedule a second compile
      release.set()
      assert got.result(10)() == (1,)
    assert programs.get(a)() == (1,)
    for _ in range(2):  # a failed compile is not kept: each request meets the error itself
      with pytest.raises(RuntimeError, match="cannot compile"):
        programs.get(bad)
    assert bad not in programs
  assert calls == ["loop_0", "MainThread", "MainThread"]
