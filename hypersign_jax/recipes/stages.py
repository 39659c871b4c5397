"""A resumable graph of command-line stages: the runner behind the multi-stage recipes.

Each stage is one subprocess (a fresh interpreter, so every stage starts with clean JAX state) with its own
directory under the recipe workdir. A stage names the stages whose outputs it reads (``after``; by default the
stage before it, i.e. a plain sequence). A stage that exits 0 gets ``<dir>/STAGE_DONE.json`` (command, wall time,
the results it reports); a later run of the recipe skips every stage whose marker is present, whose command is
unchanged and none of whose inputs ran again, so re-running after an interruption redoes only the unfinished
stages, and the unfinished one resumes from its own checkpoints (``main.py`` training resumes from its workdir). A
changed command (e.g. an edited override) invalidates that stage and every stage that (transitively) reads it.

With ``max_parallel > 1`` stages whose inputs are all finished run side by side (for machines with cores to spare:
on 2 CPU cores two training stages side by side were measured slower than in sequence). A stage marked
``low_priority`` runs at the operating system's idle priority (Linux ``SCHED_IDLE``, elsewhere ``nice 19``) as soon
as its inputs are finished, beside the others and outside ``max_parallel`` (at most ``max_low_priority`` at a time):
it gets the CPU time the normal-priority stages leave unused (a training stage on 2 cores leaves ≈ 13 % idle:
Python, data loading, synchronisation) and all of it once they are done, so stages off the critical path finish
early without delaying the ones on it. Priority does not change what a stage computes. A failing stage stops the
recipe with its exit code and the tail of its log: stages still running are terminated (their checkpoints stay, so a
re-run resumes them) and nothing new starts.

Output of each stage goes to ``<workdir>/logs/<stage>.log``; the console shows one line per stage and, while a
stage runs, its last log line (progress bars included) refreshed every few seconds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

DONE_FILE = "STAGE_DONE.json"


class StageFailed(RuntimeError):
  """A stage's command exited with a non-zero status."""

  def __init__(self, stage: str, returncode: int, log_path: str, tail: str):
    super().__init__(f"stage {stage!r} failed with exit code {returncode}; log: {log_path}\n{tail}")
    self.stage, self.returncode, self.log_path = stage, returncode, log_path


@dataclasses.dataclass
class Stage:
  """One step of a recipe.

  Attributes:
    name: unique stage name (also the log file name).
    command: argv of the subprocess.
    directory: the stage's output directory (holds the done marker); created before the command runs.
    results: called after success with the stage directory, returns the JSON-able results stored in the marker
      (e.g. the final metrics of a training run).
    description: one line for the summary.
    after: names of the stages whose outputs this one reads (they must come earlier in the list); None (default)
      = the stage just before it (none for the first), () = no inputs from other stages.
    low_priority: run at idle OS priority beside the other stages (module docstring); not part of the command, so
      changing it does not invalidate a finished stage.
  """
  name: str
  command: Sequence[str]
  directory: str
  results: Callable[[str], Any] | None = None
  description: str = ""
  after: Sequence[str] | None = None
  low_priority: bool = False


# Run in front of a low-priority stage's command: lowers the priority of its own process, then replaces itself with
# the command (exec), so the stage and every thread and process it starts inherit the priority. (A ``preexec_fn``
# would do the same in the forked child, but forking a process whose JAX runtime has threads risks a deadlock.)
_LOW_PRIORITY_EXEC = """import os, sys
try:
  os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
  os.nice(19)
os.execvp(sys.argv[1], sys.argv[1:])
"""


def launch_argv(stage: Stage) -> list[str]:
  """The argv that runs ``stage``: its command, behind the priority-lowering exec for a low-priority stage."""
  command = list(stage.command)
  return [sys.executable, "-c", _LOW_PRIORITY_EXEC, *command] if stage.low_priority else command


def _marker(stage: Stage) -> dict | None:
  path = os.path.join(stage.directory, DONE_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def _tail(path: str, n: int = 20) -> str:
  try:
    with open(path, "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 16384))
      text = f.read().decode("utf-8", "replace")
  except OSError:
    return ""
  lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
  return "\n".join(lines[-n:])


class _Running:
  """One stage's subprocess (stdout + stderr into its log) and a heartbeat echoing the newest log line."""

  def __init__(self, stage: Stage, log_path: str, env: dict | None, echo: Callable[[str], None],
               on_exit: Callable[[], None]):
    self.stage, self.log_path, self.start = stage, log_path, time.time()
    self.returncode: int | None = None
    self._log = open(log_path, "ab")  # pylint: disable=consider-using-with
    self._log.write(f"\n$ {' '.join(stage.command)}\n".encode())
    self._log.flush()
    self.proc = subprocess.Popen(launch_argv(stage), stdout=self._log, stderr=subprocess.STDOUT, env=env)
    self._stop = threading.Event()
    self._echo, self._on_exit = echo, on_exit
    self._threads = [threading.Thread(target=self._heartbeat, daemon=True),
                     threading.Thread(target=self._wait, daemon=True)]
    for t in self._threads:
      t.start()

  def _heartbeat(self):
    last = ""
    while not self._stop.wait(10.0):
      line = _tail(self.log_path, 1).strip()[:110]
      if line and line != last:
        self._echo(f"    [{self.stage.name} {time.time() - self.start:6.0f}s] {line}")
        last = line

  def _wait(self):
    code = self.proc.wait()
    self.seconds = time.time() - self.start
    self._stop.set()
    self._log.close()
    self.returncode = code
    self._on_exit()

  def kill(self):
    if self.proc.poll() is None:
      self.proc.kill()
    for t in self._threads:
      t.join()


def _inputs(stages: Sequence[Stage]) -> dict[str, tuple[str, ...]]:
  """Each stage's input stages (``after`` resolved), checked to name earlier stages."""
  names = [s.name for s in stages]
  if len(set(names)) != len(names):
    raise ValueError(f"stage names must be unique: {names}")
  inputs = {}
  for i, stage in enumerate(stages):
    after = (names[i - 1],) if stage.after is None and i else tuple(stage.after or ())
    unknown = [a for a in after if a not in names[:i]]
    if unknown:
      raise ValueError(f"stage {stage.name!r} runs after {unknown}, which are not stages listed before it "
                       f"(stages: {names})")
    inputs[stage.name] = after
  return inputs


def run_stages(stages: Sequence[Stage], workdir: str, *, env: dict | None = None,
               echo: Callable[[str], None] = print, max_parallel: int = 1, max_low_priority: int = 2) -> list[dict]:
  """Runs ``stages`` (in list order once their inputs are finished: up to ``max_parallel`` normal-priority stages
  and, beside them, up to ``max_low_priority`` ``low_priority`` ones at a time), skipping finished ones; returns
  one record per stage, in list order.

  Record: {'name', 'description', 'status': 'done' | 'skipped', 'seconds' (of the run that produced it),
  'started' / 'ended' (seconds since this call, for stages run now), 'low_priority' (for stages run now),
  'results'}. Raises ``StageFailed`` on the first failing stage.
  """
  if int(max_parallel) < 1:
    raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
  if int(max_low_priority) < 1:
    raise ValueError(f"max_low_priority must be >= 1, got {max_low_priority}")
  inputs = _inputs(stages)
  log_dir = os.path.join(workdir, "logs")
  os.makedirs(log_dir, exist_ok=True)
  t0 = time.time()
  records: dict[str, dict] = {}
  reran: set[str] = set()  # stages (re)run by this call: everything reading them runs again
  pending = list(stages)
  running: dict[str, _Running] = {}
  changed = threading.Event()  # set by a stage's process exiting

  def finish(run: _Running):
    stage = run.stage
    if run.returncode != 0:  # the stages still running are killed below
      raise StageFailed(stage.name, run.returncode, run.log_path, _tail(run.log_path))
    results = stage.results(stage.directory) if stage.results else None
    with open(os.path.join(stage.directory, DONE_FILE), "w", encoding="utf-8") as f:
      json.dump({"command": list(stage.command), "seconds": run.seconds, "results": results}, f, indent=2,
                default=float)
    echo(f"[{stage.name}] finished in {run.seconds:.0f} s")
    records[stage.name] = {"name": stage.name, "description": stage.description, "status": "done",
                           "seconds": run.seconds, "started": run.start - t0, "ended": time.time() - t0,
                           "low_priority": stage.low_priority, "results": results}

  try:
    while pending or running:
      changed.clear()
      for name in [n for n, r in running.items() if r.returncode is not None]:
        finish(running.pop(name))
      progressed = False
      for stage in list(pending):
        if any(a not in records for a in inputs[stage.name]):
          continue  # an input is not finished yet
        marker = _marker(stage)
        stale = any(a in reran for a in inputs[stage.name])
        if marker is not None and not stale and marker.get("command") == list(stage.command):
          pending.remove(stage)
          progressed = True
          echo(f"[{stage.name}] done earlier ({marker.get('seconds', 0.0):.0f} s), skipped")
          records[stage.name] = {"name": stage.name, "description": stage.description, "status": "skipped",
                                 "seconds": float(marker.get("seconds", 0.0)), "results": marker.get("results")}
          continue
        busy = sum(r.stage.low_priority == stage.low_priority for r in running.values())
        if busy >= (max_low_priority if stage.low_priority else max_parallel):
          continue  # its priority class is full (a stage of the other class may still start)
        pending.remove(stage)
        progressed = True
        if marker is not None:  # stale: its inputs or command changed
          os.remove(os.path.join(stage.directory, DONE_FILE))
        reran.add(stage.name)
        os.makedirs(stage.directory, exist_ok=True)
        log_path = os.path.join(log_dir, f"{stage.name}.log")
        low = " (low priority, beside the others)" if stage.low_priority else ""
        echo(f"[{stage.name}] {stage.description or ''}{low} (log: {log_path})")
        running[stage.name] = _Running(stage, log_path, env, echo, changed.set)
      if not progressed and running:
        changed.wait(5.0)
  except BaseException:
    for run in running.values():
      run.kill()
    raise
  return [records[s.name] for s in stages]


def python_command(*args: str) -> list[str]:
  """argv running this interpreter (the recipe's own virtualenv) with ``args``."""
  return [sys.executable, *args]


def remove_stage(stage: Stage) -> None:
  """Deletes a stage's directory (used to force a stage to run from scratch)."""
  shutil.rmtree(stage.directory, ignore_errors=True)
