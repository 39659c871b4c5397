"""HyperSign's vocabulary pruning (`utils/prune_embedding.ipynb`, `map_ids.pkl`): original mBART id -> new id.

Layout kept (design/HYPERSIGN.md §5.2): the special tokens first, in tokenizer order — `<s>` 0, `<pad>` 1,
`</s>` 2, `<unk>` 3 (identity), the 25 language codes -> 4..28 (de_DE -> 6, zh_CN -> 28), `<mask>` -> 29 —
then every SentencePiece id seen in the given texts (and glosses), in first-seen order. Pruning maps an id outside
the map to `<unk>` (3) and counts it; the inverse map (used before detokenizing) sends an unknown new id to 3.
The pruned model's embedding row j is the original row of the j-th kept id (`kept_ids`).
"""
from __future__ import annotations

import json
import os

from typing import Iterable, Mapping, Sequence

import numpy as np

from hypersign_jax.text import mapping_files
from hypersign_jax.text import tokenizer as tok


class PruneMap:
  """original id <-> pruned id (see the module docstring)."""

  def __init__(self, old_to_new: Mapping[int, int]):
    self.old_to_new = {int(k): int(v) for k, v in old_to_new.items()}
    new_ids = sorted(self.old_to_new.values())
    if new_ids != list(range(len(new_ids))):
      raise ValueError(f"a pruning map must map onto 0..{len(new_ids) - 1} one to one")
    for i in (tok.BOS, tok.PAD, tok.EOS, tok.UNK):
      if self.old_to_new.get(i) != i:
        raise ValueError(f"a pruning map must keep special id {i} (got {self.old_to_new.get(i)})")
    self.new_to_old = {v: k for k, v in self.old_to_new.items()}
    self.kept_ids = np.array([self.new_to_old[j] for j in range(len(new_ids))], np.int64)
    self.num_unknown = 0

  def __len__(self) -> int:
    return len(self.old_to_new)

  @property
  def vocab_size(self) -> int:
    return len(self.old_to_new)

  @classmethod
  def build(cls, tokenizer: tok.MBartTokenizer, texts: Iterable[str]) -> "PruneMap":
    """Specials in tokenizer order (4 fairseq tokens, language codes, `<mask>`), then pieces in first-seen order."""
    order = [tok.BOS, tok.PAD, tok.EOS, tok.UNK, *tokenizer.lang_code_to_id.values(), tokenizer.mask_id]
    mapping = {old: new for new, old in enumerate(order)}
    for text in texts:
      for i in tokenizer.encode_pieces(text):
        if i not in mapping:
          mapping[i] = len(mapping)
    return cls(mapping)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "PruneMap":
    """`map_ids.json` ({old: new}) or HyperSign's `map_ids.pkl` / `old2new_vocab.pkl` (pickles: trusted files)."""
    return cls(mapping_files.load_mapping(path, "a pruning map: map_ids.json, or HyperSign's map_ids.pkl",
                                          "old id -> new id"))

  def save_json(self, path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
      json.dump({str(k): v for k, v in self.old_to_new.items()}, f)

  def prune(self, ids: Sequence[int]) -> list[int]:
    out = []
    for i in ids:
      j = self.old_to_new.get(int(i))
      if j is None:
        self.num_unknown += 1
        j = tok.UNK
      out.append(j)
    return out

  def unprune(self, ids: Sequence[int]) -> list[int]:
    return [self.new_to_old.get(int(i), tok.UNK) for i in ids]

  def new_id(self, old_id: int) -> int:
    if int(old_id) not in self.old_to_new:
      raise KeyError(f"id {old_id} is not kept by the pruning map")
    return self.old_to_new[int(old_id)]
