"""Reader for CSL-Daily in its official release layout.

Layout (the root is the ``CSL-Daily`` directory)::

    CSL-Daily/
      sentence_label/split_1.txt          # name|split (header line); split is train / dev / test
      sentence_label/video_map.txt        # index|name|length|gloss|char|word|postag (header line)
      sentence_label/csl2020ct_v2.pkl     # the same labels as a pickle: {'info': [{'name', 'length', 'label_gloss',
                                          #   'label_char', 'label_word', 'signer', ...}, ...], ...}
      sentence/frames_512x512/<name>/*.jpg    # original frames
      sentence/frames_256x256/<name>/*.jpg    # or SlowFastSign's offline 256x256 resize

Labels are read from ``video_map.txt`` (plain text) by default. The pickle is read only when the user names its path
(``annotation_pkl=...``, CLI ``--annotation-pkl``): unpickling runs code, so this reader never opens a pickle it
found by itself. ``video_map.txt`` has no signer column, so signer is ``unknown`` there (as in SlowFastSign's
``<split>_info.npy``); the pickle's integer signer is kept as a string.

Record fields: ``gloss`` = the space-separated gloss column (``label_gloss`` joined), ``text`` = the Chinese
sentence from the character column with the spaces removed (``label_char`` joined; the form the SLRT/HyperSign
files use), ``num_frames`` = the ``length`` column unless the frame folder is counted. Records come in the label
file's order, filtered by the split file. Note (SlowFastSign §8.1): the original CSL-Daily feeder silently loses the
last sample of each split; this reader yields every sample.
"""
from __future__ import annotations

import glob
import os

from data_pipelines import readers

SPLIT_HEADER = ("name", "split")
MAP_HEADER = ("index", "name", "length", "gloss", "char", "word", "postag")
FRAME_DIRS = ("frames_512x512", "frames_256x256", "frames_256x256px")
LAYOUT = ("CSL-Daily/sentence_label/split_1.txt (name|split), CSL-Daily/sentence_label/video_map.txt "
          "(index|name|length|gloss|char|word|postag) or a named csl2020ct_v2.pkl, and "
          "CSL-Daily/sentence/frames_512x512/<name>/*.jpg (or frames_256x256)")


class CslDailyReader(readers.DatasetReader):
  """CSL-Daily -> records."""

  name = "csl_daily"
  layout = LAYOUT

  def __init__(self, root: str | None, *, frame_dir: str = "auto", annotation_pkl: str | None = None,
               split_file: str | None = None, **options):
    super().__init__(root, **options)
    if not root or not os.path.isdir(root):
      raise readers.missing(str(root), "CSL-Daily root directory", LAYOUT)
    label_dir = os.path.join(root, "sentence_label")
    self.split_file = split_file or os.path.join(label_dir, "split_1.txt")
    readers.require_file(self.split_file, "CSL-Daily split file", LAYOUT)
    self.annotation_pkl = annotation_pkl
    self.video_map = os.path.join(label_dir, "video_map.txt")
    if annotation_pkl is None and not os.path.isfile(self.video_map):
      raise readers.DataLayoutError(
          f"CSL-Daily label file not found: {self.video_map!r}; pass the label pickle explicitly "
          f"(--annotation-pkl {os.path.join(label_dir, 'csl2020ct_v2.pkl')}) if you have that instead; "
          f"expected layout: {LAYOUT}")
    self.frames_root = readers.pick_frame_dir(os.path.join(root, "sentence"), FRAME_DIRS, frame_dir, LAYOUT,
                                              required=not self.annotations_only)
    self._split_of = self._read_splits()
    self._labels: list[dict] | None = None

  def _read_splits(self) -> dict[str, str]:
    split_of = {}
    for lineno, (name, split) in readers.read_pipe_table(self.split_file, SPLIT_HEADER, LAYOUT):
      split = split.strip()
      if split not in readers.SPLITS:
        raise ValueError(f"{self.split_file}:{lineno}: split {split!r} is not one of {list(readers.SPLITS)}")
      split_of[name.strip()] = split
    return split_of

  def available_splits(self) -> tuple[str, ...]:
    present = set(self._split_of.values())
    return tuple(s for s in readers.SPLITS if s in present)

  def check_split(self, split: str) -> None:
    if split not in self.available_splits():
      raise readers.DataLayoutError(f"split {split!r} has no rows in the CSL-Daily split file {self.split_file!r} "
                                    f"(found {list(self.available_splits())}); expected layout: {LAYOUT}")

  def _load_labels(self) -> list[dict]:
    """Label rows as dicts with name, length, gloss (str), text (str), signer (str)."""
    if self._labels is not None:
      return self._labels
    labels = []
    if self.annotation_pkl is not None:
      data = readers.load_pickle(self.annotation_pkl, "CSL-Daily label pickle")
      info = data.get("info") if isinstance(data, dict) else None
      if not isinstance(info, list):
        raise ValueError(f"CSL-Daily label pickle {self.annotation_pkl!r}: expected a dict with an 'info' list "
                         f"(csl2020ct_v2.pkl), got {type(data).__name__}")
      for i, item in enumerate(info):
        try:
          gloss = item["label_gloss"]
          chars = item.get("label_char", "")
          labels.append({
              "name": str(item["name"]),
              "length": int(item["length"]) if item.get("length") is not None else None,
              "gloss": readers.clean_glosses(gloss if isinstance(gloss, str) else " ".join(gloss)),
              "text": "".join(("".join(chars) if not isinstance(chars, str) else chars).split()),
              "signer": str(item.get("signer", "unknown")),
          })
        except (KeyError, TypeError, ValueError) as e:
          raise ValueError(f"CSL-Daily label pickle {self.annotation_pkl!r}: entry {i} is not a label dict with "
                           f"name/length/label_gloss ({type(e).__name__}: {e})") from e
    else:
      for lineno, (_idx, name, length, gloss, chars, _word, _postag) in readers.read_pipe_table(
          self.video_map, MAP_HEADER, LAYOUT):
        try:
          length_value = int(length) if length.strip() else None
        except ValueError:
          raise ValueError(f"{self.video_map}:{lineno}: length {length!r} is not an integer") from None
        labels.append({"name": name.strip(), "length": length_value, "gloss": readers.clean_glosses(gloss),
                       "text": "".join(chars.split()), "signer": "unknown"})
    self._labels = labels
    return labels

  def samples(self, split: str) -> list[readers.Sample]:
    out = []
    labelled = set()
    for label in self._load_labels():
      labelled.add(label["name"])
      if self._split_of.get(label["name"]) != split:
        continue
      frame_glob = None
      if self.frames_root is not None:
        frame_glob = os.path.join(glob.escape(os.path.join(self.frames_root, label["name"])), "*.jpg")
      out.append(readers.Sample(id=label["name"], signer=label["signer"], gloss=label["gloss"], text=label["text"],
                                num_frames=label["length"], frame_glob=frame_glob))
    unlabelled = sorted(n for n, s in self._split_of.items() if s == split and n not in labelled)
    if unlabelled:
      self.note(f"{len(unlabelled)} {split} name(s) in {self.split_file} have no label row and were not read: "
                f"{unlabelled[:5]}{' ...' if len(unlabelled) > 5 else ''}")
    return out
