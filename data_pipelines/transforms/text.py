"""Gloss ids through a vocabulary object, and the text/gloss strings passed through untouched.

SlowFastSign conventions: gloss ids start at 1, blank = 0 (so 0 also serves as label padding in batches).
The vocabulary is any object with ``encode(gloss_str) -> list[int]`` (the project's gloss vocabulary); its
errors (e.g. an unknown gloss) are re-raised naming the sample. Tokenisation of the spoken-language ``text``
happens in the task, not here.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class TextTransform:
  """Record -> {'labels': int32 (L,) (only with a vocabulary), 'gloss': str, 'text': str}."""

  def __init__(self, vocab: Any = None, need_labels: bool = False):
    if need_labels and vocab is None:
      raise ValueError("gloss labels were requested but no vocabulary was given")
    self.vocab = vocab

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
    del rng
    sample_id = record.get("id", "?")
    gloss = record.get("gloss", "") or ""
    out = {"gloss": gloss, "text": record.get("text", "") or ""}
    if self.vocab is not None:
      try:
        ids = list(self.vocab.encode(gloss))
      except Exception as e:
        raise ValueError(f"sample {sample_id!r}: cannot encode its glosses {gloss!r} ({type(e).__name__}: {e})") from e
      labels = np.asarray(ids, dtype=np.int32).reshape(-1)
      if labels.size and labels.min() <= 0:
        raise ValueError(f"sample {sample_id!r}: gloss ids must be >= 1 (0 is the CTC blank), got {ids}")
      out["labels"] = labels
    return out

