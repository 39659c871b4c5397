"""STM reference and CTM hypothesis files in the layout NIST sclite reads.

SlowFastSign writes its hypotheses as CTM (one line per gloss, ``<id> 1 <start> <end> <gloss>``, with
start = position / 100 and end = (position + 1) / 100) and keeps references as STM
(``<id> 1 <signer> 0.0 1.79769e+308 <glosses>``). We keep both layouts so results can also be scored with the
real ``sclite`` (Debian package ``sctk``).

Facts about sclite (sctk 2.4.10) that shape these files:
* The fourth CTM column is a *duration* for sclite; the original writes an end time there. Without ``-T`` sclite
  only uses times to put words into the STM segment ``[0, 1.79769e+308]``, so either is accepted; we write the
  original's values so files stay comparable with the original's.
* sclite walks the STM and the CTM in step, so both must list utterances in the same order: both writers sort by
  utterance id by default (the original pipeline sorts both files as well).
* An utterance with no CTM line is scored as all deletions; ``[EMPTY]`` (what the original writes for an empty
  hypothesis) is an ordinary word to sclite: one substitution plus deletions, the same error count.
  :func:`read_ctm` maps ``[EMPTY]`` back to an empty gloss list.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

EMPTY_TOKEN = '[EMPTY]'
STM_END_TIME = '1.79769e+308'
_FRAME_SECONDS = 0.01  # the original's CTM times: gloss index i spans [i/100, (i+1)/100]


def _check_field(value: str, what: str, path: str | os.PathLike) -> None:
  if not value or any(ch.isspace() for ch in value):
    raise ValueError(f'{path}: {what} {value!r} must be a non-empty string without whitespace')


def write_stm(path: str | os.PathLike, entries: Iterable[tuple[str, str, str]], *, sort: bool = True) -> None:
  """Writes reference STM lines ``<id> 1 <signer> 0.0 1.79769e+308 <glosses>``.

  Args:
    path: output file.
    entries: ``(utterance_id, signer, gloss_string)``; the gloss string is space separated (extra whitespace is
      collapsed). Ids and signers must be free of whitespace.
    sort: order lines by utterance id. sclite walks the STM and the CTM in step and needs both in the same
      order; :func:`write_ctm` sorts the same way by default (the original pipeline sorts both files too).
  """
  entries = list(entries)
  ids = [e[0] for e in entries]
  if len(set(ids)) != len(ids):
    dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
    raise ValueError(f'{path}: duplicate utterance ids in STM entries: {dup}')
  if sort:
    entries.sort(key=lambda e: e[0])
  lines = []
  for utt_id, signer, glosses in entries:
    _check_field(utt_id, 'utterance id', path)
    _check_field(signer, f'signer of {utt_id!r}', path)
    words = ' '.join(glosses.split())
    lines.append(f'{utt_id} 1 {signer} 0.0 {STM_END_TIME} {words}'.rstrip() + '\n')
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(lines)


def _lines(path: str | os.PathLike, kind: str, layout: str):
  """(line number, fields) of an STM/CTM file, skipping blank lines and ``;;`` comments; short lines raise."""
  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip() or line.startswith(';;'):
        continue
      fields = line.split()
      if len(fields) < 5:
        raise ValueError(f'{path}:{lineno}: a {kind} line needs at least 5 fields ({layout}), got {line.rstrip()!r}')
      yield lineno, fields


def read_stm(path: str | os.PathLike) -> list[tuple[str, str, str]]:
  """Reads an STM file into ``(utterance_id, signer, gloss_string)`` in file order.

  Lines starting with ``;;`` (sclite comments) and blank lines are skipped. Words after the 6th field are joined
  with single spaces; empty tokens are dropped (as the original python evaluator does).
  """
  return [(fields[0], fields[2], ' '.join(fields[5:]))
          for _, fields in _lines(path, 'STM', '<id> <channel> <signer> <start> <end> [glosses]')]


def write_ctm(path: str | os.PathLike, hyps: Iterable[tuple[str, Sequence[str]]], *, sort: bool = True,
              empty_token: str | None = EMPTY_TOKEN) -> None:
  """Writes hypothesis CTM lines ``<id> 1 <start> <end> <gloss>`` (original SlowFastSign times).

  Args:
    path: output file.
    hyps: ``(utterance_id, [glosses])``.
    sort: order utterances by id (stable, so glosses keep their order), matching :func:`write_stm`.
    empty_token: an empty gloss list is written as this one word (``[EMPTY]``, as the original pipeline does;
      sclite then scores it as one substitution plus deletions). ``None`` writes no line, and sclite scores the
      utterance as all deletions.
  """
  hyps = list(hyps)
  if sort:
    hyps.sort(key=lambda h: h[0])
  lines = []
  for utt_id, glosses in hyps:
    _check_field(utt_id, 'utterance id', path)
    if isinstance(glosses, str):
      raise TypeError(f'{path}: hypothesis for {utt_id!r} must be a list of glosses, not a string')
    words = [g for g in glosses if g]
    for g in words:
      _check_field(g, f'gloss of {utt_id!r}', path)
    if not words and empty_token is not None:
      words = [empty_token]
    for i, g in enumerate(words):
      lines.append(f'{utt_id} 1 {i * _FRAME_SECONDS:.2f} {(i + 1) * _FRAME_SECONDS:.2f} {g}\n')
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(lines)


def read_ctm(path: str | os.PathLike) -> dict[str, list[str]]:
  """Reads a CTM file into ``{utterance_id: [glosses]}`` (order of first appearance; ``[EMPTY]`` -> ``[]``).

  Lines of one utterance are ordered by their start time (stable), as sclite does.
  """
  rows: dict[str, list[tuple[float, int, str]]] = {}
  for lineno, fields in _lines(path, 'CTM', '<id> <channel> <start> <dur> <gloss>'):
    try:
      start = float(fields[2])
    except ValueError as e:
      raise ValueError(f'{path}:{lineno}: start time {fields[2]!r} is not a number') from e
    rows.setdefault(fields[0], []).append((start, lineno, fields[4]))
  return {utt: [g for _, _, g in sorted(r) if g != EMPTY_TOKEN] for utt, r in rows.items()}
