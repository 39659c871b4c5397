"""mBART (Liu et al. 2020) encoder-decoder in Flax NNX, numerically equal to HF `MBartForConditionalGeneration`.

HyperSign (and its gloss-to-text stage from SLRT/MMTLB) translates with `mbart-large-cc25` whose vocabulary is
pruned to the training texts. This module is the project's own implementation (transformers 5 has no Flax); it
keeps every published detail that changes numbers:

* pre-LN Transformer blocks (LN -> sublayer -> dropout -> residual) and a final LayerNorm after each stack
  (`encoder.layer_norm`, `decoder.layer_norm`); `layernorm_embedding` after token + position embeddings;
  LayerNorm eps 1e-5 with the two-pass variance (PyTorch's);
* learned positional embeddings with mBART's offset of 2: the table has `max_position_embeddings + 2` rows and
  position i (counted from 0 in every sample, padding-unaware, so inputs are right-padded) reads row i + 2;
* token embeddings multiplied by sqrt(d_model) when `scale_embedding`; `inputs_embeds` given to the encoder are
  used as they are (HF semantics: HyperSign multiplies its features and suffix rows by sqrt(1024) itself, then HF
  adds positions and applies `layernorm_embedding`);
* exact (erf) GELU, query-key products scaled by head_dim**-0.5;
* one token-embedding matrix (`model.shared`) used by encoder, decoder and, transposed, as the LM head, plus the
  non-trainable `final_logits_bias` (1, V);
* dropout after the embedding LN, after each attention/FFN sublayer (`dropout`), on attention weights
  (`attention_dropout`) and after the activation (`activation_dropout`); `model.train()`/`model.eval()` toggle
  them. LayerDrop is not implemented (HyperSign trains with layerdrop 0).

Decoding: `init_cache` precomputes the cross-attention keys/values once and allocates a fixed-size
self-attention cache; `decode_step` consumes one token per sample and returns the logits and the new cache as a
plain pytree (batch is axis 0 of every leaf), so a `lax.while_loop` beam search can carry and reorder it.

Training at scale: `MBartConfig.remat='layer'` runs every encoder layer and every teacher-forced decoder layer
under `jax.checkpoint` (policy `remat_policy`, models/remat.py; incremental decoding is never rematerialised);
each layer's output carries a batch-sharding hint (`training/sharding.constrain_batch`, a no-op outside a mesh).
With a bfloat16 compute dtype the attention scores, their softmax and the LM-head logits are float32.

Parameter paths mirror HF's module names (`model.shared`, `model.encoder.layers.N.self_attn.q_proj`, `fc1`,
`self_attn_layer_norm`, `encoder_attn`, `layernorm_embedding`, `layer_norm`, `final_logits_bias`) with Flax leaf
names (`kernel` (in, out), `bias`, `scale`, `embedding`), so a converter maps them one to one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hypersign_jax.models import remat as remat_lib
from hypersign_jax.training import sharding

Array = jax.Array
# Cache pytree: {'encoder_mask': (B, S) bool, 'layers': tuple of per-layer dicts with
# 'self_k'/'self_v' (B, M, H, Dh) and 'cross_k'/'cross_v' (B, S, H, Dh)}.
Cache = dict[str, Any]

POSITION_OFFSET = 2  # mBART's learned position table is shifted by 2 rows (fairseq legacy).
REMATS = ('none', 'layer')


@dataclasses.dataclass(frozen=True)
class MBartConfig:
  """mBART geometry and regularisation. Defaults are `facebook/mbart-large-cc25` (field names follow HF)."""
  vocab_size: int = 250027
  d_model: int = 1024
  encoder_layers: int = 12
  decoder_layers: int = 12
  encoder_attention_heads: int = 16
  decoder_attention_heads: int = 16
  encoder_ffn_dim: int = 4096
  decoder_ffn_dim: int = 4096
  activation_function: str = 'gelu'
  dropout: float = 0.1
  attention_dropout: float = 0.0
  activation_dropout: float = 0.0
  max_position_embeddings: int = 1024
  scale_embedding: bool = True
  pad_token_id: int = 1
  bos_token_id: int = 0
  eos_token_id: int = 2
  layer_norm_eps: float = 1e-5
  init_std: float = 0.02
  dtype: Any = jnp.float32  # compute dtype (e.g. jnp.bfloat16); parameters stay float32.
  remat: str = 'none'       # 'layer': rematerialise every encoder/decoder layer in the backward pass (training)
  remat_policy: str = ''    # jax.checkpoint policy name (models/remat.py POLICIES; '' = save nothing)

  def __post_init__(self):
    remat_lib.check(self.remat, REMATS, self.remat_policy, 'MBartConfig')

  @property
  def embed_scale(self) -> float:
    return math.sqrt(self.d_model) if self.scale_embedding else 1.0

  @classmethod
  def from_hf(cls, hf_config: Any, **overrides: Any) -> 'MBartConfig':
    """Builds a config from an HF `MBartConfig`, or the dict of a `config.json`; unknown keys are ignored."""
    source: Mapping[str, Any] = (hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict())
    names = {f.name for f in dataclasses.fields(cls)} - {'dtype', 'layer_norm_eps', 'remat', 'remat_policy'}
    values = {k: source[k] for k in names if k in source and source[k] is not None}
    values.update(overrides)
    return cls(**values)


class Buffer(nnx.Variable):
  """Non-trainable state that comes with a checkpoint (not an `nnx.Param`, so optimizers skip it)."""


_ACTIVATIONS = {
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),  # exact erf GELU, as torch's default
    'gelu_new': lambda x: jax.nn.gelu(x, approximate=True),
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
}


def lengths_to_mask(lengths: Array, max_len: int) -> Array:
  """(B,) valid lengths -> (B, max_len) bool mask, True on the first `lengths[b]` positions."""
  return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def _key_mask(mask: Array | None) -> Array | None:
  """(B, S) 0/1 padding mask -> (B, 1, 1, S) bool, broadcast over heads and queries."""
  if mask is None:
    return None
  return jnp.asarray(mask).astype(bool)[:, None, None, :]


def _layer_norm(dim: int, cfg: MBartConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=cfg.layer_norm_eps, use_fast_variance=False, dtype=cfg.dtype, rngs=rngs)


def _linear(d_in: int, d_out: int, cfg: MBartConfig, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(d_in, d_out, dtype=cfg.dtype, kernel_init=nnx.initializers.normal(cfg.init_std),
                    bias_init=nnx.initializers.zeros_init(), rngs=rngs)


class MBartAttention(nnx.Module):
  """Multi-head attention with separate q/k/v/out projections (HF `MBartAttention` layout)."""

  def __init__(self, cfg: MBartConfig, num_heads: int, *, rngs: nnx.Rngs):
    d = cfg.d_model
    if d % num_heads:
      raise ValueError(f'd_model {d} is not divisible by the number of heads {num_heads}')
    self.num_heads = num_heads
    self.head_dim = d // num_heads
    self.dtype = cfg.dtype
    self.q_proj = _linear(d, d, cfg, rngs)
    self.k_proj = _linear(d, d, cfg, rngs)
    self.v_proj = _linear(d, d, cfg, rngs)
    self.out_proj = _linear(d, d, cfg, rngs)
    self.dropout = nnx.Dropout(cfg.attention_dropout, rngs=rngs)

  def _heads(self, x: Array) -> Array:
    return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim)  # (B, T, H, Dh)

  def key_value(self, x: Array) -> tuple[Array, Array]:
    """(B, S, D) -> keys and values, each (B, S, H, Dh)."""
    return self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

  def __call__(self, x: Array, key: Array, value: Array, mask: Array | None) -> Array:
    """x (B, T, D) queries; key/value (B, S, H, Dh); mask broadcastable to (B, H, T, S), True = attend."""
    q = self._heads(self.q_proj(x))  # (B, T, H, Dh)
    # Scores and softmax in float32 whatever the compute dtype (accumulated in float32, not rounded first).
    scores = jnp.einsum('bthd,bshd->bhts', q, key.astype(q.dtype),
                        preferred_element_type=jnp.float32) * self.head_dim**-0.5
    if mask is not None:
      # A finite minimum: a fully masked row (e.g. a zero-length sample) gives a uniform row, not NaN.
      scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)  # (B, H, T, S)
    weights = self.dropout(weights)
    out = jnp.einsum('bhts,bshd->bthd', weights, value)
    return self.out_proj(out.reshape(*out.shape[:2], -1))  # (B, T, D)


class MBartEncoderLayer(nnx.Module):
  """Pre-LN self-attention + FFN block."""

  def __init__(self, cfg: MBartConfig, *, rngs: nnx.Rngs):
    self.self_attn = MBartAttention(cfg, cfg.encoder_attention_heads, rngs=rngs)
    self.self_attn_layer_norm = _layer_norm(cfg.d_model, cfg, rngs)
    self.fc1 = _linear(cfg.d_model, cfg.encoder_ffn_dim, cfg, rngs)
    self.fc2 = _linear(cfg.encoder_ffn_dim, cfg.d_model, cfg, rngs)
    self.final_layer_norm = _layer_norm(cfg.d_model, cfg, rngs)
    self.activation = _ACTIVATIONS[cfg.activation_function]
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    self.activation_dropout = nnx.Dropout(cfg.activation_dropout, rngs=rngs)

  def __call__(self, x: Array, mask: Array | None) -> Array:
    h = self.self_attn_layer_norm(x)
    k, v = self.self_attn.key_value(h)
    x = x + self.dropout(self.self_attn(h, k, v, mask))
    h = self.activation_dropout(self.activation(self.fc1(self.final_layer_norm(x))))
    return x + self.dropout(self.fc2(h))  # (B, S, D)


class MBartDecoderLayer(nnx.Module):
  """Pre-LN causal self-attention + cross-attention + FFN block."""

  def __init__(self, cfg: MBartConfig, *, rngs: nnx.Rngs):
    self.self_attn = MBartAttention(cfg, cfg.decoder_attention_heads, rngs=rngs)
    self.self_attn_layer_norm = _layer_norm(cfg.d_model, cfg, rngs)
    self.encoder_attn = MBartAttention(cfg, cfg.decoder_attention_heads, rngs=rngs)
    self.encoder_attn_layer_norm = _layer_norm(cfg.d_model, cfg, rngs)
    self.fc1 = _linear(cfg.d_model, cfg.decoder_ffn_dim, cfg, rngs)
    self.fc2 = _linear(cfg.decoder_ffn_dim, cfg.d_model, cfg, rngs)
    self.final_layer_norm = _layer_norm(cfg.d_model, cfg, rngs)
    self.activation = _ACTIVATIONS[cfg.activation_function]
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    self.activation_dropout = nnx.Dropout(cfg.activation_dropout, rngs=rngs)

  def __call__(self, x: Array, self_mask: Array | None, cross_k: Array, cross_v: Array,
               cross_mask: Array | None, cache: Mapping[str, Array] | None = None,
               step: Array | None = None) -> tuple[Array, dict[str, Array] | None]:
    """x (B, T, D). With `cache` (T == 1), this step's key/value are written at index `step` of the
    (B, M, H, Dh) self-attention cache and attention runs over the whole cache (masked by `self_mask`)."""
    h = self.self_attn_layer_norm(x)
    k, v = self.self_attn.key_value(h)  # (B, T, H, Dh)
    new_cache = None
    if cache is not None:
      k = jax.lax.dynamic_update_slice_in_dim(cache['self_k'], k.astype(cache['self_k'].dtype), step, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache['self_v'], v.astype(cache['self_v'].dtype), step, axis=1)
      new_cache = dict(cache, self_k=k, self_v=v)
    x = x + self.dropout(self.self_attn(h, k, v, self_mask))
    h = self.encoder_attn_layer_norm(x)
    x = x + self.dropout(self.encoder_attn(h, cross_k, cross_v, cross_mask))
    h = self.activation_dropout(self.activation(self.fc1(self.final_layer_norm(x))))
    return x + self.dropout(self.fc2(h)), new_cache  # (B, T, D)


class _MBartStack(nnx.Module):
  """Learned positions (offset 2), `layernorm_embedding`, a list of pre-LN layers, a final `layer_norm`."""

  def __init__(self, cfg: MBartConfig, layer_cls: type, num_layers: int, *, rngs: nnx.Rngs):
    self.embed_positions = nnx.Embed(cfg.max_position_embeddings + POSITION_OFFSET, cfg.d_model, dtype=cfg.dtype,
                                     embedding_init=nnx.initializers.normal(cfg.init_std), rngs=rngs)
    self.layernorm_embedding = _layer_norm(cfg.d_model, cfg, rngs)
    self.layers = nnx.List([layer_cls(cfg, rngs=rngs) for _ in range(num_layers)])
    self.layer_norm = _layer_norm(cfg.d_model, cfg, rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    self.remat_layers = cfg.remat == 'layer'
    self.remat_policy = cfg.remat_policy


class MBartEncoder(_MBartStack):
  """Embeddings (+ positions, `layernorm_embedding`) -> pre-LN layers -> `layer_norm`."""

  def __init__(self, cfg: MBartConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg, MBartEncoderLayer, cfg.encoder_layers, rngs=rngs)

  def __call__(self, inputs_embeds: Array, attention_mask: Array | None) -> Array:
    """inputs_embeds (B, S, D), already scaled; attention_mask (B, S) -> hidden states (B, S, D)."""
    positions = jnp.arange(inputs_embeds.shape[1]) + POSITION_OFFSET
    x = inputs_embeds + self.embed_positions(positions)[None]
    x = self.dropout(self.layernorm_embedding(x))
    mask = _key_mask(attention_mask)
    for layer in self.layers:
      x = remat_lib.maybe_checkpointed(self.remat_layers, layer, x, mask, policy=self.remat_policy)
      x = sharding.constrain_batch(x)
    return self.layer_norm(x)


class MBartDecoder(_MBartStack):
  """Token embeddings (+ positions, `layernorm_embedding`) -> pre-LN decoder layers -> `layer_norm`."""

  def __init__(self, cfg: MBartConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg, MBartDecoderLayer, cfg.decoder_layers, rngs=rngs)

  def __call__(self, inputs_embeds: Array, positions: Array, self_mask: Array | None,
               cross_kv: list[tuple[Array, Array]], cross_mask: Array | None,
               caches: tuple[Mapping[str, Array], ...] | None = None,
               step: Array | None = None) -> tuple[Array, tuple[dict[str, Array], ...] | None]:
    """inputs_embeds (B, T, D) scaled token embeddings; positions (T,) from 0 -> (B, T, D) [, new caches]."""
    x = inputs_embeds + self.embed_positions(positions + POSITION_OFFSET)[None]
    x = self.dropout(self.layernorm_embedding(x))
    new_caches = []
    for i, layer in enumerate(self.layers):
      if caches is None:  # teacher forcing (training): optionally rematerialised
        x, c = remat_lib.maybe_checkpointed(self.remat_layers, layer, x, self_mask, *cross_kv[i], cross_mask,
                                            policy=self.remat_policy)
      else:               # incremental decoding: no backward pass, never rematerialised
        x, c = layer(x, self_mask, *cross_kv[i], cross_mask, caches[i], step)
      x = sharding.constrain_batch(x)
      new_caches.append(c)
    return self.layer_norm(x), (None if caches is None else tuple(new_caches))


class MBartModel(nnx.Module):
  """Shared token embedding + encoder + decoder (HF `MBartModel`)."""

  def __init__(self, cfg: MBartConfig, *, rngs: nnx.Rngs):
    pad = cfg.pad_token_id

    def embedding_init(key, shape, dtype=jnp.float32):
      # HF init: N(0, init_std) with the padding row zeroed.
      return nnx.initializers.normal(cfg.init_std)(key, shape, dtype).at[pad].set(0.0)

    self.shared = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, embedding_init=embedding_init,
                            rngs=rngs)
    self.encoder = MBartEncoder(cfg, rngs=rngs)
    self.decoder = MBartDecoder(cfg, rngs=rngs)


class MBartForConditionalGeneration(nnx.Module):
  """mBART with the tied LM head and `final_logits_bias` (HF `MBartForConditionalGeneration`)."""

  def __init__(self, config: MBartConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.model = MBartModel(config, rngs=rngs)
    self.final_logits_bias = Buffer(jnp.zeros((1, config.vocab_size), jnp.float32))

  # ----------------------------------------------------------------------------------------------- pieces
  def embed_tokens(self, ids: Array) -> Array:
    """(B, T) ids -> (B, T, D) token embeddings times embed_scale (HF's `embed_tokens`).

    As HF's ``Embedding(padding_idx=pad)``, the pad row receives no gradient from lookups (it still gets one
    through the tied output projection).
    """
    emb = self.model.shared(ids)
    emb = jnp.where((ids == self.config.pad_token_id)[..., None], jax.lax.stop_gradient(emb), emb)
    return emb * jnp.asarray(self.config.embed_scale, self.config.dtype)

  def lm_logits(self, hidden: Array) -> Array:
    """(..., D) decoder states -> (..., V) float32 logits: hidden @ shared^T + final_logits_bias.

    The product runs in the compute dtype with float32 accumulation and output (the loss's softmax input is not
    rounded to bfloat16)."""
    dtype = self.config.dtype
    table = self.model.shared.embedding[...].astype(dtype)
    logits = jnp.einsum('...d,vd->...v', hidden.astype(dtype), table, preferred_element_type=jnp.float32)
    return logits + self.final_logits_bias[...][0]

  def _cross_kv(self, encoder_hidden_states: Array) -> list[tuple[Array, Array]]:
    return [layer.encoder_attn.key_value(encoder_hidden_states) for layer in self.model.decoder.layers]

  # ----------------------------------------------------------------------------------------------- encoder
  def encode(self, input_ids: Array | None = None, attention_mask: Array | None = None, *,
             inputs_embeds: Array | None = None, lengths: Array | None = None) -> Array:
    """Encoder states (B, S, D) from token ids (B, S) or from `inputs_embeds` (B, S, D).

    `inputs_embeds` are used as given (no embed_scale; HyperSign scales its inputs itself). Padding is given by
    `attention_mask` (B, S) (1 = valid) or by per-sample `lengths` (B,); padded keys are masked, positions are
    0..S-1 in every sample (right padding).
    """
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError('encode() needs exactly one of input_ids or inputs_embeds')
    if inputs_embeds is None:
      inputs_embeds = self.embed_tokens(input_ids)
    if attention_mask is None and lengths is not None:
      attention_mask = lengths_to_mask(lengths, inputs_embeds.shape[1])
    return self.model.encoder(inputs_embeds.astype(self.config.dtype), attention_mask)

  # ----------------------------------------------------------------------------------------------- decoder
  def decode(self, decoder_input_ids: Array, encoder_hidden_states: Array,
             encoder_attention_mask: Array | None = None, decoder_attention_mask: Array | None = None) -> Array:
    """Teacher-forced decoder: ids (B, L), encoder states (B, S, D) -> logits (B, L, V) float32.

    Self-attention is causal and, if `decoder_attention_mask` (B, L) is given, also masks padded keys (as HF);
    cross-attention masks padded encoder positions with `encoder_attention_mask` (B, S).
    """
    length = decoder_input_ids.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))[None, None]  # (1, 1, L, L)
    self_mask = causal if decoder_attention_mask is None else causal & _key_mask(decoder_attention_mask)
    hidden, _ = self.model.decoder(self.embed_tokens(decoder_input_ids), jnp.arange(length), self_mask,
                                   self._cross_kv(encoder_hidden_states), _key_mask(encoder_attention_mask))
    return self.lm_logits(hidden)

  def __call__(self, input_ids: Array | None = None, attention_mask: Array | None = None,
               decoder_input_ids: Array | None = None, decoder_attention_mask: Array | None = None, *,
               inputs_embeds: Array | None = None) -> Array:
    """Full teacher-forced forward -> logits (B, L, V) float32."""
    encoded = self.encode(input_ids, attention_mask, inputs_embeds=inputs_embeds)
    return self.decode(decoder_input_ids, encoded, attention_mask, decoder_attention_mask)

  # ----------------------------------------------------------------------------------------------- incremental
  def init_cache(self, batch_size: int, max_length: int, encoder_hidden_states: Array,
                 encoder_attention_mask: Array | None = None) -> Cache:
    """Zeroed self-attention cache of `max_length` steps plus cross-attention K/V of (B, S, D) encoder states."""
    cfg = self.config
    heads = cfg.decoder_attention_heads
    shape = (batch_size, max_length, heads, cfg.d_model // heads)
    if max_length > cfg.max_position_embeddings:
      raise ValueError(f'max_length {max_length} exceeds max_position_embeddings {cfg.max_position_embeddings}')
    if encoder_attention_mask is None:
      encoder_attention_mask = jnp.ones(encoder_hidden_states.shape[:2], bool)
    layers = tuple(
        {'self_k': jnp.zeros(shape, cfg.dtype), 'self_v': jnp.zeros(shape, cfg.dtype), 'cross_k': k, 'cross_v': v}
        for k, v in self._cross_kv(encoder_hidden_states))
    return {'encoder_mask': jnp.asarray(encoder_attention_mask).astype(bool), 'layers': layers}

  def decode_step(self, tokens: Array, cache: Cache, step: Array | int) -> tuple[Array, Cache]:
    """One decoder step: tokens (B, 1) at position `step` (scalar) -> logits (B, V) float32 and the new cache.

    Equals row `step` of `decode` on the sequence fed so far (positions 0..step).
    """
    step = jnp.asarray(step, jnp.int32)
    max_length = cache['layers'][0]['self_k'].shape[1]
    self_mask = (jnp.arange(max_length) <= step)[None, None, None, :]  # (1, 1, 1, M)
    cross_kv = [(c['cross_k'], c['cross_v']) for c in cache['layers']]
    hidden, layers = self.model.decoder(self.embed_tokens(tokens), step[None], self_mask, cross_kv,
                                        _key_mask(cache['encoder_mask']), cache['layers'], step)
    return self.lm_logits(hidden[:, 0]), {'encoder_mask': cache['encoder_mask'], 'layers': layers}
