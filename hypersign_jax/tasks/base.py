"""The small interface through which the one generic trainer runs every task (CSLR, G2T, S2T, ...).

A task knows its model, its data and its metrics; the trainer knows none of them. The functions called inside
``jax.jit`` (``loss_fn``, ``eval_fn``) take an NNX model and a batch of device arrays; everything host-side
(decoding, WER/BLEU scoring, file writing) happens in ``compute_metrics``.
"""
from __future__ import annotations

import abc
from typing import Any, Iterable, Iterator, Protocol

import jax
from flax import nnx


class CheckpointableIterator(Protocol):
  """An iterator of host batches (dicts of NumPy arrays and host-only fields) whose position can be saved."""

  def __iter__(self) -> Iterator[dict]: ...

  def __next__(self) -> dict: ...

  def get_state(self) -> Any: ...

  def set_state(self, state: Any) -> None: ...


class Task(abc.ABC):
  """Base class of all tasks. ``config`` is the full (locked) ml_collections config."""

  #: Name of the metric used for model selection (a key of ``compute_metrics``' result) and its direction.
  best_metric: str = "loss"
  best_mode: str = "min"

  def __init__(self, config):
    self.config = config
    eval_cfg = config.get("eval", None)
    if eval_cfg is not None:
      self.best_metric = eval_cfg.get("metric", self.best_metric)
      self.best_mode = eval_cfg.get("mode", self.best_mode)
    if self.best_mode not in ("min", "max"):
      raise ValueError(f"eval.mode must be 'min' or 'max', got {self.best_mode!r}")

  # ---- model -------------------------------------------------------------------------------------------------
  @abc.abstractmethod
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    """The model with freshly initialised parameters (no I/O: the trainer traces this under ``jax.jit``)."""

  def load_weights(self, model: nnx.Module) -> None:
    """Loads the config's pretrained / initial weights into a freshly built ``model`` in place (file I/O, run
    eagerly after ``build_model``). Default: nothing to load."""
    del model

  # ---- data --------------------------------------------------------------------------------------------------
  @abc.abstractmethod
  def train_iterator(self, seed: int, batch_size: int, process_index: int = 0,
                     process_count: int = 1) -> CheckpointableIterator:
    """Endless iterator of this process's share (``batch_size`` rows) of each global training batch."""

  @abc.abstractmethod
  def train_size(self) -> int:
    """Number of training samples (defines an epoch)."""

  @abc.abstractmethod
  def eval_batches(self, split: str, batch_size: int) -> Iterable[dict]:
    """All samples of ``split`` exactly once, in fixed-size batches with a ``valid`` (B,) mask for padding rows.

    ``batch_size`` is the global batch size and every process yields the same batches (not a per-process share):
    the trainer's evaluation is replicated over processes (``trainer.evaluate``).
    """

  # ---- computation (inside jax.jit) --------------------------------------------------------------------------
  @abc.abstractmethod
  def loss_fn(self, model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
    """Training loss (scalar, float32) and a dict of scalar metrics to log."""

  def eval_fn(self, model: nnx.Module, batch: dict) -> Any:
    """Per-batch evaluation outputs (a pytree of arrays with leading batch dim). Default: the loss metrics."""
    loss, metrics = self.loss_fn(model, batch)
    return {"loss": loss, **metrics}

  # ---- host side ---------------------------------------------------------------------------------------------
  @abc.abstractmethod
  def compute_metrics(self, split: str, batches: list[dict], outputs: list[Any], workdir: str | None) -> dict:
    """Metrics of a split from its host batches and the matching ``eval_fn`` outputs (NumPy)."""


_REGISTRY: dict[str, type[Task]] = {}


def register(name: str):
  def wrap(cls):
    _REGISTRY[name] = cls
    return cls
  return wrap


def get_task(name: str) -> type[Task]:
  # Importing the package registers the built-in tasks.
  import hypersign_jax.tasks  # noqa: F401  pylint: disable=import-outside-toplevel
  if name not in _REGISTRY:
    raise ValueError(f"unknown task {name!r} (config key 'task'); known tasks: {sorted(_REGISTRY)}")
  return _REGISTRY[name]
