"""Training a SentencePiece model on the training texts when no pretrained mBART tokenizer is given.

Not part of HyperSign (which uses mbart-large-cc25's 250k-piece model, pruned): the from-scratch G2T/SLT configs
train their own small model. Training is deterministic (one thread, no input sampling or shuffling, the texts in
the given order) and cached: the model file name carries a hash of the texts and every option, so the same
corpus and settings reuse the file and anything else gets a new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Sequence

DEFAULTS = dict(vocab_size=2000, model_type="unigram", character_coverage=1.0, normalization_rule_name="nmt_nfkc")


def _key(texts: Sequence[str], options: dict) -> str:
  h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
  for t in texts:
    h.update(t.encode("utf-8"))
    h.update(b"\n")
  return h.hexdigest()[:16]


def train_spm(texts: Sequence[str], out_dir: str, *, vocab_size: int = DEFAULTS["vocab_size"],
              model_type: str = DEFAULTS["model_type"], character_coverage: float = DEFAULTS["character_coverage"],
              normalization_rule_name: str = DEFAULTS["normalization_rule_name"],
              hard_vocab_limit: bool = False) -> str:
  """Trains (or reuses) `out_dir/spm_<hash>.model` on `texts`; returns its path.

  `vocab_size` counts SentencePiece's own `<unk>`, `<s>`, `</s>`; with `hard_vocab_limit=False` a corpus too small
  for it gets a smaller vocabulary instead of an error.
  """
  import sentencepiece as spm  # local: only text tasks need it
  texts = [t.strip() for t in texts if t and t.strip()]
  if not texts:
    raise ValueError("cannot train a SentencePiece model: no non-empty training texts")
  options = dict(vocab_size=int(vocab_size), model_type=model_type, character_coverage=float(character_coverage),
                 normalization_rule_name=normalization_rule_name, hard_vocab_limit=bool(hard_vocab_limit))
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"spm_{_key(texts, options)}.model")
  if os.path.isfile(path):
    return path
  with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
      f.write("\n".join(texts) + "\n")
    prefix = os.path.join(tmp, "spm")
    spm.SentencePieceTrainer.Train(
        input=corpus, model_prefix=prefix, num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2, **options)
    os.replace(prefix + ".model", path)  # atomic: a concurrent reader sees the whole file or none
  return path
