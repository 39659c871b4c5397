"""The jitted beam search / greedy decoder reproduces HF `generate` token for token on a tiny random mBART."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from checkpoints_conversion import hf_mbart
from hypersign_jax.decoding import beam_search
from hypersign_jax.models import mbart

PAD, EOS, LANG = 1, 2, 6
MAX_LEN = 12


@pytest.fixture(scope='module')
def pair():
  torch.manual_seed(0)
  hf_cfg = transformers.MBartConfig(
      vocab_size=40, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
      decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=32,
      pad_token_id=PAD, bos_token_id=0, eos_token_id=EOS, decoder_start_token_id=LANG, forced_eos_token_id=None)
  hf_cfg._attn_implementation = 'eager'
  hf = transformers.MBartForConditionalGeneration(hf_cfg).eval()
  gen = torch.Generator().manual_seed(3)
  with torch.no_grad():
    for name, p in list(hf.named_parameters()) + list(hf.named_buffers()):
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.2 * noise if ('norm' in name and name.endswith('weight')) else 0.3 * noise)
    hf.final_logits_bias[0, EOS] += 3.0  # EOS likely enough that hypotheses end at varied lengths
  ours = mbart.MBartForConditionalGeneration(mbart.MBartConfig.from_hf(hf_cfg), rngs=nnx.Rngs(0))
  hf_mbart.load_into(ours, hf_mbart.convert(hf.state_dict(), ours.config))
  ours.eval()
  rng = np.random.default_rng(0)
  lengths = np.array([7, 3, 5, 7, 2, 6])
  mask = (np.arange(7)[None] < lengths[:, None]).astype(np.int64)
  src = np.where(mask, rng.integers(3, 40, size=mask.shape), PAD)
  return hf, ours, src, mask


def _hf_generate(hf, src, mask, **kw):
  with torch.no_grad():
    out = hf.generate(input_ids=torch.tensor(src), attention_mask=torch.tensor(mask),
                      decoder_input_ids=torch.full((len(src), 1), LANG), max_length=MAX_LEN, do_sample=False,
                      early_stopping=False, no_repeat_ngram_size=0, min_length=0, pad_token_id=PAD,
                      eos_token_id=EOS, bos_token_id=0, decoder_start_token_id=LANG, return_dict_in_generate=True,
                      output_scores=True, **kw)
  scores = getattr(out, 'sequences_scores', None)
  return out.sequences.numpy(), None if scores is None else scores.numpy()


@pytest.mark.parametrize('num_beams,length_penalty,forced_eos', [(1, 1.0, False), (5, 1.0, False), (5, 0.6, False),
                                                                 (5, 2.0, False), (5, 1.0, True), (1, 1.0, True)])
def test_generate_equals_hf(pair, num_beams, length_penalty, forced_eos):
  hf, ours, src, mask = pair
  ref, ref_scores = _hf_generate(hf, src, mask, num_beams=num_beams, length_penalty=length_penalty,
                     forced_eos_token_id=EOS if forced_eos else None)
  cfg = beam_search.BeamSearchConfig(start_token_id=LANG, max_length=MAX_LEN, num_beams=num_beams,
                                     length_penalty=length_penalty, eos_token_id=EOS, pad_token_id=PAD,
                                     forced_eos_token_id=EOS if forced_eos else None)
  encoded = ours.encode(jnp.asarray(src), jnp.asarray(mask))
  seqs, scores = beam_search.jit_generate(ours, encoded, jnp.asarray(mask), cfg)
  seqs = np.asarray(seqs)
  assert seqs.shape == (len(src), MAX_LEN)
  np.testing.assert_array_equal(seqs[:, :ref.shape[1]], ref)
  assert np.all(seqs[:, ref.shape[1]:] == PAD)
  assert np.all(np.isfinite(np.asarray(scores)))
  if ref_scores is not None:  # beam search: HF's sequences_scores (sum log p / length**length_penalty)
    err = float(np.max(np.abs(np.asarray(scores) - ref_scores)))
    print(f'beams {num_beams} lp {length_penalty}: score max abs diff {err:.1e}')
    assert err < 1e-5
  ended = (ref == EOS).any(axis=1)
  if forced_eos:
    assert ended.all()
  elif length_penalty <= 1.0:  # the case mix this test relies on: some end with EOS, some run to max_length
    assert ended.any() and not ended.all()


def test_beam_score_is_length_normalised_logprob(pair):
  """The returned score equals sum log p(token) / generated_length**length_penalty of the returned tokens."""
  _, ours, src, mask = pair
  cfg = beam_search.BeamSearchConfig(start_token_id=LANG, max_length=MAX_LEN, num_beams=5, length_penalty=0.6,
                                     eos_token_id=EOS, pad_token_id=PAD)
  encoded = ours.encode(jnp.asarray(src), jnp.asarray(mask))
  seqs, scores = beam_search.jit_generate(ours, encoded, jnp.asarray(mask), cfg)
  seqs = np.asarray(seqs)
  logp = np.asarray(jax.nn.log_softmax(ours.decode(jnp.asarray(seqs[:, :-1]), encoded, jnp.asarray(mask))))
  for b in range(len(seqs)):
    gen = seqs[b, 1:]
    n = int(np.argmax(gen == EOS)) + 1 if (gen == EOS).any() else len(gen)
    total = sum(logp[b, t, gen[t]] for t in range(n))
    assert float(scores[b]) == pytest.approx(total / n**0.6, abs=1e-4)

