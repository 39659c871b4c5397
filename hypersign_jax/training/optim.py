"""Optimizers from the config: parameter groups, schedules, coupled L2 vs AdamW, clipping, accumulation.

Config fields (``config.optimizer``)::

    name            'adam' | 'adamw' | 'sgd'
    lr              base learning rate (the default group)
    b1, b2, eps     Adam moments (PyTorch defaults 0.9, 0.999, 1e-8)
    weight_decay    strength
    weight_decay_mode  'coupled' = PyTorch ``Adam(weight_decay=wd)`` (wd * param added to the gradient before the
                    moments, i.e. L2 regularisation, applied to every parameter) | 'decoupled' = AdamW
    momentum        for sgd
    clip_grad_norm  global-norm clipping before the update (0 = off), over all groups together
    groups          {name: {'pattern': regex on the parameter path 'a/b/c', 'lr': float}}; first match wins,
                    unmatched parameters use ``lr``. Every group follows the same schedule shape.
    grad_accum_steps  k > 1 accumulates k micro-batch gradients (mean) before one update (optax.MultiSteps)

``config.schedule``::

    name       'constant' | 'cosine' | 'multistep'
    unit       'step' | 'epoch': an 'epoch' schedule changes only at epoch boundaries, like PyTorch schedulers
               stepped once per epoch
    milestones (multistep) boundaries in `unit`s; gamma = factor at each
    total      (cosine) length in `unit`s; eta_min_ratio = final lr / base lr
    warmup     linear warm-up length in steps (0 = none)
    offset     added to the schedule position (in `unit`s): 1 reproduces a PyTorch scheduler stepped at the *start*
               of each epoch (epoch e uses the value the schedule has at e + 1), as HyperSign does
"""
from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


def make_schedule(cfg, base_lr: float, steps_per_epoch: int) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Learning rate as a function of the (update) step count."""
  unit = cfg.get("unit", "step")
  if unit not in ("step", "epoch"):
    raise ValueError(f"schedule.unit must be 'step' or 'epoch', got {unit!r}")
  per = steps_per_epoch if unit == "epoch" else 1
  if per < 1:
    raise ValueError(f"schedule.unit='epoch' needs at least one step per epoch, got {steps_per_epoch}")
  name = cfg.name
  if name == "constant":
    shape = lambda t: jnp.ones_like(t, jnp.float32)
  elif name == "multistep":
    milestones = jnp.asarray(list(cfg.milestones) or [2**30], jnp.float32)
    gamma = cfg.gamma
    shape = lambda t: gamma ** jnp.sum(t[..., None] >= milestones, axis=-1).astype(jnp.float32)
  elif name == "cosine":
    total = float(cfg.total)
    if total <= 0:
      raise ValueError("schedule.total must be > 0 for a cosine schedule")
    eta = cfg.get("eta_min_ratio", 0.0)
    shape = lambda t: eta + (1 - eta) * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, total) / total))
  else:
    raise ValueError(f"schedule.name must be one of constant, cosine, multistep; got {name!r}")
  warmup = int(cfg.get("warmup", 0))
  offset = float(cfg.get("offset", 0))

  def schedule(count):
    count = jnp.asarray(count)
    t = (count // per).astype(jnp.float32) + offset
    lr = base_lr * shape(t)
    if warmup > 0:
      lr = lr * jnp.minimum(1.0, (count.astype(jnp.float32) + 1) / warmup)
    return lr

  return schedule


def path_str(path) -> str:
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def group_labels(params: Any, groups: dict) -> Any:
  """Pytree of group names, one per parameter leaf, by regex on the path ('default' when none matches)."""
  compiled = [(name, re.compile(g["pattern"])) for name, g in groups.items()]

  def label(path, _):
    p = path_str(path)
    for name, pattern in compiled:
      if pattern.search(p):
        return name
    return "default"

  return jax.tree_util.tree_map_with_path(label, params)


def _one_group(cfg, schedule) -> optax.GradientTransformation:
  name = cfg.name
  wd = cfg.get("weight_decay", 0.0)
  mode = cfg.get("weight_decay_mode", "coupled")
  if mode not in ("coupled", "decoupled"):
    raise ValueError(f"optimizer.weight_decay_mode must be 'coupled' or 'decoupled', got {mode!r}")
  parts = []
  if wd and mode == "coupled":
    parts.append(optax.add_decayed_weights(wd))
  if name in ("adam", "adamw"):
    parts.append(optax.scale_by_adam(b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8)))
  elif name == "sgd":
    if cfg.get("momentum", 0.0):
      parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.get("nesterov", False)))
  else:
    raise ValueError(f"optimizer.name must be adam, adamw or sgd; got {name!r}")
  if wd and mode == "decoupled":
    # AdamW: decay scaled by the learning rate, applied outside the moments.
    parts.append(optax.add_decayed_weights(wd))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)


def make_optimizer(cfg_opt, cfg_sched, params: Any, steps_per_epoch: int):
  """Returns (optax transformation, {group name: schedule}) for the parameter tree ``params``."""
  groups = dict(cfg_opt.get("groups", {}) or {})
  for name, g in groups.items():
    if "pattern" not in g or "lr" not in g:
      raise ValueError(f"optimizer.groups.{name} needs 'pattern' and 'lr', got {dict(g)}")
  schedules = {"default": make_schedule(cfg_sched, cfg_opt.lr, steps_per_epoch)}
  for name, g in groups.items():
    schedules[name] = make_schedule(cfg_sched, g["lr"], steps_per_epoch)
  labels = group_labels(params, groups)
  used = set(jax.tree.leaves(labels))
  for name in groups:
    if name not in used:
      raise ValueError(f"optimizer.groups.{name}: pattern {groups[name]['pattern']!r} matches no parameter")
  transforms = {name: _one_group(cfg_opt, schedules[name]) for name in schedules}
  tx = optax.multi_transform(transforms, labels)
  clip = cfg_opt.get("clip_grad_norm", 0.0)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  k = int(cfg_opt.get("grad_accum_steps", 1))
  if k > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=k)
  return tx, schedules
