"""Reader for RWTH-PHOENIX-Weather 2014 T in its official release layout.

Layout (the root is the ``PHOENIX-2014-T`` directory, or the release directory that contains it)::

    PHOENIX-2014-T/
      annotations/manual/PHOENIX-2014-T.{train,dev,test}.corpus.csv    # name|video|start|end|speaker|orth|translation
      features/fullFrame-210x260px/<split>/<name>/*.png                # original frames (210x260)
      features/fullFrame-256x256px/<split>/<name>/*.png                # or SlowFastSign's offline 256x256 resize

``orth`` is the gloss sequence, ``translation`` the lower-case German sentence (as in the CSV, without the
" ." that the SLRT files append). The ``video`` column is a glob relative to ``<frames>/<split>/`` (``<name>/*.png``;
some copies write ``<name>/1/*.png``, which is accepted and falls back to ``<name>/*.png``). ``start``/``end`` are
-1 for every row and are ignored. SlowFastSign reads the same rows in the same order (its ``csv2dict``).
"""
from __future__ import annotations

import glob
import os

from data_pipelines import readers

HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")
FRAME_DIRS = ("fullFrame-210x260px", "fullFrame-256x256px")
LAYOUT = ("PHOENIX-2014-T/annotations/manual/PHOENIX-2014-T.{train,dev,test}.corpus.csv "
          "(name|video|start|end|speaker|orth|translation) and "
          "PHOENIX-2014-T/features/fullFrame-210x260px/<split>/<name>/*.png (or fullFrame-256x256px)")


def annotation_path(root: str, split: str) -> str:
  return os.path.join(root, "annotations", "manual", f"PHOENIX-2014-T.{split}.corpus.csv")


class Phoenix2014TReader(readers.DatasetReader):
  """PHOENIX-2014-T -> records (id = ``name``, signer = ``speaker``, gloss = ``orth``, text = ``translation``)."""

  name = "phoenix2014t"
  layout = LAYOUT

  def __init__(self, root: str | None, *, frame_dir: str = "auto", **options):
    super().__init__(root, **options)
    if not root or not os.path.isdir(root):
      raise readers.missing(str(root), "PHOENIX-2014-T root directory", LAYOUT)
    if not os.path.isdir(os.path.join(root, "annotations")) and os.path.isdir(os.path.join(root, "PHOENIX-2014-T")):
      root = os.path.join(root, "PHOENIX-2014-T")
    self.root = root
    readers.require_dir(os.path.join(root, "annotations", "manual"), "PHOENIX-2014-T annotation directory", LAYOUT)
    self.frames_root = readers.pick_frame_dir(os.path.join(root, "features"), FRAME_DIRS, frame_dir, LAYOUT,
                                              required=not self.annotations_only)

  def available_splits(self) -> tuple[str, ...]:
    return tuple(s for s in readers.SPLITS if os.path.isfile(annotation_path(self.root, s)))

  def check_split(self, split: str) -> None:
    readers.require_file(annotation_path(self.root, split), f"PHOENIX-2014-T {split} annotation file", LAYOUT)

  def samples(self, split: str) -> list[readers.Sample]:
    path = annotation_path(self.root, split)
    out = []
    for _, (name, video, _start, _end, speaker, orth, translation) in readers.read_pipe_table(path, HEADER, LAYOUT):
      out.append(readers.Sample(id=name.strip(), signer=speaker.strip() or "unknown",
                                gloss=readers.clean_glosses(orth), text=translation.strip(),
                                frame_glob=self._frame_glob(split, name.strip(), video.strip())))
    return out

  def _frame_glob(self, split: str, name: str, video: str) -> str | None:
    if self.frames_root is None:
      return None
    split_dir = os.path.join(self.frames_root, split)
    pattern = os.path.join(split_dir, video) if video else ""
    if pattern and glob.glob(pattern):
      return pattern
    # '<name>/1/*.png' written by some copies, or an empty/odd column: the release stores '<name>/*.png'.
    return os.path.join(glob.escape(os.path.join(split_dir, name)), "*.png")
