"""HyperSign's auxiliary S2T losses: the two self-distillation KL terms and the SST contrastive loss.

Published details kept (translation.py / SST loss of the original, HYPERSIGN.md §3-4); B = batch size and every
term is a sum divided by B (`avg_level: sentence`):

* `kl_loss` = 1/2 [KL(p2 || p1) + KL(p1 || p2)] / B * kl_factor(t), p_v = softmax of view v's decoder logits over
  the vocabulary, summed over all B x L positions and every vocabulary entry -- **padded target positions
  included** (original). kl_factor: 0 -> 5 linearly over 4000 steps.
* `gkl_loss`: the same symmetric KL between softmaxes over the **hidden channels** of the two views' encoder
  `last_hidden_state` (B, S, 1024), summed over all B x S positions, padding included; gkl_factor 0 -> 1 over 4000
  steps. (Despite the name it is not a Gaussian KL.)
* warm-up (`StepWarmUpScheduler`): linear from `start` at step 0 to `end` at `warmup_steps`, then `end`.
* SST: Y (2B x 2B) has ones at (i, i) and (i, (i + B) mod 2B) -- each video vector is positive with the same
  sample's text from both views; SST = 1/2 [BCE_mean(Z, Y) + BCE_mean(Z^T, Y)] over all 4B^2 entries, and the
  reported loss is SST / B * weight.

Option (deviation, default off = original): `mask_padding` / explicit masks restrict the KL sums to valid target
positions / encoder tokens (the normalisation stays / B).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class HyperSignLossConfig:
  """Weights and warm-ups of the auxiliary terms (defaults: HyperSign PHOENIX-2014T and CSL-Daily)."""
  kl_factor: float = 5.0
  kl_warmup_steps: int = 4000
  gkl_factor: float = 1.0
  gkl_warmup_steps: int = 4000
  sst_weight: float = 1.0
  mask_padding: bool = False  # False = original: padded positions take part in both KL sums


def warmup_factor(step: Array | int, end: float, warmup_steps: int, start: float = 0.0) -> Array:
  """Linear warm-up from `start` at step 0 to `end` at `warmup_steps`, then constant `end` (float32 scalar)."""
  t = jnp.asarray(step, jnp.float32)
  if warmup_steps <= 0:
    return jnp.float32(end)
  ramp = start + (end - start) * t / warmup_steps
  return jnp.where(t >= warmup_steps, jnp.float32(end), ramp).astype(jnp.float32)


def symmetric_kl_sum(logits_1: Array, logits_2: Array, mask: Array | None = None) -> Array:
  """1/2 [KL(p2 || p1) + KL(p1 || p2)] with p_v = softmax(logits_v) over the last axis, summed over every
  position (or over the positions where `mask` (leading dims) is nonzero). Float32 scalar."""
  lp1 = jax.nn.log_softmax(logits_1.astype(jnp.float32), axis=-1)
  lp2 = jax.nn.log_softmax(logits_2.astype(jnp.float32), axis=-1)
  # p2 (log p2 - log p1) + p1 (log p1 - log p2) = (p2 - p1)(log p2 - log p1); keep the two terms as written.
  per_position = 0.5 * (jnp.sum(jnp.exp(lp2) * (lp2 - lp1), axis=-1) + jnp.sum(jnp.exp(lp1) * (lp1 - lp2), axis=-1))
  if mask is not None:
    per_position = jnp.where(jnp.asarray(mask) > 0, per_position, 0.0)
  return jnp.sum(per_position)


def decoder_kl_loss(logits_1: Array, logits_2: Array, step: Array | int, *, factor: float = 5.0,
                    warmup_steps: int = 4000, mask: Array | None = None) -> Array:
  """`kl_loss`: symmetric KL of the two views' decoder distributions. logits (B, L, V); mask (B, L) of valid
  target positions or None (original: all positions). Returns sum / B * kl_factor(step)."""
  batch = logits_1.shape[0]
  return symmetric_kl_sum(logits_1, logits_2, mask) / batch * warmup_factor(step, factor, warmup_steps)


def encoder_kl_loss(hidden_1: Array, hidden_2: Array, step: Array | int, *, factor: float = 1.0,
                    warmup_steps: int = 4000, mask: Array | None = None) -> Array:
  """`gkl_loss`: symmetric KL of softmaxes over the hidden channels of the two views' encoder outputs.
  hidden (B, S, D); mask (B, S) of valid encoder tokens or None (original). Returns sum / B * gkl_factor(step)."""
  batch = hidden_1.shape[0]
  return symmetric_kl_sum(hidden_1, hidden_2, mask) / batch * warmup_factor(step, factor, warmup_steps)


def sst_targets(batch: int) -> Array:
  """(2B, 2B) float32 targets: ones at (i, i) and (i, (i + B) mod 2B)."""
  n = 2 * batch
  rows = jnp.arange(n)[:, None]
  cols = jnp.arange(n)[None, :]
  return ((cols == rows) | (cols == (rows + batch) % n)).astype(jnp.float32)


def _bce_with_logits_mean(logits: Array, targets: Array) -> Array:
  """PyTorch's BCEWithLogitsLoss(reduction='mean'): max(z, 0) - z y + log(1 + exp(-|z|))."""
  per = jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.mean(per)


def sst_loss(logits: Array, weight: float = 1.0) -> Array:
  """SST contrastive loss from Z (2B, 2B) (rows video, columns text): 1/2 [BCE(Z, Y) + BCE(Z^T, Y)] / B * weight."""
  logits = logits.astype(jnp.float32)
  batch = logits.shape[0] // 2
  y = sst_targets(batch)
  sst = 0.5 * (_bce_with_logits_mean(logits, y) + _bce_with_logits_mean(logits.T, y))
  return sst / batch * weight


def auxiliary_losses(config: HyperSignLossConfig, step: Array | int, *, decoder_logits: tuple[Array, Array],
                     encoder_hidden: tuple[Array, Array], sst_logits: Array | None = None,
                     target_mask: Array | None = None, encoder_mask: Array | None = None) -> dict[str, Array]:
  """The three auxiliary terms of one training/eval forward, with the config's weights and warm-ups.

  decoder_logits: the two views' (B, L, V) logits; encoder_hidden: their (B, S, D) encoder outputs; sst_logits:
  the SST network's (2B, 2B) logits. Masks are used only when `config.mask_padding` is set. Returns
  {'kl_loss', 'gkl_loss', 'sst_loss' (0 without logits), 'kl_factor', 'gkl_factor'}.
  """
  tmask = target_mask if config.mask_padding else None
  emask = encoder_mask if config.mask_padding else None
  out = {
      'kl_loss': decoder_kl_loss(*decoder_logits, step, factor=config.kl_factor,
                                 warmup_steps=config.kl_warmup_steps, mask=tmask),
      'gkl_loss': encoder_kl_loss(*encoder_hidden, step, factor=config.gkl_factor,
                                  warmup_steps=config.gkl_warmup_steps, mask=emask),
      'kl_factor': warmup_factor(step, config.kl_factor, config.kl_warmup_steps),
      'gkl_factor': warmup_factor(step, config.gkl_factor, config.gkl_warmup_steps),
  }
  out['sst_loss'] = (jnp.zeros((), jnp.float32) if sst_logits is None
                     else sst_loss(sst_logits, config.sst_weight))
  return out
