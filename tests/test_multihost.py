"""Multi-process training: 2 CPU processes over localhost run main.py, checkpoint, are killed, and resume exactly.

Also: the environment parsing and its one-line errors, the per-process split of the training data, and that a
2-process checkpoint evaluates to the same metrics in one process (replicated multi-process evaluation is right).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from configs import toy_regression
from hypersign_jax.tasks import toy_regression as toy_task
from hypersign_jax.training import distributed
from hypersign_jax.training import logging as train_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240  # per launch; a hung collective fails the test instead of blocking CI
N = 6            # checkpoint (and kill) at step N of 2N

# 2 processes x 2 CPU devices on a (data=2, fsdp=2) mesh: batch rows over all 4 devices, parameters >= 1 element
# split over 'fsdp' (within a process), so checkpoints hold shards written by different processes.
CONFIG = ["--config", "configs/toy_regression.py:smoke", f"--config.train.num_steps={2 * N}",
          "--config.train.log_every=1", f"--config.train.eval_every_steps={N}",
          f"--config.train.checkpoint_every_steps={N}", "--config.mesh.data=2", "--config.mesh.fsdp=2",
          "--config.mesh.fsdp_min_size=1"]

AHEAD = ["--config.train.compile_ahead=4"]

# main.py, with two test hooks: the trainer's train_iterator arguments are printed, and after the checkpoint at
# step PAUSE_AT is saved the process announces it and waits (to be SIGKILLed mid-run, like a preempted job).
HOOKED_MAIN = textwrap.dedent("""
    import os, runpy, sys, time
    from hypersign_jax.tasks import toy_regression
    from hypersign_jax.training import checkpointing
    pause_at = int(os.environ["TEST_PAUSE_AT"])
    save, make_iter = checkpointing.Checkpoints.save, toy_regression.ToyRegression.train_iterator

    def hooked_save(self, step, *args, **kwargs):
      save(self, step, *args, **kwargs)
      if step == pause_at:
        print(f"CHECKPOINTED {step}", flush=True)
        time.sleep(600)

    def hooked_iter(self, seed, batch_size, process_index=0, process_count=1):
      print(f"ITERATOR {process_index} {process_count} {batch_size}", flush=True)
      return make_iter(self, seed, batch_size, process_index, process_count)

    checkpointing.Checkpoints.save = hooked_save
    toy_regression.ToyRegression.train_iterator = hooked_iter
    sys.argv = ["main.py"] + sys.argv[1:]
    runpy.run_path("main.py", run_name="__main__")
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in distributed.ENV_VARS}
  env.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             **extra)
  return env


def _launch(workdir, log_dir, tag, args=(), hooked=False, num_processes=2, devices=2, pause_at=N):
  """Starts the processes of one job (stdout/stderr to files); returns the Popen objects."""
  port = _free_port()
  procs = []
  for pid in range(num_processes):
    extra = {}
    if num_processes > 1:
      extra = {distributed.ENV_COORDINATOR: f"127.0.0.1:{port}", distributed.ENV_NUM_PROCESSES: str(num_processes),
               distributed.ENV_PROCESS_ID: str(pid)}
    cmd = [sys.executable, "-c", HOOKED_MAIN] if hooked else [sys.executable, "main.py"]
    out = open(os.path.join(log_dir, f"{tag}.{pid}.out"), "w")
    err = open(os.path.join(log_dir, f"{tag}.{pid}.err"), "w")
    procs.append(subprocess.Popen(cmd + ["--workdir", str(workdir), *CONFIG, *args], cwd=ROOT, stdout=out,
                                  stderr=err, env=_env(devices, TEST_PAUSE_AT=str(pause_at), **extra)))
    out.close()
    err.close()
  return procs


def _read(log_dir, tag, pid, stream="out"):
  with open(os.path.join(log_dir, f"{tag}.{pid}.{stream}")) as f:
    return f.read()


def _wait(procs, log_dir, tag):
  deadline = time.time() + TIMEOUT_S
  for pid, p in enumerate(procs):
    try:
      p.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      pytest.fail(f"{tag}: process {pid} still running after {TIMEOUT_S} s:\n{_read(log_dir, tag, pid, 'err')[-3000:]}")
    assert p.returncode == 0, f"{tag}: process {pid} exited {p.returncode}:\n{_read(log_dir, tag, pid, 'err')[-3000:]}"


def _kill(procs):
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGKILL)
      p.wait()


def _train_events(workdir):
  return [(e["step"], e["loss"]) for e in train_logging.read_metrics(str(workdir)) if e["split"] == "train"]


def _checkpoint_arrays(workdir, step):
  """{path: NumPy array} of a checkpoint's state (written by 2 processes, read here as plain arrays)."""
  import jax  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  path = os.path.join(str(workdir), "checkpoints", "latest", str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                          checkpointer.metadata(path).item_metadata.tree)
  tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_two_processes_train_checkpoint_are_killed_and_resume_identically(tmp_path):
  logs = tmp_path / "logs"
  logs.mkdir()
  full, part = tmp_path / "full", tmp_path / "part"
  procs = []
  try:
    # 1. Uninterrupted 2-process run of 2N steps (checkpoints at N and 2N).
    procs = _launch(full, logs, "full")
    _wait(procs, logs, "full")
    # 2. The same job, SIGKILLed (both processes) once the checkpoint at step N is written ...
    # (with compile-ahead: 4 batches read ahead, programs compiled on background threads; the checkpoint must still
    # hold each process's iterator after the last batch trained)
    procs = _launch(part, logs, "part", args=AHEAD, hooked=True)
    deadline = time.time() + TIMEOUT_S
    while not all(f"CHECKPOINTED {N}" in _read(logs, "part", pid) for pid in range(2)):
      dead = [pid for pid, p in enumerate(procs) if p.poll() is not None]
      assert not dead, f"process {dead[0]} exited early:\n{_read(logs, 'part', dead[0], 'err')[-3000:]}"
      assert time.time() < deadline, "the killed run never reached its checkpoint"
      time.sleep(0.2)
    _kill(procs)
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
    # Each process read its own share (16 of the 32 rows) of every batch.
    for pid in range(2):
      assert f"ITERATOR {pid} 2 16" in _read(logs, "part", pid)
    assert max(s for s, _ in _train_events(part)) == N
    # ... and restarted with the same workdir: it resumes at N and finishes.
    procs = _launch(part, logs, "resume", args=AHEAD)
    _wait(procs, logs, "resume")
    # 3. One process evaluates the 2-process checkpoint (restored onto 1 device): the same metrics.
    procs = _launch(full, logs, "eval", args=["--mode", "eval", "--config.mesh.data=-1", "--config.mesh.fsdp=1"],
                    num_processes=1, devices=1)
    _wait(procs, logs, "eval")
  finally:
    _kill(procs)

  a, b = _train_events(full), _train_events(part)
  assert [s for s, _ in a] == list(range(1, 2 * N + 1))
  assert [s for s, _ in b] == list(range(1, 2 * N + 1))  # the killed run logged 1..N, the resumed one N+1..2N
  assert a == b  # bitwise-equal losses at every step
  dev = lambda w: [(e["step"], e["mse"]) for e in train_logging.read_metrics(str(w)) if e["split"] == "dev"]
  assert dev(full) == dev(part) and [s for s, _ in dev(full)] == [N, 2 * N]
  pa, pb = _checkpoint_arrays(full, 2 * N), _checkpoint_arrays(part, 2 * N)
  assert pa.keys() == pb.keys() and any("params" in k for k in pa)
  for key in pa:  # parameters, optimizer and BatchNorm state, RNG, step: bitwise equal
    np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)
  final_full = json.load(open(full / "final_metrics.json"))
  assert final_full == json.load(open(part / "final_metrics.json"))
  assert final_full["dev"]["num_samples"] == 128 and final_full["test"]["num_samples"] == 128
  one = json.loads(_read(logs, "eval", 0)[_read(logs, "eval", 0).index("{"):])
  assert one["step"] == final_full["best_step"]
  for split in ("dev", "test"):
    assert one[split]["mse"] == pytest.approx(final_full[split]["mse"], rel=1e-6)
  # Only process 0 wrote the metadata files; process 1 printed no metrics.
  assert "[train]" in _read(logs, "full", 0) and "[train]" not in _read(logs, "full", 1)


GLOBAL_BATCH_SCRIPT = textwrap.dedent("""
    import json
    from hypersign_jax.training import distributed
    distributed.initialize("env")
    import jax, numpy as np
    from jax.experimental import multihost_utils
    from hypersign_jax.training import sharding
    mesh = sharding.make_mesh(2, 2)
    local = {"x": np.arange(4, dtype=np.float32)[:, None] + 100 * jax.process_index()}
    whole = {"x": np.arange(8, dtype=np.float32)[:, None]}
    train = sharding.make_global_batch(local, mesh)["x"]
    evaluation = sharding.make_global_batch(whole, mesh, process_local=False)["x"]
    gather = lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)).ravel().tolist()
    print("RESULT" + json.dumps({"mesh": [[d.process_index for d in row] for row in mesh.devices],
                                 "train": gather(train), "train_shape": list(train.shape),
                                 "eval": gather(evaluation), "eval_shape": list(evaluation.shape)}))
""")


def test_global_batches_from_process_local_data(tmp_path):
  """Training: the global batch is the processes' local batches one after the other; evaluation: every process
  passes the whole batch and each device takes its rows."""
  port = _free_port()
  procs = []
  try:
    for pid in range(2):
      env = _env(2, **{distributed.ENV_COORDINATOR: f"127.0.0.1:{port}", distributed.ENV_NUM_PROCESSES: "2",
                       distributed.ENV_PROCESS_ID: str(pid)})
      procs.append(subprocess.Popen([sys.executable, "-c", GLOBAL_BATCH_SCRIPT], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
  finally:
    _kill(procs)
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
    result = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT"))[len("RESULT"):])
    assert result["mesh"] == [[0, 0], [1, 1]]  # 'data' across processes, 'fsdp' within one
    assert result["train_shape"] == [8, 1] and result["train"] == [0, 1, 2, 3, 100, 101, 102, 103]
    assert result["eval_shape"] == [8, 1] and result["eval"] == list(range(8))


def test_train_batches_are_split_between_processes():
  """Process p's local batch i holds global batch i's stream elements p, p + 2, ...: disjoint, and together the
  one-process batch (so the assembled global batch has the same rows, in process order)."""
  task = toy_task.ToyRegression(toy_regression.get_config("smoke"))
  whole = task.train_iterator(0, 32, 0, 1)
  hosts = [task.train_iterator(0, 16, p, 2) for p in range(2)]
  for _ in range(20):  # more than an epoch (16 steps)
    g = next(whole)
    local = [next(h) for h in hosts]
    assert all(l["x"].shape == (16, 8) for l in local)
    rows = lambda b: {r.tobytes() for r in b["x"]}
    assert not rows(local[0]) & rows(local[1])
    assert rows(local[0]) | rows(local[1]) == rows(g)
    np.testing.assert_array_equal(np.concatenate([local[0]["x"], local[1]["x"]]),
                                  np.concatenate([g["x"][0::2], g["x"][1::2]]))


def test_env_parsing_and_errors():
  env = lambda **kw: {k: str(v) for k, v in kw.items()}
  assert distributed.spec_from_env({}) is None
  spec = distributed.spec_from_env(env(JAX_COORDINATOR_ADDRESS="10.0.0.1:1234", JAX_NUM_PROCESSES=4,
                                       JAX_PROCESS_ID=3))
  assert spec == distributed.ProcessSpec("10.0.0.1:1234", 4, 3)
  cases = [
      (env(JAX_NUM_PROCESSES=2), "JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID are not"),
      (env(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES=2), "JAX_PROCESS_ID is not"),
      (env(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=2), "JAX_PROCESS_ID=2 is out of range"),
      (env(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=-1), "JAX_PROCESS_ID=-1 is out of"),
      (env(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES=0, JAX_PROCESS_ID=0), "JAX_NUM_PROCESSES=0 must be"),
      (env(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES="two", JAX_PROCESS_ID=0), "'two' is not an integer"),
      (env(JAX_COORDINATOR_ADDRESS="nohost", JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=0), "is not host:port"),
      (env(JAX_COORDINATOR_ADDRESS="h:99999", JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=0), "is not host:port"),
  ]
  for environ, message in cases:
    with pytest.raises(distributed.DistributedConfigError, match=message) as info:
      distributed.spec_from_env(environ)
    assert "\n" not in str(info.value)
  bad = env(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=5)
  assert distributed.initialize("off", bad) is None  # 'off' ignores the variables
  assert distributed.initialize("env", {}) is None   # nothing set: one process, nothing initialised
  with pytest.raises(distributed.DistributedConfigError, match="out of range"):
    distributed.initialize("env", bad)
  with pytest.raises(distributed.DistributedConfigError, match="unknown distributed mode"):
    distributed.initialize("mpi", {})
  assert distributed.allgather_json({"a": [1, 2]}) == [{"a": [1, 2]}]  # one process


def test_main_reports_a_bad_environment_in_one_line(tmp_path):
  env = _env(1, JAX_COORDINATOR_ADDRESS="127.0.0.1:1", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="2")
  proc = subprocess.run([sys.executable, "main.py", "--workdir", str(tmp_path), *CONFIG], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=TIMEOUT_S)
  assert proc.returncode == 2
  assert proc.stderr.strip() == ("main.py: error: JAX_PROCESS_ID=2 is out of range: process ids are 0 .. "
                                 "JAX_NUM_PROCESSES-1 = 1"), proc.stderr
