"""HyperSign's "partial shortcut connection" (PSC): the two feature views fed to the two translation passes.

In the original this is `HyperTranslationNetwork.interpolate_features` with `interpolate_type: feature_mixup`.
Published behaviour kept:

* active only in training and while the annealing counter c < `final_step` (PHOENIX 17760, CSL 17265);
* sigma(c) = s0 - (c / C) (s0 - s1), s0 = 0.5, s1 = 0.01;
* lambda ~ TruncatedNormal(mean 0, sd sigma) restricted to [0, 1] (a half-normal clipped at 1), ONE scalar per
  batch, drawn independently for each view;
* view 1: P_v = l1 F_v + (1 - l1) F_f;  view 2: P_k = l2 F_k + (1 - l2) P_v -- mixed from the *already mixed*
  view 1, as the code does (`view2_source='view1'`, default); the paper figure's l2 F_k + (1 - l2) F_f is
  `view2_source='fused'`;
* both views use the counter value of this forward; the counter then advances by one per training forward;
* outside the schedule and in eval both views are exactly F_f (lambda = 0), so the two passes differ only by
  dropout (R-Drop).

Deviation (documented): the counter is an `nnx.Variable` (`PSCStep`) in the model state, so it is checkpointed
and a resumed run continues the schedule; the original keeps a plain Python attribute that restarts at 0 on
resume. Lambdas come from the module's 'dropout' RNG stream instead of numpy's global RNG.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PSCConfig:
  """Defaults: HyperSign PHOENIX-2014T (`SST_initial_std_dev`, `SST_final_std_dev`, `SST_final_step`, ...)."""
  initial_std: float = 0.5
  final_std: float = 0.01
  final_step: int = 17760        # 40 epochs x 444 steps; CSL-Daily: 17265
  mean: float = 0.0              # `SST_mean_alpha`
  view2_source: str = 'view1'    # 'view1' = original code (nested); 'fused' = paper figure
  enabled: bool = True           # False: both views are always F_f

  def __post_init__(self):
    if self.view2_source not in ('view1', 'fused'):
      raise ValueError(f"view2_source must be 'view1' or 'fused', got {self.view2_source!r}")
    if self.final_step <= 0:
      raise ValueError(f'final_step must be positive, got {self.final_step}')


class PSCStep(nnx.Variable):
  """The PSC annealing counter (number of training forwards); model state, not a trainable parameter."""


def psc_sigma(step: Array | int, config: PSCConfig) -> Array:
  """sigma(c) = s0 - (c / C) (s0 - s1), as float32 (not clipped: only used while c < C)."""
  c = jnp.asarray(step, jnp.float32)
  return jnp.float32(config.initial_std) - c / config.final_step * (config.initial_std - config.final_std)


def sample_lambda(key: Array, sigma: Array, mean: float = 0.0) -> Array:
  """One draw of TruncatedNormal(mean, sigma) restricted to [0, 1] (scalar float32)."""
  lower = (0.0 - mean) / sigma
  upper = (1.0 - mean) / sigma
  z = jax.random.truncated_normal(key, lower, upper, (), jnp.float32)
  return jnp.clip(mean + sigma * z, 0.0, 1.0)


class PartialShortcut(nnx.Module):
  """Builds the two training views from F_f (fused), F_v (RGB) and F_k (keypoint)."""

  def __init__(self, config: PSCConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.step = PSCStep(jnp.zeros((), jnp.int32))
    self.rngs = rngs['dropout'].fork()
    self.deterministic = False  # toggled by model.train() / model.eval()

  def sigma(self) -> Array:
    return psc_sigma(self.step[...], self.config)

  def __call__(self, fused: Array, rgb: Array, keypoint: Array,
               deterministic: bool | None = None) -> dict[str, Array]:
    """fused/rgb/keypoint (B, T, D) -> {'view1', 'view2': (B, T, D), 'lambda1', 'lambda2', 'sigma': ()}.

    In training the counter advances by one per call."""
    deterministic = self.deterministic if deterministic is None else deterministic
    c = self.config
    zero = jnp.zeros((), jnp.float32)
    if deterministic or not c.enabled:
      return {'view1': fused, 'view2': fused, 'lambda1': zero, 'lambda2': zero, 'sigma': zero}
    step = self.step[...]
    sigma = psc_sigma(step, c)
    active = step < c.final_step
    safe_sigma = jnp.where(active, sigma, 1.0)  # keeps the sampler finite once sigma would go below s1
    lam1 = jnp.where(active, sample_lambda(self.rngs(), safe_sigma, c.mean), 0.0)
    lam2 = jnp.where(active, sample_lambda(self.rngs(), safe_sigma, c.mean), 0.0)
    view1 = (lam1 * rgb + (1.0 - lam1) * fused).astype(fused.dtype)
    base = view1 if c.view2_source == 'view1' else fused
    view2 = (lam2 * keypoint + (1.0 - lam2) * base).astype(fused.dtype)
    self.step[...] = step + 1
    return {'view1': view1, 'view2': view2, 'lambda1': lam1, 'lambda2': lam2,
            'sigma': jnp.where(active, sigma, zero)}
