"""A resumable sequence of command-line stages: the runner behind the multi-stage recipes.

Each stage is one subprocess (a fresh interpreter, so every stage starts with clean JAX state) with its own
directory under the recipe workdir. A stage that exits 0 gets ``<dir>/STAGE_DONE.json`` (command, wall time, the
results it reports); a later run of the recipe skips every stage whose marker is present and whose command is
unchanged, so re-running after an interruption redoes only the unfinished stages, and the unfinished one resumes
from its own checkpoints (``main.py`` training resumes from its workdir). A changed command (e.g. an edited
override) invalidates that stage and every stage after it. A failing stage stops the recipe with its exit code
and the tail of its log; nothing after it runs.

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
  """
  name: str
  command: Sequence[str]
  directory: str
  results: Callable[[str], Any] | None = None
  description: str = ""


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


def _run_logged(stage: Stage, log_path: str, env: dict | None, echo: Callable[[str], None]) -> int:
  """Runs the command with stdout+stderr into the log; echoes the newest log line every few seconds."""
  with open(log_path, "ab") as log:
    log.write(f"\n$ {' '.join(stage.command)}\n".encode())
    log.flush()
    proc = subprocess.Popen(list(stage.command), stdout=log, stderr=subprocess.STDOUT, env=env)
    stop = threading.Event()

    def heartbeat():
      start = time.time()
      last = ""
      while not stop.wait(10.0):
        line = _tail(log_path, 1).strip()[:110]
        if line and line != last:
          echo(f"    [{stage.name} {time.time() - start:6.0f}s] {line}")
          last = line

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
      return proc.wait()
    except BaseException:
      proc.kill()
      proc.wait()
      raise
    finally:
      stop.set()
      thread.join()


def run_stages(stages: Sequence[Stage], workdir: str, *, env: dict | None = None,
               echo: Callable[[str], None] = print) -> list[dict]:
  """Runs ``stages`` in order, skipping finished ones; returns one record per stage.

  Record: {'name', 'description', 'status': 'done' | 'skipped', 'seconds' (of the run that produced it),
  'results'}. Raises ``StageFailed`` on the first failing stage.
  """
  names = [s.name for s in stages]
  if len(set(names)) != len(names):
    raise ValueError(f"stage names must be unique: {names}")
  log_dir = os.path.join(workdir, "logs")
  os.makedirs(log_dir, exist_ok=True)
  records = []
  invalidated = False
  for stage in stages:
    marker = _marker(stage)
    if marker is not None and not invalidated and marker.get("command") == list(stage.command):
      echo(f"[{stage.name}] done earlier ({marker.get('seconds', 0.0):.0f} s), skipped")
      records.append({"name": stage.name, "description": stage.description, "status": "skipped",
                      "seconds": float(marker.get("seconds", 0.0)), "results": marker.get("results")})
      continue
    if marker is not None:  # stale: its inputs or command changed
      os.remove(os.path.join(stage.directory, DONE_FILE))
    invalidated = True  # everything downstream of a (re)run stage runs again
    os.makedirs(stage.directory, exist_ok=True)
    log_path = os.path.join(log_dir, f"{stage.name}.log")
    echo(f"[{stage.name}] {stage.description or ''} (log: {log_path})")
    start = time.time()
    code = _run_logged(stage, log_path, env, echo)
    seconds = time.time() - start
    if code != 0:
      raise StageFailed(stage.name, code, log_path, _tail(log_path))
    results = stage.results(stage.directory) if stage.results else None
    with open(os.path.join(stage.directory, DONE_FILE), "w", encoding="utf-8") as f:
      json.dump({"command": list(stage.command), "seconds": seconds, "results": results}, f, indent=2,
                default=float)
    echo(f"[{stage.name}] finished in {seconds:.0f} s")
    records.append({"name": stage.name, "description": stage.description, "status": "done", "seconds": seconds,
                    "results": results})
  return records


def python_command(*args: str) -> list[str]:
  """argv running this interpreter (the recipe's own virtualenv) with ``args``."""
  return [sys.executable, *args]


def remove_stage(stage: Stage) -> None:
  """Deletes a stage's directory (used to force a stage to run from scratch)."""
  shutil.rmtree(stage.directory, ignore_errors=True)
