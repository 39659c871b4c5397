"""Reader for RWTH-PHOENIX-Weather 2014 (multi-signer) in its official release layout.

Layout (the root is the dataset directory that contains ``phoenix-2014-multisigner/``, or that directory itself)::

    phoenix-2014-multisigner/
      annotations/manual/{train,dev,test}.corpus.csv                 # id|folder|signer|annotation
      features/fullFrame-210x260px/<split>/<id>/1/*.png              # original frames (210x260)
      features/fullFrame-256x256px/<split>/<id>/1/*.png              # or SlowFastSign's offline 256x256 resize

The ``folder`` column is a glob relative to ``<frames>/<split>/`` (``<id>/1/*.png``). There is no translation, so
``text`` is ''.

SlowFastSign's preprocessing (``csv2dict``, inherited from VAC) drops the train data row with 0-based index 2390
(``inputs_list.drop([2390])``) as broken, which gives its 5,671 train sentences. This reader does the same by
default, but only on a train file with the official 5,672 data rows, and always says so in ``reader.notes``
(``keep_broken_rows=True`` keeps the row; on any other file nothing is dropped and the note says why).
"""
from __future__ import annotations

import glob
import os

from data_pipelines import readers

HEADER = ("id", "folder", "signer", "annotation")
FRAME_DIRS = ("fullFrame-210x260px", "fullFrame-256x256px")
SUBDIR = "phoenix-2014-multisigner"
LAYOUT = ("phoenix-2014-multisigner/annotations/manual/{train,dev,test}.corpus.csv (id|folder|signer|annotation) "
          "and phoenix-2014-multisigner/features/fullFrame-210x260px/<split>/<id>/1/*.png (or fullFrame-256x256px)")

# SlowFastSign/VAC preprocessing: `if dataset_type == 'train': inputs_list.drop([2390])`.
SLOWFASTSIGN_DROPPED_TRAIN_ROW = 2390
OFFICIAL_TRAIN_ROWS = 5672


def annotation_path(root: str, split: str) -> str:
  return os.path.join(root, "annotations", "manual", f"{split}.corpus.csv")


class Phoenix2014Reader(readers.DatasetReader):
  """PHOENIX-2014 -> records (id, signer, gloss = ``annotation``; text '')."""

  name = "phoenix2014"
  layout = LAYOUT

  def __init__(self, root: str | None, *, frame_dir: str = "auto", keep_broken_rows: bool = False, **options):
    super().__init__(root, **options)
    if not root or not os.path.isdir(root):
      raise readers.missing(str(root), "PHOENIX-2014 root directory", LAYOUT)
    if not os.path.isdir(os.path.join(root, "annotations")) and os.path.isdir(os.path.join(root, SUBDIR)):
      root = os.path.join(root, SUBDIR)
    self.root = root
    self.keep_broken_rows = keep_broken_rows
    readers.require_dir(os.path.join(root, "annotations", "manual"), "PHOENIX-2014 annotation directory", LAYOUT)
    self.frames_root = readers.pick_frame_dir(os.path.join(root, "features"), FRAME_DIRS, frame_dir, LAYOUT,
                                              required=not self.annotations_only)

  def available_splits(self) -> tuple[str, ...]:
    return tuple(s for s in readers.SPLITS if os.path.isfile(annotation_path(self.root, s)))

  def check_split(self, split: str) -> None:
    readers.require_file(annotation_path(self.root, split), f"PHOENIX-2014 {split} annotation file", LAYOUT)

  def samples(self, split: str) -> list[readers.Sample]:
    path = annotation_path(self.root, split)
    rows = readers.read_pipe_table(path, HEADER, LAYOUT)
    if split == "train":
      rows = self._drop_broken_row(path, rows)
    out = []
    for _, (utt_id, folder, signer, annotation) in rows:
      out.append(readers.Sample(id=utt_id.strip(), signer=signer.strip() or "unknown",
                                gloss=readers.clean_glosses(annotation),
                                frame_glob=self._frame_glob(split, utt_id.strip(), folder.strip())))
    return out

  def _drop_broken_row(self, path: str, rows: list) -> list:
    index = SLOWFASTSIGN_DROPPED_TRAIN_ROW
    if len(rows) != OFFICIAL_TRAIN_ROWS:
      self.note(f"{path} has {len(rows)} data rows, not the official {OFFICIAL_TRAIN_ROWS}: SlowFastSign's drop of "
                f"train row {index} was not applied (all rows kept)")
      return rows
    lineno, fields = rows[index]
    if self.keep_broken_rows:
      self.note(f"kept train row {index} ({path}:{lineno}, id {fields[0]!r}), which SlowFastSign's preprocessing "
                f"drops as broken (keep_broken_rows)")
      return rows
    self.note(f"dropped train row {index} ({path}:{lineno}, id {fields[0]!r}) as SlowFastSign's preprocessing "
              f"does (5,671 train sentences); pass --keep-broken-rows to keep it")
    return rows[:index] + rows[index + 1:]

  def _frame_glob(self, split: str, utt_id: str, folder: str) -> str | None:
    if self.frames_root is None:
      return None
    split_dir = os.path.join(self.frames_root, split)
    if folder:
      return os.path.join(split_dir, folder)
    return os.path.join(glob.escape(os.path.join(split_dir, utt_id, "1")), "*.png")
