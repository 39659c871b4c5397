"""CTC loss for CSLR: ``optax.ctc_loss`` in float32 with an explicit feasibility mask.

What SlowFastSign does (design/SLOWFASTSIGN.md §3 "CTC", §8.8): ``nn.CTCLoss(blank=0, reduction='none',
zero_infinity=False)`` on ``log_softmax`` of the logits, then ``.mean()`` over the batch: the per-sequence summed
negative log-likelihood averaged over the batch, **not** divided by the target length. A sequence whose labels
cannot be aligned (output length < labels + adjacent repeats) gives ``inf`` there, and the original skips the batch.

Here (design/JAX_NOTES.md §6.1): ``optax.ctc_loss`` gives the same per-sequence NLL (it applies ``log_softmax``
itself, batch-major, paddings 1 = padded) but an infeasible sequence comes out ~1e5 instead of inf. So feasibility is
computed explicitly (:func:`ctc_feasible`) and an infeasible sequence gets zero loss (and no gradient) and is
counted (``zero_infeasible=True``, the default, like ``zero_infinity=True``), or ``+inf`` (``False``: the trainer
then skips the step as the original skips the batch). The loss always runs in float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def ctc_feasible(labels: jax.Array, label_lengths: jax.Array, logit_lengths: jax.Array) -> jax.Array:
  """(B,) bool: whether ``label_lengths + #adjacent repeats <= logit_lengths`` (a CTC path exists)."""
  labels = jnp.asarray(labels)
  pos = jnp.arange(labels.shape[1])[None, :]
  same = (labels[:, 1:] == labels[:, :-1]) & (pos[:, 1:] < label_lengths[:, None])
  needed = label_lengths + same.sum(axis=1)
  return needed <= logit_lengths


def ctc_loss(logits: jax.Array, logit_lengths: jax.Array, labels: jax.Array, label_lengths: jax.Array, *,
             blank_id: int = 0, zero_infeasible: bool = True) -> tuple[jax.Array, jax.Array]:
  """Per-sequence CTC negative log-likelihood.

  Args:
    logits: (B, T, C) unnormalised scores (or log-probabilities); cast to float32.
    logit_lengths: (B,) valid frames per sequence.
    labels: (B, L) int, right-padded (anything past ``label_lengths``).
    label_lengths: (B,) number of labels.
    blank_id: the blank class.
    zero_infeasible: infeasible sequences get 0 (True) or +inf (False).

  Returns:
    loss (B,) float32 (= ``torch.nn.CTCLoss(reduction='none')``) and feasible (B,) bool.
  """
  logits = logits.astype(jnp.float32)
  t = logits.shape[1]
  logit_lengths = jnp.asarray(logit_lengths).astype(jnp.int32)
  label_lengths = jnp.asarray(label_lengths).astype(jnp.int32)
  logit_paddings = (jnp.arange(t)[None, :] >= logit_lengths[:, None]).astype(jnp.float32)
  label_paddings = (jnp.arange(labels.shape[1])[None, :] >= label_lengths[:, None]).astype(jnp.float32)
  labels = jnp.where(label_paddings > 0, 0, labels).astype(jnp.int32)
  feasible = ctc_feasible(labels, label_lengths, logit_lengths)
  per_seq = optax.ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=blank_id)
  fill = 0.0 if zero_infeasible else jnp.inf
  return jnp.where(feasible, per_seq, fill), feasible


def mean_ctc_loss(logits: jax.Array, logit_lengths: jax.Array, labels: jax.Array, label_lengths: jax.Array,
                  weights: jax.Array | None = None, *, blank_id: int = 0, zero_infeasible: bool = True
                  ) -> tuple[jax.Array, dict]:
  """The original's reduction: per-sequence NLL averaged over the batch (``weights`` (B,) select real rows).

  Infeasible sequences stay in the denominator with zero loss (as ``zero_infinity=True`` with a batch mean).
  Returns the scalar loss and ``{'num_infeasible': (), ...}``.
  """
  per_seq, feasible = ctc_loss(logits, logit_lengths, labels, label_lengths, blank_id=blank_id,
                               zero_infeasible=zero_infeasible)
  w = jnp.ones(per_seq.shape, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
  loss = jnp.sum(jnp.where(w > 0, per_seq * w, 0.0)) / jnp.maximum(jnp.sum(w), 1.0)
  infeasible = jnp.sum(jnp.where(feasible, 0.0, w))
  return loss, {"num_infeasible": infeasible}
