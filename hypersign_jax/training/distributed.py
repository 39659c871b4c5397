"""Multi-process (multi-host) JAX: ``jax.distributed.initialize`` from the environment, and small host collectives.

One training job = N identical processes, each owning its local devices (one GPU, a GPU node, or CPU devices) and
reading its own slice of every training batch. They find each other through a coordinator (process 0's
``host:port``), given in the standard environment variables:

  JAX_COORDINATOR_ADDRESS=10.0.0.1:12345   # process 0's address and a free port, the same for all processes
  JAX_NUM_PROCESSES=2                      # number of processes
  JAX_PROCESS_ID=0                         # this process, 0 .. N-1
  JAX_LOCAL_DEVICE_IDS=0,1                 # optional: the local devices this process uses (read by JAX itself)

``initialize(mode)`` (called by main.py before any other JAX use):

* ``mode='env'`` (default): initialise iff any of the three variables is set; all three must then be set and
  valid (else ``DistributedConfigError``, one line). None set: a single-process run, nothing is initialised.
* ``mode='auto'``: ``jax.distributed.initialize()`` with JAX's cluster auto-detection (SLURM, Open MPI, Cloud TPU,
  Kubernetes, ...); the variables above, where set, take precedence over detected values.
* ``mode='off'``: never initialise (the variables are ignored).

On CPU, cross-process collectives use gloo over TCP (``jax_cpu_collectives_implementation``), unless the user
chose an implementation (e.g. ``JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi``). Everything else about multi-host
training (per-process data, global arrays, collective checkpoints, replicated evaluation) is in the trainer.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import numpy as np

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_VARS = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
MODES = ("env", "auto", "off")


class Error(RuntimeError):
  """Base class of this module's errors (their messages are one line, for main.py's error convention)."""


class DistributedConfigError(Error, ValueError):
  """The multi-process environment variables are partial or invalid."""


class DistributedInitError(Error):
  """``jax.distributed.initialize`` failed (coordinator unreachable, port in use, time-out, ...)."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
  """Where this process sits in a multi-process job, as read from the environment."""
  coordinator_address: str
  num_processes: int
  process_id: int


def _parse_int(name: str, text: str) -> int:
  try:
    return int(text.strip())
  except ValueError:
    raise DistributedConfigError(f"{name}={text!r} is not an integer") from None


def spec_from_env(environ: Mapping[str, str] | None = None) -> ProcessSpec | None:
  """The process spec from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``.

  Returns None when none of them is set (a single-process run). Raises ``DistributedConfigError`` (one line)
  when only some are set, or a value is invalid.
  """
  environ = os.environ if environ is None else environ
  values = {name: environ.get(name, "").strip() for name in ENV_VARS}
  present = [name for name in ENV_VARS if values[name]]
  if not present:
    return None
  missing = [name for name in ENV_VARS if not values[name]]
  if missing:
    raise DistributedConfigError(
        f"{', '.join(f'{n}={values[n]}' for n in present)} is set but {', '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not: a multi-process run needs all of {', '.join(ENV_VARS)} "
        "(or none for one process; --distributed=auto uses SLURM/Open MPI/TPU auto-detection)")
  address = values[ENV_COORDINATOR]
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedConfigError(f"{ENV_COORDINATOR}={address!r} is not host:port (e.g. 10.0.0.1:12345, the "
                                 "address of process 0 and a free port)")
  num = _parse_int(ENV_NUM_PROCESSES, values[ENV_NUM_PROCESSES])
  if num < 1:
    raise DistributedConfigError(f"{ENV_NUM_PROCESSES}={num} must be at least 1")
  pid = _parse_int(ENV_PROCESS_ID, values[ENV_PROCESS_ID])
  if not 0 <= pid < num:
    raise DistributedConfigError(f"{ENV_PROCESS_ID}={pid} is out of range: process ids are 0 .. "
                                 f"{ENV_NUM_PROCESSES}-1 = {num - 1}")
  return ProcessSpec(address, num, pid)


def _use_gloo_on_cpu(jax) -> None:
  """Cross-process CPU collectives over gloo/TCP, unless an implementation was chosen (flag or env variable)."""
  try:
    current = jax.config.jax_cpu_collectives_implementation
  except AttributeError:  # a JAX without the option: nothing to choose
    return
  if current in (None, "none", ""):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _one_line(error: BaseException) -> str:
  text = str(error).strip()
  return f"{type(error).__name__}: {text.splitlines()[0] if text else error!r}"


def initialize(mode: str = "env", environ: Mapping[str, str] | None = None,
               timeout_s: int = 300) -> ProcessSpec | None:
  """Initialises multi-process JAX as ``mode`` says (see the module docstring); call before any other JAX use.

  Returns the spec read from the environment ('env' mode), the detected process count and index ('auto' mode,
  coordinator_address 'auto'), or None for a single-process run.
  """
  if mode not in MODES:
    raise DistributedConfigError(f"unknown distributed mode {mode!r}; expected one of {', '.join(MODES)}")
  if mode == "off":
    return None
  spec = spec_from_env(environ) if mode == "env" else None
  if mode == "env" and spec is None:
    return None
  import jax  # pylint: disable=import-outside-toplevel
  _use_gloo_on_cpu(jax)
  try:
    if spec is not None:
      # The environment is authoritative: no cluster auto-detection (it could override the values above).
      jax.distributed.initialize(spec.coordinator_address, spec.num_processes, spec.process_id,
                                 cluster_detection_method="deactivate", initialization_timeout=timeout_s)
    else:
      env = os.environ if environ is None else environ
      num = env.get(ENV_NUM_PROCESSES)
      pid = env.get(ENV_PROCESS_ID)
      jax.distributed.initialize(
          num_processes=_parse_int(ENV_NUM_PROCESSES, num) if num else None,
          process_id=_parse_int(ENV_PROCESS_ID, pid) if pid else None,
          initialization_timeout=timeout_s)
  except DistributedConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (XlaRuntimeError, ValueError, ...: reported in one line)
    where = (f"process {spec.process_id} of {spec.num_processes}, coordinator {spec.coordinator_address}"
             if spec is not None else "auto-detected cluster")
    hint = "" if spec is not None else (" (no SLURM / Open MPI / TPU / Kubernetes job found? then set "
                                        f"{', '.join(ENV_VARS)} and use --distributed=env)")
    raise DistributedInitError(f"jax.distributed.initialize ({where}) failed: {_one_line(e)}{hint}") from e
  if spec is None:  # auto-detected: the coordinator address is not exposed by JAX's public API
    spec = ProcessSpec("auto", jax.process_count(), jax.process_index())
  return spec


# ---------------------------------------------------------------------------------------------------------------
# Host-side collectives (every process must call them at the same point)
# ---------------------------------------------------------------------------------------------------------------
def allgather_json(obj: Any) -> list[Any]:
  """Every process's JSON-serialisable ``obj``, in process order (``[obj]`` in a single-process run)."""
  import jax  # pylint: disable=import-outside-toplevel
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  data = np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), np.uint8)
  lengths = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int32))).reshape(-1)
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:len(data)] = data
  gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
  return [json.loads(bytes(row[:n]).decode("utf-8")) for row, n in zip(gathered, lengths)]
