"""CTC decoding: prefix beam search equals brute force, greedy equals a NumPy reference, lengths and merging."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from hypersign_jax.decoding import ctc


def _collapse(path, blank=0):
  return tuple(c for c, _ in itertools.groupby(path) if c != blank)


def _brute_force(p):
  """P(labelling) summed over every alignment of a (T, C) probability matrix."""
  num_t, num_c = p.shape
  total = {}
  for path in itertools.product(range(num_c), repeat=num_t):
    total[_collapse(path)] = total.get(_collapse(path), 0.0) + np.prod(p[np.arange(num_t), path])
  return total


def _random_probs(rng, shape, concentration=0.7):
  return rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])


def test_beam_search_equals_brute_force():
  rng = np.random.default_rng(0)
  for _ in range(60):
    num_c, num_t = int(rng.integers(2, 5)), int(rng.integers(1, 7))
    p = _random_probs(rng, (num_t, num_c))
    total = _brute_force(p)
    best = max(total, key=total.get)
    # Beam wide enough to hold every prefix and no class pruning: the search is exact.
    beam = ctc.beam_search_decode(p[None], beam_width=10_000, cutoff_top_n=num_c, merge_repeats=False,
                                  nbest=True)[0]
    assert beam[0].labels == best
    for h in beam:  # every prefix in the final beam carries its exact probability
      assert np.exp(h.log_prob) == pytest.approx(total[h.labels], rel=1e-9)
    assert len(beam) == len(total)
    assert ctc.beam_search_decode(np.log(p)[None], beam_width=10_000, cutoff_top_n=num_c, log_probs=True,
                                  merge_repeats=False) == [list(best)]


def test_beam_search_default_settings_find_brute_force_best_on_small_problems():
  rng = np.random.default_rng(1)
  for _ in range(30):
    p = _random_probs(rng, (5, 4), concentration=0.3)
    total = _brute_force(p)
    best = max(total, key=total.get)
    assert ctc.beam_search_decode(p[None], merge_repeats=False)[0] == list(best)


def _reference_beam_search(p, beam, top_n):
  """Textbook prefix beam search with dicts, same candidate pruning; returns {prefix: log prob} of the beam."""
  beam_set = {(): (0.0, -np.inf)}  # prefix -> (log P ends in blank, log P ends in label)
  for frame in np.log(p):
    cand = [int(c) for c in np.argsort(-frame, kind='stable')[:top_n]]
    nxt = {}
    add = lambda pre, b, nb: nxt.__setitem__(pre, (np.logaddexp(nxt.get(pre, (-np.inf,) * 2)[0], b),
                                                   np.logaddexp(nxt.get(pre, (-np.inf,) * 2)[1], nb)))
    for pre, (b, nb) in beam_set.items():
      tot = np.logaddexp(b, nb)
      for c in cand:
        if c == 0:
          add(pre, tot + frame[0], -np.inf)
        elif pre and c == pre[-1]:
          add(pre, -np.inf, nb + frame[c])
          add(pre + (c,), -np.inf, b + frame[c])
        else:
          add(pre + (c,), -np.inf, tot + frame[c])
    ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))
    beam_set = dict(kv for kv in ranked[:beam] if np.isfinite(np.logaddexp(*kv[1])))
  return {pre: float(np.logaddexp(b, nb)) for pre, (b, nb) in beam_set.items()}


def test_beam_search_equals_textbook_reference_with_pruning():
  rng = np.random.default_rng(5)
  for _ in range(20):
    p = _random_probs(rng, (12, 7), concentration=0.5)
    ref = _reference_beam_search(p, beam=3, top_n=4)
    got = ctc.beam_search_decode(p[None], beam_width=3, cutoff_top_n=4, merge_repeats=False, nbest=True)[0]
    assert {h.labels: pytest.approx(h.log_prob, rel=1e-9) for h in got} == ref


def _greedy_reference(scores, length, merge_repeats, blank=0):
  best = np.argmax(scores[:length], axis=-1)
  out = [c for c, _ in itertools.groupby(best) if c != blank]
  return [c for c, _ in itertools.groupby(out)] if merge_repeats else out


@pytest.mark.parametrize('merge_repeats', [False, True])
def test_greedy_jnp_equals_numpy_reference(merge_repeats):
  rng = np.random.default_rng(2)
  scores = rng.normal(size=(16, 30, 4)).astype(np.float32)
  scores[:, :, 0] += 0.8  # plenty of blanks separating repeats
  lengths = rng.integers(0, 31, size=16)
  labels, out_len = ctc.greedy_decode(jnp.asarray(scores), jnp.asarray(lengths), merge_repeats=merge_repeats)
  got = ctc.labels_to_lists(labels, out_len)
  for b in range(16):
    assert got[b] == _greedy_reference(scores[b], lengths[b], merge_repeats)
  assert np.all(np.asarray(labels)[np.arange(30)[None] >= np.asarray(out_len)[:, None]] == -1)
  assert any(_greedy_reference(scores[b], 30, True) != _greedy_reference(scores[b], 30, False) for b in range(16))


def _peaked(path, num_c, rng, peak=0.97):
  p = np.full((len(path), num_c), (1 - peak) / (num_c - 1))
  p[np.arange(len(path)), path] = peak
  return p * rng.uniform(0.99, 1.01, size=p.shape)  # break exact ties, keep the argmax


@pytest.mark.parametrize('merge_repeats', [False, True])
def test_beam_search_equals_greedy_on_peaked_inputs(merge_repeats):
  rng = np.random.default_rng(3)
  num_c = 50
  probs = np.stack([_peaked(rng.integers(0, 6, size=40) * rng.integers(0, 2, size=40), num_c, rng)
                    for _ in range(8)])
  probs /= probs.sum(-1, keepdims=True)
  lengths = np.array([40, 1, 0, 17, 40, 33, 25, 8])
  beam = ctc.beam_search_decode(probs, lengths, merge_repeats=merge_repeats)
  labels, out_len = ctc.greedy_decode(jnp.asarray(np.log(probs)), jnp.asarray(lengths),
                                      merge_repeats=merge_repeats)
  assert beam == ctc.labels_to_lists(labels, out_len)
  assert beam[2] == []


def test_lengths_ignore_padding():
  rng = np.random.default_rng(4)
  probs = _random_probs(rng, (3, 12, 6))
  lengths = np.array([12, 7, 3])
  padded = probs.copy()
  for b, n in enumerate(lengths):
    padded[b, n:] = _random_probs(rng, (12 - n, 6))  # different garbage after the valid frames
  expected = [ctc.beam_search_decode(probs[b:b + 1, :n], nbest=True)[0] for b, n in enumerate(lengths)]
  assert ctc.beam_search_decode(padded, lengths, nbest=True) == expected
  assert ctc.beam_search_decode(padded, lengths) == [list(e[0].labels) for e in expected]


def test_repeat_merge_switch():
  # Frames: A blank A -> CTC labelling (A, A); the original's extra groupby turns it into (A,).
  p = np.array([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
  assert ctc.beam_search_decode(p[None], merge_repeats=False) == [[1, 1]]
  assert ctc.beam_search_decode(p[None]) == [[1]]
  labels, n = ctc.greedy_decode(jnp.asarray(p[None]), jnp.array([3]), merge_repeats=False)
  assert ctc.labels_to_lists(labels, n) == [[1, 1]]


def test_pruning_matches_ctcdecode_rules():
  # Frame 1: class 2 is the best label but lies outside the top-2 (blank and class 1 are larger) ->
  # with cutoff_top_n=2 it cannot be emitted.
  p = np.array([[0.1, 0.2, 0.7], [0.45, 0.3, 0.25]])
  assert ctc.beam_search_decode(p[None], cutoff_top_n=3, merge_repeats=False) == [[2]]
  nb = ctc.beam_search_decode(p[None], cutoff_top_n=2, merge_repeats=False, nbest=True, beam_width=50)[0]
  assert all(2 not in h.labels[1:] for h in nb)
  # cutoff_prob: at frame 0 cumulative prob of the sorted classes (0.7, 0.2, 0.1) reaches 0.85 at the second,
  # so class 0 (blank) is not a candidate at frame 0 and every hypothesis starts with a label.
  nb = ctc.beam_search_decode(p[None], cutoff_prob=0.85, merge_repeats=False, nbest=True, beam_width=50)[0]
  assert all(h.labels and h.labels[0] in (1, 2) for h in nb)
  assert len(nb) > 1


def test_errors_raise():
  p = np.full((1, 4, 3), 1 / 3)
  with pytest.raises(ValueError, match=r'lengths must lie in \[0, 4\]'):
    ctc.beam_search_decode(p, [5])
  with pytest.raises(ValueError, match='contains NaN'):
    ctc.beam_search_decode(np.where(np.arange(3) == 1, np.nan, p), [4])
  with pytest.raises(ValueError, match='negative probabilities'):
    ctc.beam_search_decode(np.log(p))
  with pytest.raises(ValueError, match=r'\(B, T, C\)'):
    ctc.beam_search_decode(p[0])
  with pytest.raises(ValueError, match='blank index 3'):
    ctc.beam_search_decode(p, blank=3)
  with pytest.raises(RuntimeError, match='sample 0 has no path'):
    ctc.beam_search_decode(np.zeros((1, 2, 3)))
