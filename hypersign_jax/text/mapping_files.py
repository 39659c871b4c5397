"""Reading the small {key: id} mapping files of the originals: our JSON files or their (trusted) pickles."""
from __future__ import annotations

import json
import os
import pickle
from typing import Mapping


def load_mapping(path: str | os.PathLike, missing_hint: str, what: str) -> Mapping:
  """A mapping from ``path`` (``.pkl``: a pickle you trust; otherwise JSON), with errors naming the file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path!r} not found ({missing_hint})")
  if path.endswith(".pkl"):
    with open(path, "rb") as f:
      data = pickle.load(f)
  else:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  if not isinstance(data, Mapping):
    raise ValueError(f"{path!r}: expected a mapping {what}, got {type(data).__name__}")
  return data
