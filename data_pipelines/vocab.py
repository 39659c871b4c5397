"""Gloss vocabulary with SlowFastSign's conventions.

SlowFastSign (and VAC/CorrNet before it) builds ``gloss_dict.npy`` in its preprocessing: every gloss of train, dev
and test is counted, the glosses are numbered 1..V in Python-sorted string order (so upper case sorts before lower
case, e.g. ``poss-SEIN`` is last in PHOENIX-2014-T), and index 0 is the CTC blank, so ``num_classes = V + 1``.
Gloss strings are split on whitespace and empty tokens (double spaces in the annotations) are skipped, as the
original loader does.

This class keeps exactly that numbering, reads the original ``gloss_dict.npy`` (so imported checkpoints keep their
classifier rows), and stores itself as ``gloss_vocab.json`` (``{gloss: [index, count]}``, the same mapping).
"""
from __future__ import annotations

import collections
import json
import os
from typing import Iterable, Mapping, Sequence

BLANK_INDEX = 0
BLANK_TOKEN = "<blank>"


class UnknownGlossError(ValueError):
  """Raised when a gloss string contains glosses that are not in the vocabulary."""

  def __init__(self, unknown: Sequence[str], sample_id: str | None = None, vocab_size: int | None = None):
    self.unknown = list(unknown)
    self.sample_id = sample_id
    where = f" in sample {sample_id!r}" if sample_id is not None else ""
    size = f" of {vocab_size} glosses" if vocab_size is not None else ""
    super().__init__(f"{len(self.unknown)} gloss(es){where} not in the vocabulary{size}: "
                     f"{' '.join(self.unknown)}")


def split_glosses(gloss_string: str) -> list[str]:
  """Space-separated gloss string -> list of glosses, empty tokens skipped."""
  return gloss_string.split()


class GlossVocab:
  """Gloss <-> index map; blank = 0, glosses 1..V.

  Attributes:
    glosses: the V glosses in index order (``glosses[i - 1]`` has index ``i``).
    counts: gloss -> occurrence count (over all splits it was built from; 0 where unknown).
  """

  def __init__(self, glosses: Sequence[str], counts: Mapping[str, int] | None = None):
    glosses = list(glosses)
    if len(set(glosses)) != len(glosses):
      dupes = sorted(g for g, c in collections.Counter(glosses).items() if c > 1)
      raise ValueError(f"duplicate glosses in a vocabulary: {dupes}")
    bad = [g for g in glosses if not g or any(ch.isspace() for ch in g)]
    if bad:
      raise ValueError(f"glosses must be non-empty and free of whitespace, got {bad!r}")
    self.glosses = glosses
    self._index = {g: i + 1 for i, g in enumerate(glosses)}
    counts = counts or {}
    self.counts = {g: int(counts.get(g, 0)) for g in glosses}

  # --- construction -------------------------------------------------------------------------------------------

  @classmethod
  def from_gloss_strings(cls, gloss_strings: Iterable[str]) -> "GlossVocab":
    """Counts every gloss of the given strings; numbers them in Python-sorted string order."""
    counts: collections.Counter[str] = collections.Counter()
    for s in gloss_strings:
      counts.update(split_glosses(s))
    return cls(sorted(counts), counts)

  @classmethod
  def from_records(cls, records: Iterable[dict]) -> "GlossVocab":
    """Vocabulary over the ``gloss`` fields of ``records`` (pass all splits, as SlowFastSign does)."""
    return cls.from_gloss_strings(r.get("gloss", "") for r in records)

  @classmethod
  def from_index_map(cls, mapping: Mapping[str, Sequence[int] | int], source: str = "mapping") -> "GlossVocab":
    """``{gloss: [index, count]}`` (or ``{gloss: index}``) -> vocabulary; indices must be exactly 1..V."""
    items = []
    counts = {}
    for gloss, value in mapping.items():
      if isinstance(value, (list, tuple)):
        if not value:
          raise ValueError(f"{source}: entry for gloss {gloss!r} is empty; expected [index, count]")
        index = value[0]
        counts[gloss] = int(value[1]) if len(value) > 1 else 0
      else:
        index = value
      try:
        index = int(index)
      except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: index of gloss {gloss!r} is {index!r}, not an integer") from e
      items.append((index, str(gloss)))
    indices = sorted(i for i, _ in items)
    if indices != list(range(1, len(items) + 1)):
      missing = sorted(set(range(1, len(items) + 1)) - set(indices))[:10]
      extra = sorted(set(indices) - set(range(1, len(items) + 1)))[:10]
      raise ValueError(f"{source}: gloss indices must be exactly 1..{len(items)} (0 is the CTC blank); "
                       f"missing {missing}, unexpected {extra}")
    items.sort()
    return cls([g for _, g in items], counts)

  @classmethod
  def load_json(cls, path: str | os.PathLike) -> "GlossVocab":
    """Reads ``gloss_vocab.json`` (``{gloss: [index, count]}``)."""
    if not os.path.isfile(path):
      raise FileNotFoundError(f"gloss vocabulary {os.fspath(path)!r} not found (expected a JSON file "
                              f"{{gloss: [index, count]}} as written by `python -m data_pipelines.build`)")
    with open(path, encoding="utf-8") as f:
      try:
        data = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
      raise ValueError(f"{os.fspath(path)!r}: expected a JSON object {{gloss: [index, count]}}")
    return cls.from_index_map(data, source=os.fspath(path))

  @classmethod
  def from_gloss_dict_npy(cls, path: str | os.PathLike) -> "GlossVocab":
    """Reads SlowFastSign's ``gloss_dict.npy`` ({gloss: [index, count]} saved with np.save).

    The file is a pickled object array (``allow_pickle``), so only pass a path you trust.
    """
    import numpy as np  # local: the JSON path needs no NumPy
    if not os.path.isfile(path):
      raise FileNotFoundError(f"gloss dictionary {os.fspath(path)!r} not found (expected SlowFastSign's "
                              f"preprocess/<dataset>/gloss_dict.npy)")
    try:
      data = np.load(path, allow_pickle=True).item()
    except Exception as e:  # np.load raises many types for a bad file
      raise ValueError(f"{os.fspath(path)!r} is not a gloss_dict.npy ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
      raise ValueError(f"{os.fspath(path)!r}: expected a dict {{gloss: [index, count]}}, got {type(data).__name__}")
    return cls.from_index_map(data, source=os.fspath(path))

  @classmethod
  def load(cls, path: str | os.PathLike) -> "GlossVocab":
    """``.npy`` -> :meth:`from_gloss_dict_npy`, anything else -> :meth:`load_json`."""
    if os.fspath(path).endswith(".npy"):
      return cls.from_gloss_dict_npy(path)
    return cls.load_json(path)

  def save_json(self, path: str | os.PathLike) -> None:
    """Writes ``{gloss: [index, count]}`` in index order (UTF-8, one entry per line)."""
    with open(path, "w", encoding="utf-8") as f:
      f.write("{\n")
      f.write(",\n".join(f"  {json.dumps(g, ensure_ascii=False)}: [{i + 1}, {self.counts[g]}]"
                         for i, g in enumerate(self.glosses)))
      f.write("\n}\n")

  # --- use ------------------------------------------------------------------------------------------------------

  @property
  def num_glosses(self) -> int:
    """V, the number of glosses (blank excluded)."""
    return len(self.glosses)

  @property
  def num_classes(self) -> int:
    """V + 1: the CTC classifier width (blank = 0)."""
    return len(self.glosses) + 1

  def __len__(self) -> int:
    return len(self.glosses)

  def __contains__(self, gloss: str) -> bool:
    return gloss in self._index

  def index(self, gloss: str) -> int:
    return self._index[gloss]

  def unknown(self, gloss_string: str) -> list[str]:
    """The glosses of ``gloss_string`` not in the vocabulary, each once, in order of appearance."""
    return list(dict.fromkeys(g for g in split_glosses(gloss_string) if g not in self._index))

  def encode(self, gloss_string: str, sample_id: str | None = None) -> list[int]:
    """Gloss string -> indices (1..V). Raises UnknownGlossError listing every unknown gloss."""
    tokens = split_glosses(gloss_string)
    try:
      return [self._index[g] for g in tokens]
    except KeyError:
      raise UnknownGlossError(self.unknown(gloss_string), sample_id, len(self)) from None

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Indices -> glosses. Blanks (0) are dropped; an index outside 0..V raises ValueError."""
    out = []
    for i in ids:
      i = int(i)
      if i == BLANK_INDEX:
        continue
      if not 0 < i <= len(self.glosses):
        raise ValueError(f"gloss index {i} is outside the vocabulary (0 = blank, 1..{len(self.glosses)})")
      out.append(self.glosses[i - 1])
    return out

  def check_records(self, records: Iterable[dict], max_ids: int = 10) -> None:
    """Raises UnknownGlossError listing all glosses of ``records`` missing from the vocabulary (and some ids)."""
    unknown: dict[str, None] = {}
    ids: list[str] = []
    for r in records:
      missing = self.unknown(r.get("gloss", ""))
      if missing:
        unknown.update(dict.fromkeys(missing))
        ids.append(r["id"])
    if unknown:
      shown = ", ".join(repr(i) for i in ids[:max_ids]) + (f" and {len(ids) - max_ids} more" if len(ids) > max_ids
                                                            else "")
      err = UnknownGlossError(list(unknown), None, len(self))
      err.args = (f"{err.args[0]} (in {len(ids)} sample(s): {shown})",)
      raise err

  def __eq__(self, other: object) -> bool:
    return isinstance(other, GlossVocab) and self.glosses == other.glosses and self.counts == other.counts

  def __repr__(self) -> str:
    return f"GlossVocab(V={len(self)}, num_classes={self.num_classes})"
