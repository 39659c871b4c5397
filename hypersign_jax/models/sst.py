"""HyperSign's SST network: video and text sequences -> sparse mixtures of a learnable code space (contrastive).

The original `SST_network(cfg, video_feature_dim=1024, text_feature_dim=1024)` lives inside the translation
network (`translation_network.SST_network`). Published details kept:

* query models `video_query_model` / `text_query_model`, each `q_map` = LN(D) -> Linear(D -> sd_dim) -> GELU
  (exact) -> LN(sd_dim) -> Linear(sd_dim -> sd_dim) (indices 0, 1, 3, 4 hold parameters; LN eps 1e-5);
* `space_dict` S (sd_num x sd_dim) ~ N(0, 1), learnable; `logit_scale` (1,) initialised to ln(1 / 0.07);
* per sequence x (B, N, D): a = q_map(x) S^T / sqrt(sd_dim) / temperature (B, N, sd_num); mean over the N
  positions **including padding** (no masks are passed in the original); w = sparsemax over the codes;
  e = w S; e / (||e|| + 1e-10);
* both views go through the same query pair; the loss logits are Z = V T^T * s with V = [e_video_a; e_video_b],
  T = [e_text_a; e_text_b] (2B, sd_dim) and s = min(exp(logit_scale), 100), the clamp acting on the forward value
  only (the original assigns the clamped tensor to `.data` of exp(logit_scale), so autograd still differentiates
  the unclamped exp: d s / d logit_scale = exp(logit_scale)). The loss is `hypersign_jax.losses.hypersign.sst_loss`.

Not built: the dead `video_query_model2`, `text_query_model2` and `logit_scale_sd` (a converter skips them).
Option (deviation): `masked_pooling=True` averages over valid positions only (masks passed to `__call__`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from hypersign_jax.models.sparsemax import sparsemax
from hypersign_jax.models.visual_head import Act, run_sequence

Array = jax.Array

LOGIT_SCALE_MAX = 100.0
NORM_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class SSTConfig:
  """Defaults: HyperSign (sd_num 128, sd_dim 128, temperature 0.07, sparsemax, mean pooling)."""
  video_dim: int = 1024
  text_dim: int = 1024
  sd_num: int = 128
  sd_dim: int = 128
  temperature: float = 0.07
  att_func: str = 'sparsemax'      # or 'softmax'
  masked_pooling: bool = False     # False = original (padding and suffix tokens are pooled)
  ln_eps: float = 1e-5
  dtype: Any = jnp.float32

  def __post_init__(self):
    if self.att_func not in ('sparsemax', 'softmax'):
      raise ValueError(f"att_func must be 'sparsemax' or 'softmax', got {self.att_func!r}")


def gelu_exact(x: Array) -> Array:
  """erf GELU (PyTorch's default; jax.nn.gelu defaults to the tanh approximation)."""
  return jax.nn.gelu(x, approximate=False)


class QueryModel(nnx.Module):
  """The original `Query_model`: per-position queries into the code space."""

  def __init__(self, in_dim: int, sd_dim: int, ln_eps: float, dtype: Any, *, rngs: nnx.Rngs):
    self.q_map = nnx.List([
        nnx.LayerNorm(in_dim, epsilon=ln_eps, use_fast_variance=False, dtype=dtype, rngs=rngs),  # 0
        nnx.Linear(in_dim, sd_dim, dtype=dtype, rngs=rngs),                                      # 1
        Act(gelu_exact),                                                                         # 2
        nnx.LayerNorm(sd_dim, epsilon=ln_eps, use_fast_variance=False, dtype=dtype, rngs=rngs),  # 3
        nnx.Linear(sd_dim, sd_dim, dtype=dtype, rngs=rngs),                                      # 4
    ])

  def __call__(self, x: Array) -> Array:
    """(B, N, in_dim) -> (B, N, sd_dim)."""
    return run_sequence(self.q_map, x)


class SSTNetwork(nnx.Module):
  """Code-space embeddings of video and text sequences and the 2B x 2B contrastive logits."""

  def __init__(self, config: SSTConfig, *, rngs: nnx.Rngs):
    c = self.config = config
    self.space_dict = nnx.Param(jax.random.normal(rngs.params(), (c.sd_num, c.sd_dim), jnp.float32))
    self.logit_scale = nnx.Param(jnp.full((1,), math.log(1.0 / 0.07), jnp.float32))
    self.video_query_model = QueryModel(c.video_dim, c.sd_dim, c.ln_eps, c.dtype, rngs=rngs)
    self.text_query_model = QueryModel(c.text_dim, c.sd_dim, c.ln_eps, c.dtype, rngs=rngs)

  def _embed(self, query_model: QueryModel, x: Array, mask: Array | None) -> Array:
    c = self.config
    space = self.space_dict[...]                                   # (K, sd_dim)
    q = query_model(x).astype(jnp.float32)                         # (B, N, sd_dim)
    scores = jnp.einsum('bnd,kd->bnk', q, space) / math.sqrt(c.sd_dim) / c.temperature  # (B, N, K)
    if c.masked_pooling and mask is not None:
      valid = (jnp.asarray(mask) > 0).astype(jnp.float32)[..., None]  # (B, N, 1)
      pooled = jnp.sum(scores * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
    else:
      pooled = jnp.mean(scores, axis=1)                            # (B, K)
    weights = sparsemax(pooled, axis=-1) if c.att_func == 'sparsemax' else jax.nn.softmax(pooled, axis=-1)
    e = weights @ space                                            # (B, sd_dim)
    return e / (jnp.linalg.norm(e, axis=-1, keepdims=True) + NORM_EPS)

  def embed_video(self, x: Array, mask: Array | None = None) -> Array:
    """(B, N, video_dim) encoder states -> (B, sd_dim) unit vectors (float32)."""
    return self._embed(self.video_query_model, x, mask)

  def embed_text(self, x: Array, mask: Array | None = None) -> Array:
    """(B, L, text_dim) last decoder states -> (B, sd_dim) unit vectors (float32)."""
    return self._embed(self.text_query_model, x, mask)

  def scale(self) -> Array:
    """min(exp(logit_scale), 100) as a scalar in the forward pass; the backward pass sees exp(logit_scale)
    unclamped (the original replaces `.data` of the exponentiated scale, which autograd does not see)."""
    s = jnp.exp(self.logit_scale[...][0])
    return s + jax.lax.stop_gradient(jnp.minimum(s, LOGIT_SCALE_MAX) - s)

  def __call__(self, video_a: Array, video_b: Array, text_a: Array, text_b: Array,
               video_mask: Array | None = None, text_mask: Array | None = None) -> dict[str, Array]:
    """video_* (B, S, video_dim): the two views' encoder outputs; text_* (B, L, text_dim): their last decoder
    states. Masks (B, S) / (B, L) are used only with `masked_pooling`.

    Returns {'logits': Z (2B, 2B) float32 (rows video, columns text), 'video': (2B, sd_dim), 'text': (2B, sd_dim)}.
    """
    v = jnp.concatenate([self.embed_video(video_a, video_mask), self.embed_video(video_b, video_mask)], axis=0)
    t = jnp.concatenate([self.embed_text(text_a, text_mask), self.embed_text(text_b, text_mask)], axis=0)
    return {'logits': (v @ t.T) * self.scale(), 'video': v, 'text': t}
