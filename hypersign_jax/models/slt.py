"""HyperSign's sign-to-text (S2T) model: per-stream VisualHeads -> VLMapper + hypernetwork fusion -> PSC views
-> mBART encoder (features + `</s>` + target-language suffix) -> teacher-forced decoder for both views + SST.

The original is `HyperSignLanguageModel` in mode `hyper` (recognition_network -> vl_mapper ->
translation_network = `HyperTranslationNetwork`), design/HYPERSIGN.md §1-§5. Parameter paths mirror its
top-level children, so the paper's learning-rate groups are path regexes (`^recognition_network/`,
`^vl_mapper/`, `^translation_network/` -- the last one holds mBART *and* the SST network):

* `recognition_network.visual_head` (RGB) and `recognition_network.visual_head_keypoint` (keypoints): two
  VisualHeads with the same architecture and separate weights on the pre-extracted per-stream features;
* `vl_mapper`: the shared mapping of both streams (`fuse_projection_share` / `embedding_fuse_share`) and the
  fusion block (DSG by default) -> F_f, F_v, F_k;
* `translation_network.psc`: the two training views (partial shortcut, annealed lambda; eval: both = F_f);
* encoder input per view (§1.2(c).2, §11.8): for every sample its valid frames [0:T_i], then two suffix vectors
  -- rows `</s>` (2) and the target language (pruned de_DE / zh_CN) of the *live, trainable* shared embedding
  table -- then zeros up to max(T_i) + 2; the **whole** tensor, suffix included, is multiplied by
  sqrt(d_model) (`input_embed_scale`); positions restart at 0 in every sample, so the suffix sits at T_i and
  T_i + 1; the attention mask covers T_i + 2 positions. mBART then adds its learned positions, applies
  `layernorm_embedding` and the encoder stack (`MBartForConditionalGeneration.encode(inputs_embeds=...)`).
* `translation_network.model`: mBART; the decoder runs teacher-forced once per view with the same
  `decoder_input_ids`, cross-attending with the encoder mask and no decoder padding mask (only causal), as the
  original's `self.model(attention_mask=..., decoder_input_ids=..., encoder_outputs=...)`;
* `translation_network.SST_network`: SST on the two views' encoder outputs and their last decoder states
  (after the decoder's final LayerNorm), no masks (original).

`__call__` returns everything the loss needs (losses are computed by the task, `tasks/slt.py`). `encode_fused`
+ `hypersign_jax.decoding.beam_search.generate` is the inference path: it needs no references (the original's
evaluation first runs the teacher-forced two-view pass, which needs the labels).

Single-stream switch (`streams=('rgb',)` or `('keypoint',)`, for the "fusion helps" comparison; not in the
original): one VisualHead, a mapper with only the `mapping` MLP (no fusion block), and F_f = the stream's mapped
features; PSC then has nothing to mix, so both views equal F_f (they differ by dropout only, R-Drop).

The annealing / warm-up counter (`translation_network.num_updates`, the original's `set_num_updates(global_step)`)
advances once per training forward and is model state (checkpointed), like the PSC counter.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hypersign_jax.models import fusion, mbart, psc, sst, visual_head
from hypersign_jax.models.visual_head import Act, run_sequence

Array = jax.Array

STREAMS = ('rgb', 'keypoint')
HEAD_NAMES = {'rgb': 'visual_head', 'keypoint': 'visual_head_keypoint'}


@dataclasses.dataclass(frozen=True)
class SLTConfig:
  """The whole S2T model. Defaults: HyperSign PHOENIX-2014T geometry except the mBART vocabulary size."""
  streams: tuple[str, ...] = STREAMS
  input_sizes: tuple[int, ...] = (832, 832)  # feature width per stream, in `streams` order
  head: visual_head.VisualHeadConfig = visual_head.VisualHeadConfig()  # `input_size` is taken per stream
  mapper: fusion.VLMapperConfig = fusion.VLMapperConfig()
  psc: psc.PSCConfig = psc.PSCConfig()
  sst: sst.SSTConfig = sst.SSTConfig()
  mbart: mbart.MBartConfig = mbart.MBartConfig(vocab_size=2498, dropout=0.3, attention_dropout=0.1)
  lang_id: int = 6          # target-language token in the (pruned) vocabulary: de_DE -> 6, zh_CN -> 28
  eos_id: int = 2

  def __post_init__(self):
    if not self.streams or len(set(self.streams)) != len(self.streams) or any(
        s not in STREAMS for s in self.streams):
      raise ValueError(f"model.streams must be ('rgb', 'keypoint') or one of them, got {self.streams!r}")
    if len(self.input_sizes) != len(self.streams):
      raise ValueError(f'input_sizes {self.input_sizes} must give one width per stream {self.streams}')
    if self.mapper.out_features != self.mbart.d_model:
      raise ValueError(f'mapper.out_features {self.mapper.out_features} must equal mBART d_model '
                       f'{self.mbart.d_model}')

  @property
  def fused(self) -> bool:
    return len(self.streams) == 2


class Counter(nnx.Variable):
  """Training-forward counter (warm-up step of the KL terms); model state, not a parameter."""


class RecognitionNetwork(nnx.Module):
  """The original `recognition_network` in feature mode: one VisualHead per stream (no shared weights)."""

  def __init__(self, config: SLTConfig, *, rngs: nnx.Rngs):
    self.streams = config.streams
    for stream, size in zip(config.streams, config.input_sizes):
      head_cfg = dataclasses.replace(config.head, input_size=int(size))
      setattr(self, HEAD_NAMES[stream], visual_head.VisualHead(head_cfg, rngs=rngs))

  def __call__(self, features: Mapping[str, Array], masks: Mapping[str, Array]) -> dict[str, dict[str, Array]]:
    return {s: getattr(self, HEAD_NAMES[s])(features[s], masks[s]) for s in self.streams}


class SingleStreamMapper(nnx.Module):
  """`vl_mapper` without fusion: the shared mapping applied to one stream (output = its mapped features)."""

  def __init__(self, config: fusion.VLMapperConfig, *, gloss_embeddings=None, rngs: nnx.Rngs):
    c = self.config = config
    if c.type == 'fuse_projection_share':
      self.mapping = nnx.List([
          nnx.Linear(c.in_features, c.out_features, dtype=c.dtype, rngs=rngs),
          Act(jax.nn.relu),
          nnx.Linear(c.out_features, c.out_features, dtype=c.dtype, rngs=rngs),
      ])
    else:
      self.mapping = nnx.Linear(c.num_glosses, c.out_features, use_bias=False, dtype=c.dtype, rngs=rngs)
      if gloss_embeddings is not None:
        self.mapping.kernel[...] = jnp.asarray(gloss_embeddings, jnp.float32)

  def __call__(self, head_out: Mapping[str, Array]) -> Array:
    key = 'gloss_feature' if self.config.type == 'fuse_projection_share' else 'gloss_probs'
    x = head_out[key]
    return run_sequence(self.mapping, x) if isinstance(self.mapping, nnx.List) else self.mapping(x)


class TranslationNetwork(nnx.Module):
  """The original `translation_network`: mBART (`model`), the SST network and the PSC view builder."""

  def __init__(self, config: SLTConfig, *, rngs: nnx.Rngs):
    self.model = mbart.MBartForConditionalGeneration(config.mbart, rngs=rngs)
    self.SST_network = sst.SSTNetwork(config.sst, rngs=rngs)
    self.psc = psc.PartialShortcut(config.psc, rngs=rngs)
    self.num_updates = Counter(jnp.zeros((), jnp.int32))
    self.deterministic = False  # toggled by model.train() / model.eval()


def encoder_inputs(features: Array, lengths: Array, suffix: Array, scale: float) -> tuple[Array, Array]:
  """features (B, T, D), lengths (B,), suffix (2, D) -> (inputs (B, T + 2, D) times `scale`, mask (B, T + 2)).

  Row b: features[b, :T_b], suffix[0], suffix[1], zeros (see the module docstring)."""
  b, t, _ = features.shape
  pos = jnp.arange(t + 2)[None, :]                                 # (1, T + 2)
  length = jnp.asarray(lengths).astype(jnp.int32)[:, None]         # (B, 1)
  padded = jnp.pad(features, ((0, 0), (0, 2), (0, 0)))
  suffix = suffix.astype(features.dtype)
  out = jnp.where((pos < length)[..., None], padded, jnp.zeros((), features.dtype))
  out = jnp.where((pos == length)[..., None], suffix[0][None, None], out)
  out = jnp.where((pos == length + 1)[..., None], suffix[1][None, None], out)
  del b
  return out * jnp.asarray(scale, features.dtype), pos < length + 2


class HyperSignSLT(nnx.Module):
  """The S2T model (see the module docstring)."""

  def __init__(self, config: SLTConfig, *, gloss_embeddings=None, rngs: nnx.Rngs):
    self.config = config
    self.recognition_network = RecognitionNetwork(config, rngs=rngs)
    if config.fused:
      self.vl_mapper = fusion.VLMapper(config.mapper, gloss_embeddings=gloss_embeddings, rngs=rngs)
    else:
      self.vl_mapper = SingleStreamMapper(config.mapper, gloss_embeddings=gloss_embeddings, rngs=rngs)
    self.translation_network = TranslationNetwork(config, rngs=rngs)

  # ------------------------------------------------------------------------------------------------- pieces
  @property
  def mbart(self) -> mbart.MBartForConditionalGeneration:
    return self.translation_network.model

  def _lengths_and_masks(self, masks: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    # Both streams of a sample have the same T; the original collate keeps the last stream's mask and lengths.
    shapes = {s: tuple(masks[s].shape) for s in self.config.streams}
    if len(set(shapes.values())) != 1:
      raise ValueError(f'the feature streams have different padded shapes {shapes}; use the same buckets')
    mask = masks[self.config.streams[-1]]
    return jnp.sum(jnp.asarray(mask) > 0, axis=-1).astype(jnp.int32), mask

  def visual(self, features: Mapping[str, Array], masks: Mapping[str, Array]) -> dict[str, Any]:
    """Heads and mapper: {'heads': {stream: head outputs}, 'fused', 'rgb', 'keypoint' (B, T, d_model) or None,
    'lengths' (B,), 'mask' (B, T)}."""
    lengths, mask = self._lengths_and_masks(masks)
    heads = self.recognition_network(features, {s: mask for s in self.config.streams})
    if self.config.fused:
      mapped = self.vl_mapper(heads['rgb'], heads['keypoint'])
      fused, rgb, keypoint = mapped['output'], mapped['rgb_feature'], mapped['keypoint_feature']
    else:
      fused = self.vl_mapper(heads[self.config.streams[0]])
      rgb = keypoint = None
    return {'heads': heads, 'fused': fused, 'rgb': rgb, 'keypoint': keypoint, 'lengths': lengths, 'mask': mask}

  def suffix_rows(self) -> Array:
    """(2, d_model): the `</s>` and target-language rows of the shared embedding table (trainable)."""
    table = self.mbart.model.shared.embedding[...]
    return table[jnp.array([self.config.eos_id, self.config.lang_id])]

  def encode_view(self, view: Array, lengths: Array) -> tuple[Array, Array]:
    """One view (B, T, D) -> (encoder states (B, T + 2, D), encoder mask (B, T + 2) bool)."""
    inputs, mask = encoder_inputs(view, lengths, self.suffix_rows(), self.config.mbart.embed_scale)
    return self.mbart.encode(inputs_embeds=inputs, attention_mask=mask), mask

  def decode(self, decoder_input_ids: Array, encoder_states: Array, encoder_mask: Array) -> tuple[Array, Array]:
    """Teacher-forced decoder (causal self-attention only) -> (logits (B, L, V) float32, last states (B, L, D))."""
    m = self.mbart
    length = decoder_input_ids.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
    cross_kv = [layer.encoder_attn.key_value(encoder_states) for layer in m.model.decoder.layers]
    cross_mask = jnp.asarray(encoder_mask).astype(bool)[:, None, None, :]
    hidden, _ = m.model.decoder(m.embed_tokens(decoder_input_ids), jnp.arange(length), causal, cross_kv,
                                cross_mask)
    return m.lm_logits(hidden), hidden

  # ------------------------------------------------------------------------------------------------- forward
  def __call__(self, features: Mapping[str, Array], masks: Mapping[str, Array],
               decoder_input_ids: Array) -> dict[str, Any]:
    """Two-view teacher-forced forward (training; in eval mode both views are F_f).

    features {stream: (B, T, D_s)}, masks {stream: (B, T)}, decoder_input_ids (B, L). Returns
    {'logits': (view-1, view-2) (B, L, V), 'encoder': (view-1, view-2) (B, T + 2, d), 'decoder_hidden': (..)
    (B, L, d), 'encoder_mask' (B, T + 2), 'sst_logits' (2B, 2B), 'gloss_logits' {stream: (B, T, C)},
    'lengths' (B,), 'step' () (this forward's counter value), 'lambda1', 'lambda2', 'sigma'}.
    """
    tn = self.translation_network
    v = self.visual(features, masks)
    fused = v['fused']
    if self.config.fused:
      views = tn.psc(fused, v['rgb'], v['keypoint'])
    else:
      zero = jnp.zeros((), jnp.float32)
      views = {'view1': fused, 'view2': fused, 'lambda1': zero, 'lambda2': zero, 'sigma': zero}
    step = tn.num_updates[...]
    if not tn.deterministic:
      tn.num_updates[...] = step + 1
    enc1, enc_mask = self.encode_view(views['view1'], v['lengths'])
    enc2, _ = self.encode_view(views['view2'], v['lengths'])
    logits1, hid1 = self.decode(decoder_input_ids, enc1, enc_mask)
    logits2, hid2 = self.decode(decoder_input_ids, enc2, enc_mask)
    sst_out = tn.SST_network(enc1, enc2, hid1, hid2, video_mask=enc_mask,
                             text_mask=None)
    return {
        'logits': (logits1, logits2), 'encoder': (enc1, enc2), 'decoder_hidden': (hid1, hid2),
        'encoder_mask': enc_mask, 'sst_logits': sst_out['logits'],
        'gloss_logits': {s: h['gloss_logits'] for s, h in v['heads'].items()},
        'lengths': v['lengths'], 'step': step,
        'lambda1': views['lambda1'], 'lambda2': views['lambda2'], 'sigma': views['sigma'],
    }

  def encode_fused(self, features: Mapping[str, Array], masks: Mapping[str, Array]) -> tuple[Array, Array]:
    """Inference: features -> heads -> mapper -> fusion (F_f) -> suffix -> encoder. Returns (states, mask)."""
    v = self.visual(features, masks)
    return self.encode_view(v['fused'], v['lengths'])
