"""Translation metrics with the SLRT/HyperSign conventions: BLEU-1..4 and ROUGE-L (see docs EVALUATION.md).

BLEU: sacrebleu corpus BLEU on already tokenized text (`tokenize='none'`, i.e. whitespace split), no
lowercasing, no smoothing, effective order; BLEU-n is the *cumulative* score with `max_ngram_order=n`
(BP * exp(mean of log p_1..p_n)), x100, as SLRT's vendored `raw_corpus_bleu` returns. The sacrebleu signature is
returned with the scores and should be printed next to them.

ROUGE-L (default `tf_seq2seq`, SLRT's `utils/external_metrics/Rouge.py`): per sentence, tokens are the
whitespace-normalised string split on ' ', R = LCS/|ref|, P = LCS/|hyp|, beta = P/R, F = (1+beta^2)RP/(R+beta^2 P)
with the original's 1e-12 guards; averaged over sentences, x100. An empty hypothesis is one empty token (the
original splits '' into ['']), so it scores 0 against a non-empty reference. `mscoco` (beta = 1.2, the
SignJoey/SLTUNet variant) is selectable by name.

Level `char` (CSL-Daily): each string becomes its characters joined by single spaces before scoring, as SLRT does
(`' '.join(list(s))`; a space character inside a string therefore yields empty ROUGE tokens, as in the original,
while BLEU's whitespace split drops it).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import sacrebleu

LEVELS = ('word', 'char')
ROUGE_VARIANTS = ('tf_seq2seq', 'mscoco')
MSCOCO_BETA = 1.2
_EPS = 1e-12  # tf_seq2seq guards


@dataclasses.dataclass(frozen=True)
class BleuResult:
  """Cumulative BLEU-1..4 (x100) and the sacrebleu signature they were computed with."""
  scores: dict[str, float]  # {'bleu1': ..., 'bleu4': ...}
  signature: str

  def __str__(self) -> str:
    body = ' '.join(f'{k.upper()} {v:.2f}' for k, v in self.scores.items())
    return f'{body} ({self.signature})'


def char_split(text: str) -> str:
  """'今天天气' -> '今 天 天 气' (SLRT's character level: every character, joined by single spaces)."""
  return ' '.join(list(text))


def fix_final_period(text: str) -> str:
  """PHOENIX-2014-T: a decoded sentence ending in '.' glued to a word gets ' .' (the references are tokenized).

  'das wetter.' -> 'das wetter .'; strings already ending in ' .' (or equal to '.') are unchanged.
  """
  if len(text) >= 2 and text.endswith('.') and text[-2] != ' ':
    return text[:-1] + ' .'
  return text


def _check(hypotheses: Sequence[str], references: Sequence[str], level: str) -> None:
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} references; they must pair one to one')
  if level not in LEVELS:
    raise ValueError(f'unknown level {level!r}; expected one of {LEVELS}')


def bleu(*, hypotheses: Sequence[str], references: Sequence[str], level: str = 'word') -> BleuResult:
  """Corpus BLEU-1..4 with SLRT's settings (one reference per hypothesis)."""
  _check(hypotheses, references, level)
  if level == 'char':
    hypotheses = [char_split(h) for h in hypotheses]
    references = [char_split(r) for r in references]
  scores, signature = {}, ''
  for n in range(1, 5):
    metric = sacrebleu.BLEU(tokenize='none', lowercase=False, smooth_method='none', effective_order=True,
                            max_ngram_order=n)
    scores[f'bleu{n}'] = float(metric.corpus_score(list(hypotheses), [list(references)]).score)
    if n == 4:
      signature = f'{metric.get_signature()}|bleu-n:cumulative|level:{level}'
  return BleuResult(scores, signature)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence (O(|a||b|) dynamic programme, one row at a time)."""
  if len(a) < len(b):
    a, b = b, a
  row = [0] * (len(b) + 1)
  for x in a:
    prev_diag = 0
    for j, y in enumerate(b, start=1):
      prev_row_j = row[j]
      row[j] = prev_diag + 1 if x == y else max(row[j], row[j - 1])
      prev_diag = prev_row_j
  return row[-1]


def _tokens(text: str) -> list[str]:
  return text.split(' ')


def rouge_l_sentence(hypothesis: str, reference: str, variant: str = 'tf_seq2seq') -> tuple[float, float, float]:
  """(F, P, R) of one pre-processed sentence pair; tokens are the string split on ' '."""
  hyp, ref = _tokens(hypothesis), _tokens(reference)
  lcs = lcs_length(hyp, ref)
  r, p = lcs / len(ref), lcs / len(hyp)
  if variant == 'tf_seq2seq':
    beta = p / (r + _EPS)
    f = (1 + beta**2) * r * p / (r + beta**2 * p + _EPS)
  elif variant == 'mscoco':
    beta = MSCOCO_BETA
    f = (1 + beta**2) * r * p / (r + beta**2 * p) if p > 0 and r > 0 else 0.0
  else:
    raise ValueError(f'unknown ROUGE-L variant {variant!r}; expected one of {ROUGE_VARIANTS}')
  return f, p, r


def rouge_l(*, hypotheses: Sequence[str], references: Sequence[str], level: str = 'word',
            variant: str = 'tf_seq2seq') -> float:
  """Sentence-level ROUGE-L F averaged over sentences, x100."""
  _check(hypotheses, references, level)
  prep = char_split if level == 'char' else (lambda s: ' '.join(s.split()))
  scores = [rouge_l_sentence(prep(h), prep(r), variant)[0] for h, r in zip(hypotheses, references)]
  return float(np.mean(scores)) * 100 if scores else 0.0


def translation_scores(*, hypotheses: Sequence[str], references: Sequence[str], level: str = 'word',
                       rouge_variant: str = 'tf_seq2seq') -> dict[str, float | str]:
  """{'bleu1'..'bleu4', 'rouge_l', 'signature'}: what the SLT evaluation reports."""
  result = bleu(hypotheses=hypotheses, references=references, level=level)
  scores: dict[str, float | str] = dict(result.scores)
  scores['rouge_l'] = rouge_l(hypotheses=hypotheses, references=references, level=level, variant=rouge_variant)
  scores['signature'] = f'{result.signature}|rouge-l:{rouge_variant}'
  return scores
