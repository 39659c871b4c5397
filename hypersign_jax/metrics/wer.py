"""Word error rate with NIST sclite's alignment, as used to report CSLR results (SlowFastSign, VAC, CorrNet).

The SlowFastSign evaluator aligns each hypothesis to its reference with a Levenshtein DP using sclite's weights
(insertion 3, deletion 3, substitution 4, correct 0) and reports corpus WER = (S + D + I) / N. Those weights
admit optimal alignments with different error counts (3 substitutions cost 12, as do 1 match + 2 deletions +
2 insertions), so the tie-breaking decides the count. We break ties the way sclite's ``net_dp.c`` does (the
facts, not its code): in each cell the diagonal step (match or substitution) wins when it is no worse than both
others, otherwise a deletion wins only when strictly cheaper than the insertion; the traceback starts from the
last cell. ``tests/test_wer.py`` checks S/D/I/N against the real ``sclite`` on random corpora.

Kept from the original scorer (switchable):
* consecutive duplicate hypothesis words are merged before alignment (``merge_hyp_repeats``; the python
  evaluator's ``merge_same=True``), so scores equal the original's (see SLOWFASTSIGN.md §8.13);
* an empty or missing hypothesis is the one word ``[EMPTY]`` (``empty_token``), as ``mergectmstm.py`` writes it:
  for a non-empty reference that is one substitution plus deletions, i.e. every reference word is an error;
  ``empty_token=None`` scores it as deletions only;
* comparison is case sensitive (the python evaluator); sclite is case insensitive unless run with ``-s``, which
  ``case_sensitive=False`` reproduces.

Not kept: the original returns WER = 100 when anything in scoring fails; here every failure raises (unknown
hypothesis id, empty reference set, N = 0).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Mapping, Sequence

INS_COST = 3
DEL_COST = 3
SUB_COST = 4
EMPTY_TOKEN = '[EMPTY]'

# Alignment operations.
CORRECT, SUB, DEL, INS = 'C', 'S', 'D', 'I'


def align(ref: Sequence[str], hyp: Sequence[str], *, case_sensitive: bool = True
          ) -> list[tuple[str, str | None, str | None]]:
  """Aligns two word sequences with sclite's costs and tie-breaking.

  Returns:
    ``[(op, ref_word, hyp_word)]`` in sequence order, op in ``C/S/D/I``; the missing side is ``None``.
  """
  norm = (lambda w: w) if case_sensitive else str.lower
  r = [norm(w) for w in ref]
  h = [norm(w) for w in hyp]
  n, m = len(r), len(h)
  # cost[i][j]: best cost of aligning r[:i] with h[:j]; back[i][j]: the step taken into (i, j).
  cost = [[0] * (m + 1) for _ in range(n + 1)]
  back = [[''] * (m + 1) for _ in range(n + 1)]
  for j in range(1, m + 1):
    cost[0][j] = cost[0][j - 1] + INS_COST
    back[0][j] = INS
  for i in range(1, n + 1):
    cost[i][0] = cost[i - 1][0] + DEL_COST
    back[i][0] = DEL
    row, prev, brow, ri = cost[i], cost[i - 1], back[i], r[i - 1]
    for j in range(1, m + 1):
      same = ri == h[j - 1]
      diag = prev[j - 1] + (0 if same else SUB_COST)
      dele = prev[j] + DEL_COST
      ins = row[j - 1] + INS_COST
      if diag <= dele and diag <= ins:
        row[j], brow[j] = diag, (CORRECT if same else SUB)
      elif dele < ins:
        row[j], brow[j] = dele, DEL
      else:
        row[j], brow[j] = ins, INS
  ops = []
  i, j = n, m
  while i > 0 or j > 0:
    op = back[i][j]
    if op in (CORRECT, SUB):
      ops.append((op, ref[i - 1], hyp[j - 1]))
      i, j = i - 1, j - 1
    elif op == DEL:
      ops.append((op, ref[i - 1], None))
      i -= 1
    else:
      ops.append((op, None, hyp[j - 1]))
      j -= 1
  ops.reverse()
  return ops


@dataclasses.dataclass(frozen=True)
class Counts:
  """Alignment counts: correct, substitutions, deletions, insertions."""
  c: int = 0
  s: int = 0
  d: int = 0
  i: int = 0

  @property
  def n(self) -> int:
    """Number of reference words."""
    return self.c + self.s + self.d

  @property
  def errors(self) -> int:
    return self.s + self.d + self.i

  def __add__(self, other: 'Counts') -> 'Counts':
    return Counts(self.c + other.c, self.s + other.s, self.d + other.d, self.i + other.i)


@dataclasses.dataclass(frozen=True)
class UtteranceScore:
  """One utterance: the words scored (after merging/[EMPTY]) and their alignment."""
  utt_id: str
  ref: tuple[str, ...]
  hyp: tuple[str, ...]
  alignment: tuple[tuple[str, str | None, str | None], ...]
  counts: Counts

  def pra(self) -> str:
    """sclite ``pra``-style REF/HYP/Eval lines for this utterance."""
    cols = []
    for op, r, h in self.alignment:
      rw = r if r is not None else '*' * len(h)
      hw = h if h is not None else '*' * len(r)
      width = max(len(rw), len(hw))
      cols.append((rw.ljust(width), hw.ljust(width), ('' if op == CORRECT else op).ljust(width)))
    return (f'id: {self.utt_id}\n'
            f'Scores: (#C #S #D #I) {self.counts.c} {self.counts.s} {self.counts.d} {self.counts.i}\n'
            f'REF:  {" ".join(c[0] for c in cols)}\n'
            f'HYP:  {" ".join(c[1] for c in cols)}\n'
            f'Eval: {" ".join(c[2] for c in cols)}')


@dataclasses.dataclass(frozen=True)
class WerResult:
  """Corpus result: per-utterance scores (reference order) and totals; ``str()`` gives a sclite-like summary."""
  utterances: tuple[UtteranceScore, ...]
  totals: Counts
  convention: str = ''

  @property
  def wer(self) -> float:
    """Corpus WER in percent, (S + D + I) / N * 100."""
    return 100.0 * self.totals.errors / self.totals.n

  @property
  def num_sentence_errors(self) -> int:
    return sum(1 for u in self.utterances if u.counts.errors)

  def by_id(self) -> dict[str, UtteranceScore]:
    return {u.utt_id: u for u in self.utterances}

  def summary(self) -> str:
    t = self.totals
    pct = lambda k: 100.0 * k / t.n
    snt = len(self.utterances)
    lines = [
        f'| # Snt  # Wrd | Corr    Sub    Del    Ins    Err  S.Err |',
        f'| {snt:5d} {t.n:6d} | {pct(t.c):5.1f}  {pct(t.s):5.1f}  {pct(t.d):5.1f}  {pct(t.i):5.1f}  '
        f'{pct(t.errors):5.1f}  {100.0 * self.num_sentence_errors / snt:5.1f} |',
        f'WER {self.wer:.2f}% = (S {t.s} + D {t.d} + I {t.i}) / N {t.n}'
        + (f'  [{self.convention}]' if self.convention else ''),
    ]
    return '\n'.join(lines)

  def __str__(self) -> str:
    return self.summary()


def merge_repeats(words: Sequence[str]) -> list[str]:
  """Merges runs of identical consecutive words (``itertools.groupby``), as the original decoder and scorer do."""
  return [w for w, _ in itertools.groupby(words)]


def score_utterance(utt_id: str, ref: Sequence[str], hyp: Sequence[str] | None, *, merge_hyp_repeats: bool = True,
                    empty_token: str | None = EMPTY_TOKEN, case_sensitive: bool = True) -> UtteranceScore:
  """Scores one utterance; ``hyp=None`` (missing) is treated like an empty hypothesis."""
  h = [w for w in (hyp or ()) if w]
  if not h and empty_token is not None:
    h = [empty_token]
  if merge_hyp_repeats:
    h = merge_repeats(h)
  r = [w for w in ref if w]
  ali = align(r, h, case_sensitive=case_sensitive)
  k = {op: 0 for op in (CORRECT, SUB, DEL, INS)}
  for op, _, _ in ali:
    k[op] += 1
  return UtteranceScore(utt_id, tuple(r), tuple(h), tuple(ali), Counts(k[CORRECT], k[SUB], k[DEL], k[INS]))


def score_corpus(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]], *,
                 merge_hyp_repeats: bool = True, empty_token: str | None = EMPTY_TOKEN,
                 case_sensitive: bool = True, convention: str = '') -> WerResult:
  """Scores hypotheses (id -> word list) against references (id -> word list).

  Every reference is scored; a reference without hypothesis counts as an empty hypothesis.

  Raises:
    ValueError: no references, hypotheses for ids not in the references, or no reference words at all.
  """
  if not refs:
    raise ValueError('WER: the reference set is empty; nothing to score')
  unknown = [k for k in hyps if k not in refs]
  if unknown:
    raise ValueError(f'WER: {len(unknown)} hypothesis ids are not in the references, e.g. {sorted(unknown)[:5]}')
  for k, v in itertools.chain(refs.items(), hyps.items()):
    if isinstance(v, str):
      raise TypeError(f'WER: words of {k!r} must be a sequence of strings, not one string (use corpus_wer)')
  scores = tuple(
      score_utterance(k, refs[k], hyps.get(k), merge_hyp_repeats=merge_hyp_repeats, empty_token=empty_token,
                      case_sensitive=case_sensitive) for k in refs)
  totals = sum((u.counts for u in scores), Counts())
  if totals.n == 0:
    raise ValueError(f'WER: the {len(refs)} references contain no words; WER is undefined')
  return WerResult(scores, totals, convention)


def corpus_wer(refs: Mapping[str, str], hyps: Mapping[str, str],
               cleanup: str | Callable[[Sequence[str]], list[str]] | None = None, *,
               merge_hyp_repeats: bool = True, empty_token: str | None = EMPTY_TOKEN,
               case_sensitive: bool = True) -> WerResult:
  """Corpus WER from space-separated strings, optionally cleaning up hypotheses first.

  Args:
    refs: utterance id -> reference gloss string.
    hyps: utterance id -> hypothesis gloss string (missing ids count as empty).
    cleanup: a cleanup name from :mod:`hypersign_jax.metrics.gloss_cleanup` (e.g. ``'phoenix2014'``) or a
      callable on a gloss list, applied to hypotheses only (as the original does); None for no cleanup.
  """
  from hypersign_jax.metrics import gloss_cleanup  # local import: keeps this module usable on its own
  fn = gloss_cleanup.get_cleanup(cleanup) if (cleanup is None or isinstance(cleanup, str)) else cleanup
  ref_words = {k: v.split() for k, v in refs.items()}
  hyp_words = {k: fn(v.split()) for k, v in hyps.items()}
  name = cleanup if isinstance(cleanup, str) else ('none' if cleanup is None else getattr(cleanup, '__name__', '?'))
  convention = (f'sclite costs ins {INS_COST}/del {DEL_COST}/sub {SUB_COST}; cleanup={name}; '
                f'merge_hyp_repeats={merge_hyp_repeats}; empty={empty_token}; case_sensitive={case_sensitive}')
  return score_corpus(ref_words, hyp_words, merge_hyp_repeats=merge_hyp_repeats, empty_token=empty_token,
                      case_sensitive=case_sensitive, convention=convention)
