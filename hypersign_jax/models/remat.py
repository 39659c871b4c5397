"""Rematerialisation (gradient checkpointing) of submodule calls, selected by name in the model configs.

A checkpointed call runs ``module(*args)`` under ``nnx.remat`` (the NNX-lifted ``jax.checkpoint``): the backward
pass recomputes the module's internal activations instead of keeping them alive from the forward pass, so only the
call's inputs (and whatever the policy saves) stay in memory. The module object is the same one, so parameter
paths, checkpoints and converters are unaffected; BatchNorm statistics and dropout RNG counters updated inside the
call are written back exactly as without remat, and the recomputation draws the same dropout masks (the keys are
inputs of the checkpointed function), so gradients are unchanged up to float rounding.

Granularities are chosen per model (``SlowFastConfig.remat``: 'none' | 'block' | 'stage';
``MBartConfig.remat``: 'none' | 'layer'); the policy is one of ``POLICIES`` by name ('' = JAX's default: save
nothing but the call's inputs, like 'nothing_saveable'; 'dots_saveable' keeps matmul/conv outputs and recomputes
only the cheap elementwise work).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

POLICIES = ('', 'nothing_saveable', 'everything_saveable', 'dots_saveable', 'dots_with_no_batch_dims_saveable')


def policy_fn(name: str) -> Callable[..., bool] | None:
  """A ``jax.checkpoint_policies`` function by name ('' = None, JAX's default)."""
  if name not in POLICIES:
    raise ValueError(f'remat policy {name!r}: expected one of {POLICIES}')
  return getattr(jax.checkpoint_policies, name) if name else None


def check(value: str, allowed: tuple[str, ...], policy: str, owner: str) -> None:
  """Validates a config's (remat, remat_policy) pair; ``owner`` names the config in the message."""
  if value not in allowed:
    raise ValueError(f'{owner}.remat={value!r}: expected one of {allowed}')
  if policy not in POLICIES:
    raise ValueError(f'{owner}.remat_policy={policy!r}: expected one of {POLICIES}')


def _call(module: nnx.Module, *args: Any) -> Any:
  return module(*args)


def checkpointed(module: nnx.Module, *args: Any, policy: str = '') -> Any:
  """``module(*args)`` with its internals rematerialised in the backward pass (arguments: arrays, pytrees, None)."""
  return nnx.remat(_call, policy=policy_fn(policy))(module, *args)


def maybe_checkpointed(enabled: bool, module: nnx.Module, *args: Any, policy: str = '') -> Any:
  """``checkpointed(module, *args)`` if ``enabled``, else the plain call ``module(*args)``."""
  return checkpointed(module, *args, policy=policy) if enabled else module(*args)


def saved_residual_bytes(fn: Callable[..., Any], diff_arg: Any, *args: Any) -> int:
  """Bytes of forward activations that the backward pass of ``fn(diff_arg, *args)`` with respect to ``diff_arg``
  (e.g. the parameters) keeps: its VJP residuals, minus those that are ``diff_arg``'s own arrays (parameters are
  in memory anyway). Abstract evaluation: nothing is computed, the arguments may be ``jax.ShapeDtypeStruct``s.

  This is what rematerialisation reduces, independent of the backend. (XLA's own ``memory_analysis()`` of a
  compiled step shows it on GPU/TPU; XLA:CPU schedules the recomputation right after the forward pass, so its
  temporary bytes do not drop.)
  """
  def residual_shapes(x, *rest):
    inputs = {id(leaf) for leaf in jax.tree.leaves(x)}
    residuals = jax.tree.leaves(jax.vjp(lambda x: fn(x, *rest), x)[1])
    return [r for r in residuals if id(r) not in inputs]

  total = 0
  for leaf in jax.eval_shape(residual_shapes, diff_arg, *args):
    size = 1
    for d in leaf.shape:
      size *= int(d)
    total += size * getattr(leaf.dtype, 'itemsize', 4)
  return total
