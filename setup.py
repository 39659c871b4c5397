"""hypersign_jax: SlowFastSign (CSLR) and HyperSign (SLT) in JAX/Flax.

Versions are pinned to what resolves on Python 3.11 (jax 0.10.2 / flax 0.12.8); see README for running from
source on a machine that already has a newer JAX (Python 3.12, jax 0.11).
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "array-record==0.8.6",
    "ml-collections==1.1.0",
    "tensorflow-datasets==4.9.10",
    "sacrebleu==2.6.0",
    "jiwer==4.0.0",
    "transformers==5.23.0",
    "sentencepiece==0.2.3",
    "safetensors==0.8.0",
    "msgpack==1.2.4",
    "numpy==2.4.6",
    "pillow==13.0.0",
    "tqdm==4.70.1",
    "tensorboardX==2.6.5",
    "absl-py==2.5.1",
]

EXTRAS = {
    # PyTorch only reads checkpoints and serves as a numerical reference in tests (CPU build).
    "torch": ["torch==2.13.0"],
    "test": ["pytest==9.2.0", "torch==2.13.0"],
}

setup(
    name="hypersign_jax",
    version="0.1.0",
    description="Continuous sign language recognition and translation (SlowFastSign, HyperSign) in JAX/Flax",
    python_requires=">=3.11",
    packages=find_packages(include=["hypersign_jax*", "data_pipelines*", "checkpoints_conversion*", "configs*"]),
    py_modules=["main"],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
