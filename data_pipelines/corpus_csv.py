"""Writing records as a PHOENIX-2014-T-style corpus CSV.

The official PHOENIX-2014-T annotation layout is one ``|``-separated line per sentence with the header
``name|video|start|end|speaker|orth|translation``: ``video`` is ``<name>/*.png`` (relative to the split's frame
folder), ``start``/``end`` are -1, ``orth`` the glosses and ``translation`` the spoken-language sentence. Writing a
corpus (e.g. the synthetic one) in this layout lets every tool that reads PHOENIX-2014-T annotations, including
``data_pipelines.readers.phoenix2014t``, read it too.
"""
from __future__ import annotations

import os
from typing import Iterable

HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")


def _field(value: object, what: str, sample_id: str) -> str:
  text = str(value)
  if "|" in text or "\n" in text or "\r" in text:
    raise ValueError(f"sample {sample_id!r}: {what} {text!r} contains '|' or a line break, which the "
                     f"PHOENIX-2014-T corpus layout cannot hold")
  return text


def corpus_line(record: dict) -> str:
  """One record -> ``name|video|-1|-1|speaker|orth|translation`` (no newline)."""
  sample_id = record["id"]
  name = _field(sample_id, "id", sample_id)
  return "|".join([
      name,
      f"{name}/*.png",
      "-1",
      "-1",
      _field(record.get("signer") or "unknown", "signer", sample_id),
      _field(" ".join(str(record.get("gloss", "")).split()), "gloss", sample_id),
      _field(str(record.get("text", "")).strip(), "text", sample_id),
  ])


def write_corpus_csv(path: str | os.PathLike, records: Iterable[dict]) -> int:
  """Writes ``records`` as a PHOENIX-2014-T corpus CSV (header line first); returns the number of rows."""
  lines = ["|".join(HEADER)]
  lines.extend(corpus_line(r) for r in records)
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return len(lines) - 1
