"""Sequence-level knowledge distillation (SeqKD) between a CSLR path's BiLSTM head and its conv head.

SlowFastSign's ``SeqKD`` (``modules/criterions.py``; design/SLOWFASTSIGN.md §3 "SeqKD", §8.7), kept exactly:
``KLDivLoss(reduction='batchmean')(log_softmax(student / T), softmax(teacher / T)) * T**2`` with T = 8, the blank
class dropped from both sides (``use_blank=False``: classes 1:), both flattened to (T'*B, C-1) so 'batchmean'
divides by the number of frames T'*B; the teacher is detached (``jax.lax.stop_gradient``).

The original does not mask padded frames; it pads to the batch's longest clip, so its T' is the longest valid
length in the batch. Our batches are padded to a bucket, so ``mask`` selects the frames to average over: the task
passes ``t < max(lengths)`` by default (exactly the original's frames and denominator), or per-sample valid
frames (``kd_mask='valid'``), or nothing (every frame of the bucket).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def seqkd_loss(student_logits: jax.Array, teacher_logits: jax.Array, mask: jax.Array | None = None, *,
               temperature: float = 8.0, use_blank: bool = False, blank_id: int = 0) -> jax.Array:
  """Scalar SeqKD loss; logits (B, T, C); ``mask`` (B, T) of frames to average over (None = all)."""
  s = student_logits.astype(jnp.float32)
  t = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
  if not use_blank:
    if blank_id != 0:
      keep = jnp.array([c for c in range(s.shape[-1]) if c != blank_id])
      s, t = s[..., keep], t[..., keep]
    else:
      s, t = s[..., 1:], t[..., 1:]
  log_p_s = jax.nn.log_softmax(s / temperature, axis=-1)
  log_p_t = jax.nn.log_softmax(t / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)  # (B, T)
  if mask is None:
    mean = jnp.mean(kl)
  else:
    m = mask.astype(jnp.float32)
    mean = jnp.sum(kl * m) / jnp.maximum(jnp.sum(m), 1.0)
  return mean * (temperature ** 2)
