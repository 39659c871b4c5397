"""Tasks: each module registers one task with the trainer (see base.py)."""
from hypersign_jax.tasks import toy_regression  # noqa: F401
