"""HyperSign's visual-language mapper and hypernetwork fusion of the RGB and keypoint streams.

`VLMapper` (the original `vl_mapper`) maps both streams' VisualHead outputs into mBART's 1024-d space with ONE
shared mapping, then fuses them with `FusionNet` (hypernetwork gating). Published details kept:

* `fuse_projection_share` (PHOENIX-2014T): `mapping` = Linear(512 -> 1024) -> ReLU -> Linear(1024 -> 1024),
  applied to `gloss_feature` of both streams (F_v, F_k).
* `embedding_fuse_share` (CSL-Daily): `mapping` = Linear(#glosses -> 1024, no bias) applied to each stream's
  gloss *probabilities*; its rows are initialised from mBART-side gloss embeddings (zero for glosses without one,
  see `gloss_embedding_matrix`), so the classifiers receive translation gradients.
* Fusion F_f = block(global=F_v, local=F_k) (`global_local_reverse` swaps the roles); the mapper returns
  {'output': F_f, 'rgb_feature': F_v, 'keypoint_feature': F_k}.

Fusion blocks (all per-frame, no temporal mixing; every Linear has a bias; LN = LayerNorm(eps 1e-5)); g = global
(RGB), l = local (keypoint), both (B, T, D):

* DSG (the one HyperSign uses): gamma = MLP_gamma([g; l]), beta = MLP_beta([g; l]) with MLP = Linear(2D -> D)
  -> ReLU -> Dropout(p) -> Linear(D -> D) (`gamma_hypernet.{0,3}`, `beta_hypernet.{0,3}`);
  out = gamma * LN(g * l) + beta -- no "1 + gamma", no residual. p comes from the config (0.5 PHOENIX, 0 CSL).
* DShG: one hypernet Linear(2D -> D) -> ReLU -> Dropout(0.5, the config value is not passed in the original)
  -> Linear(D -> 2D), split into gamma (first half) and beta; out = gamma * LN(g * l) + beta.
* PIG: g' = ReLU(Lin(g)) * g + ReLU(Lin(g)), l' likewise with its own layers; out = LN(g' + l').
* CIG: l' = ReLU(Lin(g)) * l + ReLU(Lin(g)), g' = ReLU(Lin(l)) * g + ReLU(Lin(l)); out = LN(g' + l').
  `*_hypernet_rgb` read g and `*_hypernet_local` read l in both PIG and CIG.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hypersign_jax.models.visual_head import Act, run_sequence

Array = jax.Array

FUSION_LN_EPS = 1e-5
DSHG_DEFAULT_DROPOUT = 0.5  # DShG ignores the configured dropout in the original


def _layer_norm(dim: int, dtype: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=FUSION_LN_EPS, use_fast_variance=False, dtype=dtype, rngs=rngs)


def _hypernet(d_in: int, d_hidden: int, d_out: int, dropout: float, dtype: Any, rngs: nnx.Rngs) -> nnx.List:
  """Linear -> ReLU -> Dropout -> Linear, indices 0..3 as in the PyTorch Sequential."""
  return nnx.List([
      nnx.Linear(d_in, d_hidden, dtype=dtype, rngs=rngs),
      Act(jax.nn.relu),
      nnx.Dropout(dropout, rngs=rngs),
      nnx.Linear(d_hidden, d_out, dtype=dtype, rngs=rngs),
  ])


def _gate(dim: int, dtype: Any, rngs: nnx.Rngs) -> nnx.List:
  """Linear(D -> D) -> ReLU, indices 0..1 as in the PyTorch Sequential."""
  return nnx.List([nnx.Linear(dim, dim, dtype=dtype, rngs=rngs), Act(jax.nn.relu)])


class DSG(nnx.Module):
  """Both streams generate (gamma, beta) that modulate the normalised joint product LN(g * l)."""

  def __init__(self, dim: int, dropout: float = 0.0, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.gamma_hypernet = _hypernet(2 * dim, dim, dim, dropout, dtype, rngs)
    self.beta_hypernet = _hypernet(2 * dim, dim, dim, dropout, dtype, rngs)
    self.layernorm = _layer_norm(dim, dtype, rngs)

  def __call__(self, g: Array, l: Array) -> Array:
    """g, l (B, T, D) -> (B, T, D)."""
    h = jnp.concatenate([g, l], axis=-1)  # (B, T, 2D)
    gamma = run_sequence(self.gamma_hypernet, h)
    beta = run_sequence(self.beta_hypernet, h)
    return gamma * self.layernorm(g * l) + beta


class DShG(nnx.Module):
  """DSG with one shared hypernet whose 2D-wide output is split into gamma and beta."""

  def __init__(self, dim: int, dropout: float = DSHG_DEFAULT_DROPOUT, *, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    # The original's attribute name for this hypernet is not recorded in the design notes; `hypernet` is ours.
    self.hypernet = _hypernet(2 * dim, dim, 2 * dim, dropout, dtype, rngs)
    self.layernorm = _layer_norm(dim, dtype, rngs)

  def __call__(self, g: Array, l: Array) -> Array:
    """g, l (B, T, D) -> (B, T, D)."""
    gamma, beta = jnp.split(run_sequence(self.hypernet, jnp.concatenate([g, l], axis=-1)), 2, axis=-1)
    return gamma * self.layernorm(g * l) + beta


class _FourGates(nnx.Module):
  """γ/β gates computed from the global (rgb) and the local (keypoint) stream, and a final LayerNorm."""

  def __init__(self, dim: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.gamma_hypernet_rgb = _gate(dim, dtype, rngs)
    self.beta_hypernet_rgb = _gate(dim, dtype, rngs)
    self.gamma_hypernet_local = _gate(dim, dtype, rngs)
    self.beta_hypernet_local = _gate(dim, dtype, rngs)
    self.layernorm = _layer_norm(dim, dtype, rngs)


class PIG(_FourGates):
  """Each stream modulates itself; the modulated streams are summed and normalised."""

  def __call__(self, g: Array, l: Array) -> Array:
    """g, l (B, T, D) -> (B, T, D)."""
    g2 = run_sequence(self.gamma_hypernet_rgb, g) * g + run_sequence(self.beta_hypernet_rgb, g)
    l2 = run_sequence(self.gamma_hypernet_local, l) * l + run_sequence(self.beta_hypernet_local, l)
    return self.layernorm(g2 + l2)


class CIG(_FourGates):
  """Cross modulation: the global stream gates the local one and vice versa."""

  def __call__(self, g: Array, l: Array) -> Array:
    """g, l (B, T, D) -> (B, T, D)."""
    l2 = run_sequence(self.gamma_hypernet_rgb, g) * l + run_sequence(self.beta_hypernet_rgb, g)
    g2 = run_sequence(self.gamma_hypernet_local, l) * g + run_sequence(self.beta_hypernet_local, l)
    return self.layernorm(g2 + l2)


FUSION_BLOCKS = ('DSG', 'DShG', 'PIG', 'CIG')


def build_fusion(choice: str, dim: int, dropout: float = 0.0, *, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs) -> nnx.Module:
  """Fusion block by name. `dropout` reaches DSG only (DShG keeps 0.5, PIG/CIG have none), as in the original."""
  if choice == 'DSG':
    return DSG(dim, dropout, dtype=dtype, rngs=rngs)
  if choice == 'DShG':
    return DShG(dim, dtype=dtype, rngs=rngs)
  if choice == 'PIG':
    return PIG(dim, dtype=dtype, rngs=rngs)
  if choice == 'CIG':
    return CIG(dim, dtype=dtype, rngs=rngs)
  raise ValueError(f'unknown fusion block {choice!r}; expected one of {FUSION_BLOCKS}')


class FusionNet(nnx.Module):
  """The original's thin wrapper (`FusionNet.block`); kept so parameter paths match `vl_mapper.FusionNet.block`."""

  def __init__(self, choice: str, dim: int, dropout: float = 0.0, *, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.block = build_fusion(choice, dim, dropout, dtype=dtype, rngs=rngs)

  def __call__(self, g: Array, l: Array) -> Array:
    return self.block(g, l)


@dataclasses.dataclass(frozen=True)
class VLMapperConfig:
  """Defaults: HyperSign PHOENIX-2014T (`fuse_projection_share`, DSG with dropout 0.5)."""
  type: str = 'fuse_projection_share'  # or 'embedding_fuse_share' (CSL-Daily)
  in_features: int = 512               # projection input (VisualHead hidden size)
  num_glosses: int = 1094              # embedding input (recognition vocabulary size)
  out_features: int = 1024             # mBART d_model
  fusion: str = 'DSG'
  fusion_dropout: float = 0.5
  global_local_reverse: bool = False   # False: RGB is the 'global' input of the fusion block
  dtype: Any = jnp.float32

  def __post_init__(self):
    if self.type not in ('fuse_projection_share', 'embedding_fuse_share'):
      raise ValueError(f'unknown VLMapper type {self.type!r}; expected fuse_projection_share or '
                       'embedding_fuse_share')


def gloss_embedding_matrix(id2gloss: Sequence[str] | Mapping[int, str], gloss_embeddings: Mapping[str, Any],
                           dim: int) -> np.ndarray:
  """(#glosses, dim) float32 initialiser of the `embedding_fuse_share` mapping: row i = the embedding of gloss i
  (looked up by name), zero where the gloss has no embedding (e.g. `<si>`), as in the original."""
  names = [id2gloss[i] for i in range(len(id2gloss))]
  out = np.zeros((len(names), dim), np.float32)
  for i, name in enumerate(names):
    if name in gloss_embeddings:
      vec = np.asarray(gloss_embeddings[name], np.float32).reshape(-1)
      if vec.shape[0] != dim:
        raise ValueError(f'gloss embedding of {name!r} has size {vec.shape[0]}, expected {dim}')
      out[i] = vec
  return out


class VLMapper(nnx.Module):
  """Shared mapping of both streams into the text space, then hypernetwork fusion (the original `vl_mapper`)."""

  def __init__(self, config: VLMapperConfig, *, gloss_embeddings: np.ndarray | None = None, rngs: nnx.Rngs):
    c = self.config = config
    if c.type == 'fuse_projection_share':
      self.mapping = nnx.List([
          nnx.Linear(c.in_features, c.out_features, dtype=c.dtype, rngs=rngs),   # 0
          Act(jax.nn.relu),                                                        # 1
          nnx.Linear(c.out_features, c.out_features, dtype=c.dtype, rngs=rngs),  # 2
      ])
    else:
      self.mapping = nnx.Linear(c.num_glosses, c.out_features, use_bias=False, dtype=c.dtype, rngs=rngs)
      if gloss_embeddings is not None:
        init = np.asarray(gloss_embeddings, np.float32)
        if init.shape != (c.num_glosses, c.out_features):
          raise ValueError(f'gloss_embeddings has shape {init.shape}, expected ({c.num_glosses}, '
                           f'{c.out_features}) = (#recognition glosses, d_model)')
        self.mapping.kernel[...] = jnp.asarray(init)
    self.FusionNet = FusionNet(c.fusion, c.out_features, c.fusion_dropout, dtype=c.dtype, rngs=rngs)

  def _map(self, x: Array) -> Array:
    return run_sequence(self.mapping, x) if isinstance(self.mapping, nnx.List) else self.mapping(x)

  def __call__(self, rgb: Mapping[str, Array], keypoint: Mapping[str, Array]) -> dict[str, Array]:
    """rgb / keypoint: VisualHead outputs ('gloss_feature' (B, T, 512) or 'gloss_probs' (B, T, #glosses) are
    read, depending on the type). Returns {'output': F_f, 'rgb_feature': F_v, 'keypoint_feature': F_k},
    each (B, T, out_features)."""
    key = 'gloss_feature' if self.config.type == 'fuse_projection_share' else 'gloss_probs'
    f_v = self._map(rgb[key])
    f_k = self._map(keypoint[key])
    if self.config.global_local_reverse:
      fused = self.FusionNet(f_k, f_v)
    else:
      fused = self.FusionNet(f_v, f_k)
    return {'output': fused, 'rgb_feature': f_v, 'keypoint_feature': f_k}
