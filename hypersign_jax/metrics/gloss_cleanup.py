"""Hypothesis gloss cleanups applied before WER on RWTH-PHOENIX-Weather 2014 / 2014-T, selected by name.

What the originals do (facts, not code):
* The PHOENIX-2014 evaluation kit's ``preprocess.sh`` (used unchanged by VAC, CorrNet and SlowFastSign for every
  dataset) runs a chain of ``sed``/``perl`` substitutions over the hypothesis **CTM file**, i.e. one gloss per line
  (``<id> 1 <start> <end> <gloss>``): strip ``loc-``, ``cl-``, ``qu-``, ``poss-``, ``lh-`` and ``-PLUSPLUS``;
  ``S0NNE -> SONNE``, ``HABEN2 -> HABEN``; delete ``__EMOTION__``, ``__PU__``, ``__LEFTHAND__``;
  ``WIE AUSSEHEN -> WIE-AUSSEHEN``; ``ZEIGEN -> ZEIGEN-BILDSCHIRM``; join runs of single capital letters with ``+``
  (fingerspelling); strip ``RAUM`` after two capitals; collapse identical adjacent words (a perl rule, 4 times);
  drop lines containing ``__LEFTHAND__``, ``__EPENTHESIS__`` or ``__EMOTION__``; an utterance left without glosses
  gets ``[EMPTY]``.
* Because each CTM line carries a single gloss, every rule that needs a space between two glosses (``WIE
  AUSSEHEN``, ``ZEIGEN<space>``, letter joining, the perl collapse) can never match in that pipeline; only the
  one-gloss rules act (``ZEIGEN$`` acts on every gloss ending in ``ZEIGEN``). The repeats are still merged, by the
  scorer's ``merge_same``. ``'phoenix2014'`` reproduces exactly that (rules applied per gloss, which is equivalent
  to applying them per CTM line), so WERs are comparable with the published SlowFastSign numbers.
* ``'phoenix2014_sentence'`` applies the same rule chain to the whole hypothesis string, so the multi-gloss rules
  act as their text says (this is how Camgoz et al.'s SLT code applies its port of the kit rules).
* ``'phoenix2014T'``: the milder PHOENIX-2014-T cleanup of the SLT code family (Camgoz et al., used by SLRT and
  HyperSign for gloss recognition): delete ``__LEFTHAND__``, ``__EPENTHESIS__``, ``__EMOTION__`` and any
  ``__X__`` token; strip ``loc-``/``cl-`` prefixes, ``-PLUSPLUS``, a ``RAUM`` suffix after capitals;
  ``WIE AUSSEHEN -> WIE-AUSSEHEN``; letter joining; collapse repeats (perl rule 4 times, then ``groupby``).
  SlowFastSign itself uses ``'phoenix2014'`` on PHOENIX-2014-T as well (SLOWFASTSIGN.md §8.14).
* ``'none'`` (CSL-Daily, or ``None``): identity.

Every cleanup maps a gloss list to a gloss list; an emptied hypothesis is returned as ``[]`` and becomes
``[EMPTY]`` in the scorer / CTM writer (``empty_token``), as in the original pipeline. Character classes follow the
C locale (``[A-Z]`` is ASCII; perl's ``\\w``/``\\b`` on bytes are ASCII), so non-Latin glosses are untouched.
"""

from __future__ import annotations

import itertools
import re
from typing import Callable, Sequence

Cleanup = Callable[[Sequence[str]], list[str]]

# The perl rule of the kit: a run of capitals followed by the same run, neither touching a word char or '-'.
_COLLAPSE_PAIR = (r'(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])', r'\1')

# Fingerspelling: join single capital letters (and SCH / NN) with '+', in the kit's order.
_LETTER_JOIN = [
    (r'^([A-Z]) ([A-Z][+ ])', r'\1+\2'),
    (r'[ +]([A-Z]) ([A-Z]) ', r' \1+\2 '),
    (r'([ +][A-Z]) ([A-Z][ +])', r'\1+\2'),
    (r'([ +][A-Z]) ([A-Z][ +])', r'\1+\2'),
    (r'([ +][A-Z]) ([A-Z][ +])', r'\1+\2'),
    (r'([ +]SCH) ([A-Z][ +])', r'\1+\2'),
    (r'([ +]NN) ([A-Z][ +])', r'\1+\2'),
    (r'([ +][A-Z]) (NN[ +])', r'\1+\2'),
    (r'([ +][A-Z]) ([A-Z])$', r'\1+\2'),
]

# preprocess.sh, in pipeline order: (pattern, replacement, max substitutions; 0 = all, as sed's g flag).
_KIT_RULES = [(p, r, 0) for p, r in [
    ('loc-', ''), ('cl-', ''), ('qu-', ''), ('poss-', ''), ('lh-', ''),
    ('S0NNE', 'SONNE'), ('HABEN2', 'HABEN'),
    ('__EMOTION__', ''), ('__PU__', ''), ('__LEFTHAND__', ''),
    ('WIE AUSSEHEN', 'WIE-AUSSEHEN'), ('ZEIGEN ', 'ZEIGEN-BILDSCHIRM '),
]] + [('ZEIGEN$', 'ZEIGEN-BILDSCHIRM', 1)] + [(p, r, 0) for p, r in _LETTER_JOIN + [
    (r'([A-Z][A-Z])RAUM', r'\1'),
    ('-PLUSPLUS', ''),
] + [_COLLAPSE_PAIR] * 4]
# Lines (glosses) containing these are removed by the kit's `grep -v`.
_KIT_DROP_MARKERS = ('__LEFTHAND__', '__EPENTHESIS__', '__EMOTION__')

_T_RULES = [(p, r, 0) for p, r in [
    ('__LEFTHAND__', ''), ('__EPENTHESIS__', ''), ('__EMOTION__', ''),
    (r'\b__[^_ ]*__\b', ''),
    (r'\bloc-([^ ]*)\b', r'\1'),
    (r'\bcl-([^ ]*)\b', r'\1'),
    (r'\b([^ ]*)-PLUSPLUS\b', r'\1'),
    (r'\b([A-Z][A-Z]*)RAUM\b', r'\1'),
    ('WIE AUSSEHEN', 'WIE-AUSSEHEN'),
] + _LETTER_JOIN + [(' +', ' ')] + [_COLLAPSE_PAIR] * 4 + [(' +', ' ')]]


def _compile(rules):
  return [(re.compile(p, re.ASCII), r, n) for p, r, n in rules]


_KIT = _compile(_KIT_RULES)
_T = _compile(_T_RULES)


def _apply(rules, text: str) -> str:
  for pattern, repl, count in rules:
    text = pattern.sub(repl, text, count=count)
  return text


def _check_glosses(glosses: Sequence[str]) -> None:
  if isinstance(glosses, str):
    raise TypeError(f'cleanup expects a list of glosses, got the string {glosses[:50]!r}; split it first')


def clean_none(glosses: Sequence[str]) -> list[str]:
  """No cleanup (CSL-Daily): drops empty strings only."""
  _check_glosses(glosses)
  return [g for g in glosses if g]


def clean_phoenix2014(glosses: Sequence[str]) -> list[str]:
  """The evaluation kit's ``preprocess.sh`` as SlowFastSign runs it: on CTM lines, i.e. one gloss at a time."""
  _check_glosses(glosses)
  out = []
  for g in glosses:
    g = _apply(_KIT, g).strip()
    if g and not any(m in g for m in _KIT_DROP_MARKERS):
      out.extend(g.split())
  return out


def clean_phoenix2014_sentence(glosses: Sequence[str]) -> list[str]:
  """The kit's rule chain applied to the whole hypothesis string (multi-gloss rules active)."""
  _check_glosses(glosses)
  text = _apply(_KIT, ' '.join(g for g in glosses if g).strip())
  return [g for g in text.split() if not any(m in g for m in _KIT_DROP_MARKERS)]


def clean_phoenix2014t(glosses: Sequence[str]) -> list[str]:
  """The milder PHOENIX-2014-T cleanup, on the whole string, ending with a merge of consecutive repeats."""
  _check_glosses(glosses)
  text = _apply(_T, ' '.join(g for g in glosses if g).strip())
  return [g for g, _ in itertools.groupby(text.split())]


_REGISTRY: dict[str, Cleanup] = {
    'none': clean_none,
    'csl-daily': clean_none,
    'phoenix2014': clean_phoenix2014,
    'phoenix2014_sentence': clean_phoenix2014_sentence,
    'phoenix2014t': clean_phoenix2014t,
    'phoenix2014-t': clean_phoenix2014t,
}


def available_cleanups() -> list[str]:
  return sorted(_REGISTRY)


def get_cleanup(name: str | None) -> Cleanup:
  """Returns the cleanup registered under ``name`` (case-insensitive); ``None`` means no cleanup."""
  if name is None:
    return clean_none
  try:
    return _REGISTRY[name.lower()]
  except KeyError:
    raise ValueError(f'unknown gloss cleanup {name!r}; expected one of {available_cleanups()}') from None
