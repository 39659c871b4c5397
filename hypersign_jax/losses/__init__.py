"""Losses: CTC with a feasibility mask (``ctc``) and sequence knowledge distillation (``distill``)."""
from hypersign_jax.losses.ctc import ctc_feasible, ctc_loss, mean_ctc_loss  # noqa: F401
from hypersign_jax.losses.distill import seqkd_loss  # noqa: F401
