"""mBART text tokenizer on SentencePiece, HyperSign's target encoding, and the G2T gloss vocabulary.

HyperSign (design/HYPERSIGN.md §5.3) tokenizes German/Chinese text with transformers 4.x's slow
`MBartTokenizer`: raw SentencePiece pieces with the fairseq id layout. This module reimplements that layout on
`sentencepiece` directly (transformers 5 rebuilds it as a `tokenizers` Unigram; the tests check both give the same
ids):

* `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3; SentencePiece piece i (i >= 3; spm's own `<unk>/<s>/</s>` are 0..2)
  -> id i + 1 (the fairseq offset); a piece spm maps to its unknown id -> 3;
* the 25 mbart-large-cc25 language codes after the spm vocabulary (`len(spm) + 1 + k`), then `<mask>`;
* source and target mode both end a sequence with [`</s>`, language code] and have no prefix;
* decoding drops every special id (the four above, language codes, `<mask>`) and joins pieces with '▁' -> ' '
  (the slow tokenizer's `convert_tokens_to_string`), stripped.

`encode_targets` builds HyperSign's teacher-forcing tensors from (pruned) target ids: `input_ids` =
[y1..yn, `</s>`, lang, pad...]; `labels` = the same with the language id replaced by pad; `decoder_input_ids` =
HyperSign's own `shift_tokens_right`, which moves every token one step right and puts the *last non-pad* token
(the language id) at position 0 — so a sequence shorter than the padded length keeps a trailing language id after
its `</s>` (ignored by the loss, and by causal attention at every valid position).

`GlossTokenizer` is the G2T source side of SLRT/MMTLB (`GlossTokenizer_G2T` with `gloss2ids.pkl`): its own id
space `<s>` 0 `<pad>` 1 `</s>` 2 `<unk>` 3 `<mask>` 4 `zh_CN` 5 `de_DE` 6 `zh_CSL` 7 `de_DGS` 8, then lower-cased
glosses; a gloss sentence becomes [g1..gn, `</s>`, src_lang] (src_lang `de_DGS` for PHOENIX, `zh_CSL` for CSL),
embedded by a separate gloss embedding table, never by the text SentencePiece model. A gloss absent from the
vocabulary becomes `<unk>` (the original raises a KeyError) and is counted.
"""
from __future__ import annotations

import json
import os

from typing import Iterable, Mapping, Sequence

import numpy as np

from hypersign_jax.text import mapping_files

BOS, PAD, EOS, UNK = 0, 1, 2, 3
FAIRSEQ_OFFSET = 1
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
# mbart-large-cc25 language codes, in the order of their ids (the same list as fairseq/HF).
LANGUAGE_CODES = ("ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN",
                  "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO",
                  "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN")
MASK_TOKEN = "<mask>"
SPM_FILE = "sentencepiece.bpe.model"  # the file name HF's MBartTokenizer looks for in a model directory


class MBartTokenizer:
  """SentencePiece model + mBART's fairseq id layout (see the module docstring)."""

  def __init__(self, spm_model: str | bytes | os.PathLike, language_codes: Sequence[str] = LANGUAGE_CODES):
    import sentencepiece as spm  # local: only text tasks need it
    self.sp = spm.SentencePieceProcessor()
    if isinstance(spm_model, bytes):
      self.sp.LoadFromSerializedProto(spm_model)
      self.source = "<serialized model>"
    else:
      path = os.fspath(spm_model)
      if os.path.isdir(path):
        path = os.path.join(path, SPM_FILE)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model {path!r} not found (expected a file, or a directory with "
                                f"{SPM_FILE} as HF mBART tokenizer directories have)")
      self.sp.Load(path)
      self.source = path
    self.spm_size = self.sp.GetPieceSize()
    self.language_codes = tuple(language_codes)
    self.lang_code_to_id = {code: self.spm_size + FAIRSEQ_OFFSET + i for i, code in enumerate(self.language_codes)}
    self.mask_id = self.spm_size + FAIRSEQ_OFFSET + len(self.language_codes)
    self.vocab_size = self.mask_id + 1
    self.special_ids = frozenset((BOS, PAD, EOS, UNK, self.mask_id, *self.lang_code_to_id.values()))
    self._id_to_special = {i: t for i, t in enumerate(SPECIAL_TOKENS)}
    self._id_to_special.update({v: k for k, v in self.lang_code_to_id.items()})
    self._id_to_special[self.mask_id] = MASK_TOKEN

  # ---- ids <-> pieces ----------------------------------------------------------------------------------------
  def piece_to_id(self, piece: str) -> int:
    if piece in SPECIAL_TOKENS:
      return SPECIAL_TOKENS.index(piece)
    if piece in self.lang_code_to_id:
      return self.lang_code_to_id[piece]
    if piece == MASK_TOKEN:
      return self.mask_id
    spm_id = self.sp.PieceToId(piece)
    return spm_id + FAIRSEQ_OFFSET if spm_id else UNK

  def id_to_piece(self, index: int) -> str:
    index = int(index)
    if index in self._id_to_special:
      return self._id_to_special[index]
    if not 0 <= index - FAIRSEQ_OFFSET < self.spm_size:
      raise ValueError(f"token id {index} is outside the vocabulary (0..{self.vocab_size - 1})")
    return self.sp.IdToPiece(index - FAIRSEQ_OFFSET)

  def lang_id(self, code: str) -> int:
    if code not in self.lang_code_to_id:
      raise ValueError(f"unknown language code {code!r}; expected one of {list(self.lang_code_to_id)}")
    return self.lang_code_to_id[code]

  # ---- encoding ----------------------------------------------------------------------------------------------
  def tokenize(self, text: str) -> list[str]:
    return self.sp.EncodeAsPieces(text)

  def encode_pieces(self, text: str) -> list[int]:
    """Text -> ids of its pieces (no special tokens)."""
    return [self.piece_to_id(p) for p in self.tokenize(text)]

  def encode(self, text: str, lang: str) -> list[int]:
    """Source or target mode of HF/fairseq mBART: pieces + [`</s>`, lang]."""
    return self.encode_pieces(text) + [EOS, self.lang_id(lang)]

  # ---- decoding ----------------------------------------------------------------------------------------------
  def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
    pieces = [self.id_to_piece(i) for i in ids if not (skip_special_tokens and int(i) in self.special_ids)]
    return "".join(pieces).replace("\u2581", " ").strip()


# ---------------------------------------------------------------------------------------------------------------
# HyperSign's target tensors
# ---------------------------------------------------------------------------------------------------------------
def shift_tokens_right(input_ids: np.ndarray, pad_id: int = PAD) -> np.ndarray:
  """HyperSign's shift: tokens one step right, the last non-pad token of each row wrapped to position 0."""
  input_ids = np.asarray(input_ids)
  out = np.empty_like(input_ids)
  last = (input_ids != pad_id).sum(axis=1) - 1
  out[:, 1:] = input_ids[:, :-1]
  out[:, 0] = input_ids[np.arange(len(input_ids)), last]
  return out


def encode_targets(sequences: Sequence[Sequence[int]], lang_id: int, length: int | None = None,
                   pad_id: int = PAD) -> dict[str, np.ndarray]:
  """Teacher-forcing tensors from target sequences that already end in [`</s>`, lang] (HYPERSIGN.md §5.3).

  Returns int32 `input_ids`, `labels`, `decoder_input_ids` (B, length) (`length` defaults to the longest
  sequence) and `text_length` (B,) (the raw length, `</s>` and lang included).
  """
  longest = max((len(s) for s in sequences), default=0)
  length = longest if length is None else int(length)
  if longest > length:
    raise ValueError(f"a target sequence has {longest} tokens, more than the padded length {length}")
  input_ids = np.full((len(sequences), length), pad_id, np.int32)
  for i, s in enumerate(sequences):
    if len(s) < 2 or s[-1] != lang_id:
      raise ValueError(f"target sequence {i} does not end with [</s>, lang {lang_id}]: {list(s)}")
    input_ids[i, :len(s)] = s
  labels = np.where(input_ids == lang_id, pad_id, input_ids).astype(np.int32)
  return {"input_ids": input_ids, "labels": labels, "decoder_input_ids": shift_tokens_right(input_ids, pad_id),
          "text_length": np.array([len(s) for s in sequences], np.int32)}


# ---------------------------------------------------------------------------------------------------------------
# G2T gloss vocabulary (gloss2ids)
# ---------------------------------------------------------------------------------------------------------------
GLOSS_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>", "zh_CN", "de_DE", "zh_CSL", "de_DGS")


class GlossTokenizer:
  """SLRT `gloss2ids` vocabulary and `GlossTokenizer_G2T` encoding (see the module docstring)."""

  def __init__(self, gloss2id: Mapping[str, int], src_lang: str = "de_DGS", lower_case: bool = True):
    self.gloss2id = {str(k): int(v) for k, v in gloss2id.items()}
    ids = sorted(self.gloss2id.values())
    if ids != list(range(len(ids))):
      raise ValueError(f"gloss ids must be exactly 0..{len(ids) - 1}")
    for token in ("<pad>", "</s>", "<unk>", src_lang):
      if token not in self.gloss2id:
        raise ValueError(f"the gloss vocabulary has no {token!r} entry")
    self.id2gloss = {v: k for k, v in self.gloss2id.items()}
    self.src_lang, self.lower_case = src_lang, lower_case
    self.pad_id, self.eos_id, self.unk_id = self.gloss2id["<pad>"], self.gloss2id["</s>"], self.gloss2id["<unk>"]
    self.src_lang_id = self.gloss2id[src_lang]
    self.num_unknown = 0

  def __len__(self) -> int:
    return len(self.gloss2id)

  @classmethod
  def from_gloss_strings(cls, gloss_strings: Iterable[str], src_lang: str = "de_DGS",
                         lower_case: bool = True) -> "GlossTokenizer":
    """Specials (GLOSS_SPECIALS), then every gloss of the strings (lower-cased), in sorted order."""
    glosses = sorted({(g.lower() if lower_case else g) for s in gloss_strings for g in s.split()}
                     - set(GLOSS_SPECIALS))
    return cls({g: i for i, g in enumerate(list(GLOSS_SPECIALS) + glosses)}, src_lang, lower_case)

  @classmethod
  def load(cls, path: str | os.PathLike, src_lang: str = "de_DGS", lower_case: bool = True) -> "GlossTokenizer":
    """`gloss2ids.json` ({gloss: id}) or SLRT's `gloss2ids.pkl` (a pickle: only pass a file you trust)."""
    data = mapping_files.load_mapping(path, "a gloss vocabulary: gloss2ids.json or SLRT gloss2ids.pkl",
                                      "gloss -> id")
    return cls(data, src_lang, lower_case)

  def save_json(self, path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
      json.dump(dict(sorted(self.gloss2id.items(), key=lambda kv: kv[1])), f, ensure_ascii=False, indent=0)

  def encode(self, gloss_string: str) -> list[int]:
    """'JETZT WETTER' -> [id(jetzt), id(wetter), `</s>`, src_lang]."""
    out = []
    for g in gloss_string.split():
      i = self.gloss2id.get(g.lower() if self.lower_case else g)
      if i is None:
        self.num_unknown += 1
        i = self.unk_id
      out.append(i)
    return out + [self.eos_id, self.src_lang_id]


def pad_batch(sequences: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads to (B, length) int32 ids and a (B, length) int32 mask (1 = token)."""
  ids = np.full((len(sequences), length), pad_id, np.int32)
  mask = np.zeros((len(sequences), length), np.int32)
  for i, s in enumerate(sequences):
    if len(s) > length:
      raise ValueError(f"sequence {i} has {len(s)} tokens, more than the padded length {length}")
    ids[i, :len(s)] = s
    mask[i, :len(s)] = 1
  return ids, mask
