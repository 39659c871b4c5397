"""Seq2seq beam search (and greedy decoding) for the Flax mBART, with Hugging Face's scoring rules.

HyperSign generates with HF `generate(num_beams=5, length_penalty=1, max_length=100)` starting from the target
language token only. This is one `lax.while_loop` over the model's fixed-size KV cache (structure after the Flax
WMT decoder) that reproduces HF's (v5, vectorised) beam search step for step:

* each step expands the running beams with log_softmax scores, keeps the top 2*num_beams continuations,
  continues with the best num_beams that did not stop, and offers the stopping ones among the first num_beams
  candidates to the finished set with score sum_logprob / generated_length**length_penalty (generated length counts
  the tokens after the start token, EOS included);
* a continuation stops on EOS or when the sequence reaches `max_length` (which counts the start token);
* HF's default early-stopping rule (`early_stopping=False`): stop once no running beam's
  score / current_generated_length**length_penalty can beat the worst finished score; finished scores are never
  admitted after that point;
* optional `forced_eos_token_id` (HF `ForcedEOSTokenLogitsProcessor`: only EOS is allowed at the last position);
* decoding starts from `[start_token_id]` only (4.11 behaviour, no prepended BOS); outputs are padded with `pad`.

`num_beams == 1` is greedy decoding (as HF does for one beam): argmax each step, pad after EOS.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
_NEG = -1.0e9  # HF's "impossible" score


@dataclasses.dataclass(frozen=True)
class BeamSearchConfig:
  start_token_id: int  # target-language token (de_DE / zh_CN after pruning)
  max_length: int = 100  # counts the start token
  num_beams: int = 5
  length_penalty: float = 1.0
  eos_token_id: int = 2
  pad_token_id: int = 1
  forced_eos_token_id: int | None = None


def _log_probs(logits: Array, cur_len: Array, cfg: BeamSearchConfig) -> Array:
  """(N, V) logits at sequence length `cur_len` -> processed log-probabilities (float32)."""
  lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  if cfg.forced_eos_token_id is not None:
    only_eos = jnp.where(jnp.arange(lp.shape[-1]) == cfg.forced_eos_token_id, 0.0, -jnp.inf)
    lp = jnp.where(cur_len == cfg.max_length - 1, only_eos[None], lp)
  return lp


def _gather(x: Array, idx: Array) -> Array:
  """x (B, K, ...) gathered along axis 1 with idx (B, K') -> (B, K', ...)."""
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def generate(model: Any, encoder_hidden_states: Array, encoder_attention_mask: Array | None,
             cfg: BeamSearchConfig) -> tuple[Array, Array]:
  """Best sequence per sample: ((B, max_length) int32 starting with the start token, pad-filled; (B,) scores).

  `model` is an `MBartForConditionalGeneration` (anything with `init_cache`/`decode_step`); call this inside
  `nnx.jit` (see `jit_generate`) or after `nnx.merge` inside `jax.jit`. Scores are sum log-prob /
  length**length_penalty of the returned hypothesis.
  """
  batch = encoder_hidden_states.shape[0]
  if encoder_attention_mask is None:
    encoder_attention_mask = jnp.ones(encoder_hidden_states.shape[:2], bool)
  if cfg.num_beams == 1:
    return _greedy(model, encoder_hidden_states, encoder_attention_mask, cfg)
  k, m = cfg.num_beams, cfg.max_length
  graphdef, state = nnx.split(model)
  cache = model.init_cache(batch * k, m, jnp.repeat(encoder_hidden_states, k, axis=0),
                           jnp.repeat(encoder_attention_mask, k, axis=0))
  prompt_len = 1
  seqs = jnp.full((batch, k, m), cfg.pad_token_id, jnp.int32).at[:, :, 0].set(cfg.start_token_id)
  carry = dict(
      cur_len=jnp.array(prompt_len, jnp.int32),
      running_seqs=seqs,
      running_scores=jnp.zeros((batch, k), jnp.float32).at[:, 1:].set(_NEG),
      seqs=seqs,
      scores=jnp.full((batch, k), _NEG, jnp.float32),
      finished=jnp.zeros((batch, k), bool),
      improvable=jnp.ones((batch, 1), bool),
      done=jnp.array(False),
      cache=cache,
  )
  two_k = 2 * k
  top_k_mask = jnp.arange(two_k) < k  # only the first num_beams candidates may finish

  def body(c):
    cur_len = c['cur_len']
    tokens = c['running_seqs'][:, :, cur_len - 1].reshape(batch * k, 1)
    logits, cache = nnx.merge(graphdef, state).decode_step(tokens, c['cache'], cur_len - 1)
    vocab = logits.shape[-1]
    lp = _log_probs(logits, cur_len, cfg).reshape(batch, k, vocab) + c['running_scores'][:, :, None]
    cand_scores, cand_idx = jax.lax.top_k(lp.reshape(batch, k * vocab), two_k)  # (B, 2K)
    parent, token = cand_idx // vocab, (cand_idx % vocab).astype(jnp.int32)
    cand_seqs = _gather(c['running_seqs'], parent)
    cand_seqs = jnp.where(jnp.arange(m) == cur_len, token[:, :, None], cand_seqs)  # (B, 2K, M)
    stops = (token == cfg.eos_token_id) | (cur_len + 1 >= m)

    # Running beams for the next step: the best K candidates that did not stop.
    run_scores = cand_scores + stops.astype(jnp.float32) * _NEG
    keep = jax.lax.top_k(run_scores, k)[1]
    running_seqs, running_scores = _gather(cand_seqs, keep), _gather(run_scores, keep)
    beam_idx = (_gather(parent, keep) + (jnp.arange(batch) * k)[:, None]).reshape(-1)
    cache = jax.tree.map(lambda x: x[beam_idx], cache)

    # Finished set: stopping candidates among the first K, length-normalised, if still admissible.
    just_finished = stops & top_k_mask[None]
    fin = cand_scores / ((cur_len + 1 - prompt_len).astype(jnp.float32) ** cfg.length_penalty)
    fin = fin + (~c['improvable']).astype(jnp.float32) * _NEG + (~just_finished).astype(jnp.float32) * _NEG
    merged_scores = jnp.concatenate([c['scores'], fin], axis=1)
    best = jax.lax.top_k(merged_scores, k)[1]
    seqs_out = _gather(jnp.concatenate([c['seqs'], cand_seqs], axis=1), best)
    scores_out = _gather(merged_scores, best)
    finished = _gather(jnp.concatenate([c['finished'], just_finished], axis=1), best)

    cur_len = cur_len + 1
    best_running = running_scores[:, :1] / ((cur_len - prompt_len).astype(jnp.float32) ** cfg.length_penalty)
    worst_finished = jnp.where(finished, jnp.min(scores_out, axis=1, keepdims=True), _NEG)
    improvable = c['improvable'] & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)
    done = ~(jnp.any(improvable) & ~jnp.all(stops))
    return dict(cur_len=cur_len, running_seqs=running_seqs, running_scores=running_scores, seqs=seqs_out,
                scores=scores_out, finished=finished, improvable=improvable, done=done, cache=cache)

  out = jax.lax.while_loop(lambda c: ~c['done'], body, carry)
  return out['seqs'][:, 0], out['scores'][:, 0]


def _greedy(model: Any, encoder_hidden_states: Array, encoder_attention_mask: Array,
            cfg: BeamSearchConfig) -> tuple[Array, Array]:
  batch, m = encoder_hidden_states.shape[0], cfg.max_length
  graphdef, state = nnx.split(model)
  carry = dict(
      cur_len=jnp.array(1, jnp.int32),
      seqs=jnp.full((batch, m), cfg.pad_token_id, jnp.int32).at[:, 0].set(cfg.start_token_id),
      unfinished=jnp.ones((batch,), bool),
      logprob=jnp.zeros((batch,), jnp.float32),
      length=jnp.zeros((batch,), jnp.int32),
      cache=model.init_cache(batch, m, encoder_hidden_states, encoder_attention_mask),
  )

  def body(c):
    cur_len = c['cur_len']
    logits, cache = nnx.merge(graphdef, state).decode_step(c['seqs'][:, cur_len - 1][:, None], c['cache'],
                                                           cur_len - 1)
    lp = _log_probs(logits, cur_len, cfg)
    token = jnp.argmax(lp, axis=-1).astype(jnp.int32)
    token = jnp.where(c['unfinished'], token, cfg.pad_token_id)
    seqs = jnp.where(jnp.arange(m) == cur_len, token[:, None], c['seqs'])
    logprob = c['logprob'] + jnp.where(c['unfinished'], jnp.take_along_axis(lp, token[:, None], 1)[:, 0], 0.0)
    length = c['length'] + c['unfinished'].astype(jnp.int32)
    unfinished = c['unfinished'] & (token != cfg.eos_token_id)
    return dict(cur_len=cur_len + 1, seqs=seqs, unfinished=unfinished, logprob=logprob, length=length, cache=cache)

  out = jax.lax.while_loop(lambda c: jnp.any(c['unfinished']) & (c['cur_len'] < m), body, carry)
  return out['seqs'], out['logprob'] / jnp.maximum(out['length'], 1).astype(jnp.float32) ** cfg.length_penalty


@nnx.jit(static_argnames=('cfg',))
def jit_generate(model: Any, encoder_hidden_states: Array, encoder_attention_mask: Array | None,
                 cfg: BeamSearchConfig) -> tuple[Array, Array]:
  """`generate` compiled once per (shapes, cfg)."""
  return generate(model, encoder_hidden_states, encoder_attention_mask, cfg)
