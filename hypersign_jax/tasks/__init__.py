"""Tasks: each module registers one task with the trainer (see base.py)."""
from hypersign_jax.tasks import toy_regression  # noqa: F401
from hypersign_jax.tasks import cslr  # noqa: F401
from hypersign_jax.tasks import keypoint_s2g  # noqa: F401
from hypersign_jax.tasks import g2t  # noqa: F401
from hypersign_jax.tasks import slt  # noqa: F401
