"""Reader for SlowFastSign / CorrNet / VAC preprocess files.

Layout (the root is the ``preprocess/<dataset>`` directory; frames live wherever the user keeps them)::

    preprocess/<dataset>/
      {train,dev,test}_info.npy    # np.save of {0: {...}, 1: {...}, ..., ['prefix': str]}
      gloss_dict.npy               # np.save of {gloss: [index, count]}  (blank = 0, glosses 1..V)
    <frame root>/<folder>          # 'folder' of each entry is a glob relative to the frame root the user gives,
                                   # e.g. fullFrame-256x256px for PHOENIX (phoenix-T 'train/<name>/*.png',
                                   # phoenix2014 'train/<id>/1/*.png'), frames_256x256 for CSL-Daily ('<name>/*.jpg')

Each entry has ``fileid``, ``folder``, ``signer``, ``label`` (glosses; may contain double spaces, which are
dropped), ``num_frames`` (a string in the CSL-Daily files, converted to int) and ``original_info``; the record's
text is the entry's ``text`` (some variants have one) or the translation in ``original_info`` (see
:func:`text_of`). Integer keys are read in order; the ``'prefix'`` key (the original machine's absolute frame path)
is ignored, because the frame root is given explicitly.

These ``.npy`` files are pickled object arrays (``np.load(..., allow_pickle=True)``): only point this reader at a
directory you trust. Unlike the original feeder (``len(info) - 1``, SlowFastSign §8.1), every entry is read, so the
CSL-Daily files give all 1,077 dev / 1,176 test samples.
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines import readers

LAYOUT = ("<preprocess dir>/{train,dev,test}_info.npy (+ gloss_dict.npy) with each entry's 'folder' glob resolved "
          "against the frame root given with --frame-root")


def info_path(root: str, split: str) -> str:
  return os.path.join(root, f"{split}_info.npy")


def load_info(path: str) -> dict:
  """Loads a ``<split>_info.npy`` dict (pickled; trusted files only)."""
  readers.require_file(path, "SlowFastSign info file", LAYOUT)
  try:
    info = np.load(path, allow_pickle=True).item()
  except Exception as e:  # np.load raises many types for a bad file
    raise ValueError(f"{path!r} is not a SlowFastSign <split>_info.npy ({type(e).__name__}: {e})") from e
  if not isinstance(info, dict):
    raise ValueError(f"{path!r}: expected a dict of entries, got {type(info).__name__}")
  return info


def text_of(entry: dict) -> str:
  """The translation of an info entry: its ``text`` field, else recovered from ``original_info``.

  ``original_info`` is the official annotation line: PHOENIX-2014-T ``name|video|start|end|speaker|orth|translation``
  (7 fields: the translation is the last), CSL-Daily ``name|length|gloss|char|word|postag`` (6 fields: the
  characters, spaces removed); PHOENIX-2014 lines (4 fields) have none, giving ''.
  """
  if entry.get("text"):
    return str(entry["text"]).strip()
  original = entry.get("original_info")
  if isinstance(original, str):
    fields = original.rstrip("\n").split("|")
    if len(fields) == 7:
      return fields[6].strip()
    if len(fields) == 6:
      return "".join(fields[3].split())
  return ""


class SlowFastSignPreprocessReader(readers.DatasetReader):
  """``<split>_info.npy`` -> records; ``gloss_dict_path`` is the matching vocabulary (if present)."""

  name = "slowfastsign"
  layout = LAYOUT

  def __init__(self, root: str | None, *, frame_root: str | None = None, dataset_name: str | None = None,
               **options):
    super().__init__(root, **options)
    if not root or not os.path.isdir(root):
      raise readers.missing(str(root), "SlowFastSign preprocess directory", LAYOUT)
    if not self.available_splits():
      raise readers.missing(os.path.join(root, "{train,dev,test}_info.npy"), "SlowFastSign info files", LAYOUT)
    if frame_root is None and not self.annotations_only:
      raise readers.DataLayoutError(f"no frame root given for the SlowFastSign info files in {root!r}: pass "
                                    f"--frame-root (the directory their 'folder' globs are relative to), or "
                                    f"--annotations-only; expected layout: {LAYOUT}")
    if frame_root is not None:
      readers.require_dir(frame_root, "frame root", LAYOUT)
    self.frame_root = frame_root
    if dataset_name:
      self.name = dataset_name
    gloss_dict = os.path.join(root, "gloss_dict.npy")
    self.gloss_dict_path = gloss_dict if os.path.isfile(gloss_dict) else None

  def available_splits(self) -> tuple[str, ...]:
    return tuple(s for s in readers.SPLITS if os.path.isfile(info_path(self.root, s)))

  def check_split(self, split: str) -> None:
    readers.require_file(info_path(self.root, split), f"SlowFastSign {split} info file", LAYOUT)

  def samples(self, split: str) -> list[readers.Sample]:
    path = info_path(self.root, split)
    info = load_info(path)
    keys = sorted(k for k in info if isinstance(k, (int, np.integer)))
    if keys != list(range(len(keys))):
      self.note(f"{path}: integer keys are not 0..{len(keys) - 1}; read in sorted key order")
    out = []
    for key in keys:
      entry = info[key]
      try:
        fileid = str(entry["fileid"])
        label = entry["label"]
        folder = entry.get("folder")
      except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: entry {key} lacks 'fileid'/'label' ({type(e).__name__}: {e})") from e
      num_frames = entry.get("num_frames")
      if num_frames is not None:
        try:
          num_frames = int(num_frames)
        except (TypeError, ValueError):
          raise ValueError(f"{path}: entry {key} ({fileid!r}) has num_frames {num_frames!r}, not an integer") from None
      frame_glob = None
      if self.frame_root is not None and folder:
        frame_glob = os.path.join(self.frame_root, str(folder))
      out.append(readers.Sample(id=fileid, signer=str(entry.get("signer", "unknown")) or "unknown",
                                gloss=readers.clean_glosses(label), text=text_of(entry),
                                num_frames=num_frames, frame_glob=frame_glob))
    return out
