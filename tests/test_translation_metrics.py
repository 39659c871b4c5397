"""BLEU-1..4 and ROUGE-L follow the SLRT conventions (EVALUATION.md): checked against sacrebleu and by hand."""
import math

import numpy as np
import pytest
import sacrebleu

from hypersign_jax.metrics import translation as tm


def _random_corpus(rng, n, vocab, max_len):
  """References of random words; hypotheses are noisy copies (substitutions, drops) so all n-gram orders match."""
  words = [f'w{i}' for i in range(vocab)]
  refs, hyps = [], []
  for _ in range(n):
    ref = list(rng.choice(words, size=rng.integers(0, max_len + 1)))
    hyp = [w if rng.random() > 0.2 else str(rng.choice(words)) for w in ref if rng.random() > 0.1]
    refs.append(' '.join(ref))
    hyps.append(' '.join(hyp))
  return hyps, refs


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_bleu_equals_sacrebleu_with_slrt_settings(seed):
  rng = np.random.default_rng(seed)
  hyps, refs = _random_corpus(rng, 40, vocab=12, max_len=9)
  ours = tm.bleu(hypotheses=hyps, references=refs)
  for n in range(1, 5):
    ref = sacrebleu.BLEU(tokenize='none', lowercase=False, smooth_method='none', effective_order=True,
                         max_ngram_order=n).corpus_score(hyps, [refs]).score
    assert ours.scores[f'bleu{n}'] == pytest.approx(ref, abs=1e-9)
  assert 0 < ours.scores['bleu4'] < ours.scores['bleu1']
  assert 'tok:none' in ours.signature and 'smooth:none' in ours.signature and 'case:mixed' in ours.signature
  assert 'eff:yes' in ours.signature and 'level:word' in ours.signature


def test_bleu_by_hand_cumulative():
  # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3, BP = 1.
  r = tm.bleu(hypotheses=['the cat sat on the mat'], references=['the cat is on the mat']).scores
  assert r['bleu1'] == pytest.approx(100 * 5 / 6)
  assert r['bleu2'] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))
  assert r['bleu3'] == pytest.approx(50.0)
  assert r['bleu4'] == pytest.approx(0.0, abs=1e-9)  # no smoothing


def test_bleu_by_hand_effective_order_and_brevity_penalty():
  # Two-word hypothesis: no 3-/4-grams, so BLEU-3/4 use orders 1..2 only; BP = exp(1 - 4/2).
  r = tm.bleu(hypotheses=['a b'], references=['a b c d']).scores
  for n in range(1, 5):
    assert r[f'bleu{n}'] == pytest.approx(100 * math.exp(-1.0))


def test_bleu_is_case_sensitive_and_whitespace_tokenized():
  assert tm.bleu(hypotheses=['The Cat'], references=['the cat']).scores['bleu1'] == 0.0
  # No internal tokenization: 'mat.' is one token, different from 'mat'.
  assert tm.bleu(hypotheses=['a mat.'], references=['a mat']).scores['bleu1'] == pytest.approx(50.0)


def test_bleu_char_level_equals_sacrebleu_char_tokenizer():
  rng = np.random.default_rng(3)
  chars = list('今天明天气很好不是我们你')
  hyps = [''.join(rng.choice(chars, size=rng.integers(1, 12))) for _ in range(30)]
  refs = [''.join(rng.choice(chars, size=rng.integers(1, 12))) for _ in range(30)]
  ours = tm.bleu(hypotheses=hyps, references=refs, level='char')
  for n in range(1, 5):
    ref = sacrebleu.BLEU(tokenize='char', smooth_method='none', effective_order=True,
                         max_ngram_order=n).corpus_score(hyps, [refs]).score
    assert ours.scores[f'bleu{n}'] == pytest.approx(ref, abs=1e-9)
  assert 'level:char' in ours.signature
  assert tm.char_split('今天好') == '今 天 好'


def test_lcs_length():
  assert tm.lcs_length(list('ABCBDAB'), list('BDCABA')) == 4
  assert tm.lcs_length([], ['a']) == 0
  assert tm.lcs_length('a c'.split(), 'a b c d'.split()) == 2


def test_rouge_l_sentence_by_hand():
  # LCS('a b c d', 'a c e') = 2, P = 1/2, R = 2/3, beta = P/R = 3/4, F = (1+b^2)RP/(R+b^2 P) = 50/91.
  f, p, r = tm.rouge_l_sentence('a b c d', 'a c e')
  assert (p, r) == (0.5, pytest.approx(2 / 3))
  assert f == pytest.approx(50 / 91, abs=1e-9)
  # mscoco variant: beta fixed at 1.2.
  f_coco, _, _ = tm.rouge_l_sentence('a b c d', 'a c e', variant='mscoco')
  assert f_coco == pytest.approx(2.44 * (2 / 3) * 0.5 / (2 / 3 + 1.44 * 0.5))
  assert tm.rouge_l_sentence('x y', 'x y')[0] == pytest.approx(1.0, abs=1e-9)
  with pytest.raises(ValueError, match='unknown ROUGE-L variant'):
    tm.rouge_l_sentence('a', 'a', variant='rouge-lsum')


def test_rouge_l_corpus_average_with_empty_hypothesis():
  hyps = ['a b c d', '', 'x  y ']  # the empty hypothesis scores 0; whitespace is normalised
  refs = ['a c e', 'p q', 'x y']
  assert tm.rouge_l(hypotheses=hyps, references=refs) == pytest.approx(100 * (50 / 91 + 0 + 1) / 3, abs=1e-7)
  assert tm.rouge_l_sentence('', 'p q') == (0.0, 0.0, 0.0)


def test_rouge_l_char_level():
  # chars: LCS('今天天气好', '今天好') = 3, P = 3/5, R = 1, beta = 3/5: F = 1.36*0.6 / (1 + 0.36*0.6).
  score = tm.rouge_l(hypotheses=['今天天气好'], references=['今天好'], level='char')
  assert score == pytest.approx(100 * 1.36 * 0.6 / (1 + 0.36 * 0.6), abs=1e-7)
  assert tm.rouge_l(hypotheses=['今天天气好'], references=['今天好']) == 0.0  # word level: one token each


def test_translation_scores_and_errors():
  s = tm.translation_scores(hypotheses=['a b c d'], references=['a c e'])
  assert set(s) == {'bleu1', 'bleu2', 'bleu3', 'bleu4', 'rouge_l', 'signature'}
  assert s['signature'].endswith('rouge-l:tf_seq2seq')
  with pytest.raises(ValueError, match='2 hypotheses but 1 references'):
    tm.bleu(hypotheses=['a', 'b'], references=['a'])
  with pytest.raises(ValueError, match='unknown level'):
    tm.rouge_l(hypotheses=['a'], references=['a'], level='bpe')


def test_fix_final_period():
  assert tm.fix_final_period('am tag wird es regnen.') == 'am tag wird es regnen .'
  assert tm.fix_final_period('am tag wird es regnen .') == 'am tag wird es regnen .'
  assert tm.fix_final_period('ohne punkt') == 'ohne punkt'
  assert tm.fix_final_period('.') == '.'
  assert tm.fix_final_period('') == ''
