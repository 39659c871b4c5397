"""Flax mBART equals HF PyTorch `MBartForConditionalGeneration` (tiny random config, float32, eval mode)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from checkpoints_conversion import hf_mbart
from hypersign_jax.models import mbart

TOL = 1e-5
PAD = 1


def _hf_config(**kw):
  base = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
              dropout=0.3, attention_dropout=0.1, activation_dropout=0.1, scale_embedding=True,
              pad_token_id=PAD, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
  base.update(kw)
  cfg = transformers.MBartConfig(**base)
  cfg._attn_implementation = 'eager'
  return cfg


@pytest.fixture(scope='module')
def pair():
  """(HF model, our model) with the same randomised weights, both in eval mode."""
  torch.manual_seed(0)
  hf_cfg = _hf_config()
  hf = transformers.MBartForConditionalGeneration(hf_cfg).eval()
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, p in list(hf.named_parameters()) + list(hf.named_buffers()):
      noise = torch.randn(p.shape, generator=gen)
      if 'layer_norm' in name or 'layernorm' in name:
        p.copy_(1.0 + 0.2 * noise if name.endswith('weight') else 0.2 * noise)
      else:
        p.copy_(0.2 * noise)
  ours = mbart.MBartForConditionalGeneration(mbart.MBartConfig.from_hf(hf_cfg), rngs=nnx.Rngs(0))
  hf_mbart.load_into(ours, hf_mbart.convert(hf.state_dict(), ours.config))
  ours.eval()
  return hf, ours


def _padded_ids(rng, lengths, width, vocab=99):
  ids = rng.integers(3, vocab, size=(len(lengths), width))
  mask = np.arange(width)[None] < np.asarray(lengths)[:, None]
  ids[:, 0] = 2  # an eos / start-like token somewhere, as in real batches
  return np.where(mask, ids, PAD), mask.astype(np.int64)


# Jitted entry points: one compilation per shape instead of one per eager op.
_forward = nnx.jit(lambda m, src, src_mask, tgt, tgt_mask: m(src, src_mask, tgt, tgt_mask))
_encode = nnx.jit(lambda m, ids, mask, embeds, lengths: m.encode(ids, mask, inputs_embeds=embeds, lengths=lengths))
_decode = nnx.jit(lambda m, tgt, enc, mask: m.decode(tgt, enc, mask))


def _valid_max_abs(a, b, mask):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))[np.asarray(mask, bool)]))


def test_weights_are_randomised_and_copied(pair):
  hf, ours = pair
  np.testing.assert_array_equal(np.asarray(ours.final_logits_bias[...]), hf.final_logits_bias.numpy())
  lnw = hf.model.decoder.layers[1].encoder_attn_layer_norm.weight.detach().numpy()
  assert np.std(lnw) > 0.05
  np.testing.assert_array_equal(np.asarray(ours.model.decoder.layers[1].encoder_attn_layer_norm.scale[...]), lnw)
  np.testing.assert_array_equal(np.asarray(ours.model.encoder.layers[0].fc1.kernel[...]),
                                hf.model.encoder.layers[0].fc1.weight.detach().numpy().T)


def test_logits_from_token_ids_with_padding(pair):
  hf, ours = pair
  rng = np.random.default_rng(0)
  src, src_mask = _padded_ids(rng, [9, 5, 2], 9)
  tgt, tgt_mask = _padded_ids(rng, [7, 3, 6], 7)
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(src), attention_mask=torch.tensor(src_mask), decoder_input_ids=torch.tensor(tgt),
             decoder_attention_mask=torch.tensor(tgt_mask))
    enc_ref = hf.model.encoder(input_ids=torch.tensor(src), attention_mask=torch.tensor(src_mask))
  enc = _encode(ours, jnp.asarray(src), jnp.asarray(src_mask), None, None)
  logits = _forward(ours, jnp.asarray(src), jnp.asarray(src_mask), jnp.asarray(tgt), jnp.asarray(tgt_mask))
  enc_err = _valid_max_abs(enc, enc_ref.last_hidden_state.numpy(), np.broadcast_to(src_mask[..., None], enc.shape))
  err = _valid_max_abs(logits, out.logits.numpy(), np.broadcast_to(tgt_mask[..., None], logits.shape))
  print(f'token ids: encoder max abs {enc_err:.2e}, logits max abs {err:.2e}')
  assert enc_err < TOL and err < TOL
  assert float(jnp.max(jnp.abs(logits))) > 1.0  # a meaningful scale for the absolute tolerance


def test_logits_from_inputs_embeds_and_lengths(pair):
  """HyperSign's use: scaled features zero-padded after each sample's length, passed as inputs_embeds."""
  hf, ours = pair
  rng = np.random.default_rng(1)
  lengths = np.array([6, 3, 8])
  mask = (np.arange(8)[None] < lengths[:, None]).astype(np.int64)
  feats = (rng.normal(size=(3, 8, 32)) * mask[..., None] * np.sqrt(32)).astype(np.float32)
  tgt, _ = _padded_ids(rng, [5, 5, 5], 5)
  with torch.no_grad():
    out = hf(inputs_embeds=torch.tensor(feats), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(tgt))
  logits = _decode(ours, jnp.asarray(tgt), _encode(ours, None, None, jnp.asarray(feats), jnp.asarray(lengths)),
                   jnp.asarray(mask))
  err = float(np.max(np.abs(np.asarray(logits) - out.logits.numpy())))
  print(f'inputs_embeds: logits max abs {err:.2e}')
  assert err < TOL


def test_incremental_decoding_equals_teacher_forcing(pair):
  _, ours = pair
  rng = np.random.default_rng(2)
  src, src_mask = _padded_ids(rng, [6, 4], 6)
  tgt = jnp.asarray(rng.integers(3, 99, size=(2, 7)))
  encoded = _encode(ours, jnp.asarray(src), jnp.asarray(src_mask), None, None)
  full = _decode(ours, tgt, encoded, jnp.asarray(src_mask))  # (B, L, V)
  graphdef, state = nnx.split(ours)

  @jax.jit
  def step_fn(state, tokens, cache, step):
    return nnx.merge(graphdef, state).decode_step(tokens, cache, step)

  cache = ours.init_cache(2, 10, encoded, jnp.asarray(src_mask))
  errs = []
  for t in range(tgt.shape[1]):
    logits, cache = step_fn(state, tgt[:, t:t + 1], cache, t)
    errs.append(float(jnp.max(jnp.abs(logits - full[:, t]))))
  print(f'incremental vs teacher forcing: max abs {max(errs):.2e}')
  assert max(errs) < TOL
  assert cache['layers'][0]['self_k'].shape == (2, 10, 4, 8)


def test_fully_masked_sample_is_finite_and_does_not_disturb_others(pair):
  _, ours = pair
  feats = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 32)).astype(np.float32))
  enc = _encode(ours, None, None, feats, jnp.array([0, 3]))
  alone = _encode(ours, None, None, feats[1:, :3], jnp.array([3]))
  assert bool(jnp.all(jnp.isfinite(enc)))
  assert float(jnp.max(jnp.abs(enc[1, :3] - alone[0]))) < TOL


def test_train_mode_enables_dropout(pair):
  _, ours = pair
  ids = jnp.asarray(np.random.default_rng(4).integers(3, 99, size=(2, 5)))
  ref = _forward(ours, ids, None, ids, None)
  ours.train()
  try:
    noisy = _forward(ours, ids, None, ids, None)
  finally:
    ours.eval()
  assert float(jnp.max(jnp.abs(noisy - ref))) > 1e-2
  np.testing.assert_array_equal(np.asarray(_forward(ours, ids, None, ids, None)), np.asarray(ref))


def test_bfloat16_compute_keeps_float32_params(pair):
  _, ours = pair
  cfg16 = mbart.MBartConfig(**{**ours.config.__dict__, 'dtype': jnp.bfloat16})
  model16 = mbart.MBartForConditionalGeneration(cfg16, rngs=nnx.Rngs(0))
  nnx.update(model16, nnx.state(ours, nnx.Any(nnx.Param, mbart.Buffer)))
  model16.eval()
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model16, nnx.Param)))
  ids = jnp.asarray(np.random.default_rng(5).integers(3, 99, size=(2, 5)))
  ref, low = _forward(ours, ids, None, ids, None), _forward(model16, ids, None, ids, None)
  assert low.dtype == jnp.float32
  assert float(jnp.mean(jnp.argmax(low, -1) == jnp.argmax(ref, -1))) >= 0.8
  assert float(jnp.max(jnp.abs(low - ref))) < 0.1 * float(jnp.max(jnp.abs(ref)))


def test_cc25_geometry_parameter_count():
  """HyperSign's pruned mBART-large-cc25 (V=2498) has 357,382,144 parameters (HYPERSIGN.md §10)."""
  abstract = nnx.eval_shape(lambda: mbart.MBartForConditionalGeneration(mbart.MBartConfig(vocab_size=2498),
                                                                         rngs=nnx.Rngs(0)))
  params = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert sum(int(np.prod(p.shape)) for p in params) == 357_382_144
  assert abstract.final_logits_bias.shape == (1, 2498)
  assert abstract.model.encoder.embed_positions.embedding.shape == (1026, 1024)


def test_converter_names_missing_key(pair):
  hf, ours = pair
  sd = dict(hf.state_dict())
  del sd['model.decoder.layers.1.fc2.bias']
  with pytest.raises(KeyError, match='model.decoder.layers.1.fc2.bias'):
    hf_mbart.convert(sd, ours.config)
  # Only one copy of the tied matrix (as in safetensors) is enough.
  sd = {k: v for k, v in hf.state_dict().items() if k not in hf_mbart.TIED_EMBEDDING_KEYS[1:]}
  params = hf_mbart.convert(sd, ours.config)
  np.testing.assert_array_equal(params['model']['shared']['embedding'], hf.model.shared.weight.detach().numpy())
