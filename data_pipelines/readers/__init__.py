"""Dataset readers: official layouts -> records (see ``data_pipelines/records.py``), and the registry of them.

Registry (``get_reader(name, root, **options)``):

=================  ==================================================================================
``phoenix2014``    RWTH-PHOENIX-Weather 2014 (``phoenix-2014-multisigner``), CSLR
``phoenix2014t``   RWTH-PHOENIX-Weather 2014 T, CSLR + translation
``csl_daily``      CSL-Daily (``sentence_label/`` + ``sentence/frames_512x512``)
``slowfastsign``   SlowFastSign/CorrNet/VAC preprocess files (``<split>_info.npy``, ``gloss_dict.npy``)
``slrt``           SLRT/TwoStream/HyperSign gzip pickles (annotations, per-stream features, keypoints)
=================  ==================================================================================

Every reader shares the behaviour implemented here:

* ``read(split)`` yields records in the order of the source's annotation file; frames are the bytes of the frame
  files exactly as stored (no re-encoding), in lexicographic filename order (the originals' ``sorted(glob)``).
* ``annotations_only=True`` yields records without ``frames``; ``num_frames`` comes from the frame folder if it
  exists, else from the annotation if it has one, else it is absent.
* A missing root/split/annotation file raises :class:`DataLayoutError` naming the path and the expected layout.
* An empty, unreadable or corrupt frame raises :class:`BadFrameError` naming the sample id and the file; with
  ``skip_bad_frames=True`` the sample is skipped instead and listed in ``reader.skipped`` (never silently).
* Anything a reader changes relative to the raw source (e.g. a row SlowFastSign drops) is listed in
  ``reader.notes``.

Pickle-based files (CSL-Daily's label pickle, SLRT's files) are read only from paths the user names explicitly.
"""
from __future__ import annotations

import dataclasses
import glob
import gzip
import importlib
import io
import os
import pickle
from typing import Any, Iterator, Sequence

from PIL import Image

SPLITS = ("train", "dev", "test")
FRAME_CHECKS = ("decode", "header")

# name -> "module:Class", imported on first use (keeps ``import data_pipelines.readers`` light and cycle-free).
READERS = {
    "phoenix2014": "data_pipelines.readers.phoenix2014:Phoenix2014Reader",
    "phoenix2014t": "data_pipelines.readers.phoenix2014t:Phoenix2014TReader",
    "csl_daily": "data_pipelines.readers.csl_daily:CslDailyReader",
    "slowfastsign": "data_pipelines.readers.slowfastsign_preprocess:SlowFastSignPreprocessReader",
    "slrt": "data_pipelines.readers.slrt:SlrtReader",
}


class DataLayoutError(FileNotFoundError):
  """A path the dataset layout requires is missing; the message names it and the expected layout."""


class BadFrameError(ValueError):
  """A frame of one sample is missing, unreadable or corrupt; the message names the sample id and the file."""

  def __init__(self, sample_id: str, path: str, reason: str):
    self.sample_id = sample_id
    self.path = path
    self.reason = reason
    super().__init__(f"sample {sample_id!r}: {reason}: {path}")


def get_reader(name: str, root: str | None, **options: Any) -> "DatasetReader":
  """Constructs the reader registered as ``name`` (see the module docstring)."""
  if name not in READERS:
    raise ValueError(f"unknown dataset reader {name!r}; known: {sorted(READERS)}")
  module_name, class_name = READERS[name].split(":")
  cls = getattr(importlib.import_module(module_name), class_name)
  return cls(root, **options)


# --- small shared helpers ---------------------------------------------------------------------------------------


def missing(path: str, what: str, layout: str) -> DataLayoutError:
  return DataLayoutError(f"{what} not found: {path!r}; expected layout: {layout}")


def require_file(path: str, what: str, layout: str) -> str:
  if not os.path.isfile(path):
    raise missing(path, what, layout)
  return path


def require_dir(path: str, what: str, layout: str) -> str:
  if not os.path.isdir(path):
    raise missing(path, what, layout)
  return path


def clean_glosses(gloss_string: str) -> str:
  """Collapses whitespace; empty tokens (double spaces) never appear in records."""
  return " ".join(str(gloss_string).split())


def read_pipe_table(path: str, header: Sequence[str], layout: str) -> list[tuple[int, list[str]]]:
  """Reads a ``|``-separated file with a header line; returns ``(line number, fields)`` per data line.

  The header must equal ``header`` and every line must have exactly ``len(header)`` fields, else ValueError naming
  the file and line. Blank lines are skipped.
  """
  require_file(path, "annotation file", layout)
  rows = []
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.rstrip("\r") for line in f.read().split("\n")]  # not splitlines(): U+2028 etc. are text
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not UTF-8 text ({e})") from e
  if not lines or lines[0].strip().lstrip("\ufeff").split("|") != list(header):
    got = lines[0] if lines else "(empty file)"
    raise ValueError(f"{path}:1: expected the header {'|'.join(header)!r}, got {got!r}")
  for lineno, line in enumerate(lines[1:], 2):
    if not line.strip():
      continue
    fields = line.split("|")
    if len(fields) != len(header):
      raise ValueError(f"{path}:{lineno}: expected {len(header)} '|'-separated fields ({'|'.join(header)}), "
                       f"got {len(fields)}: {line[:200]!r}")
    rows.append((lineno, fields))
  return rows


def load_pickle(path: str, what: str) -> Any:
  """Loads a (possibly gzip-compressed) pickle from a path the user named. Only use on trusted files."""
  if not os.path.isfile(path):
    raise DataLayoutError(f"{what} not found: {path!r}")
  with open(path, "rb") as f:
    head = f.read(2)
  opener = gzip.open if head == b"\x1f\x8b" else open
  try:
    with opener(path, "rb") as f:
      return pickle.load(f)
  except Exception as e:  # unpickling raises many unrelated types
    raise ValueError(f"{what} {path!r} could not be unpickled ({type(e).__name__}: {e})") from e


def list_frames(pattern: str) -> list[str]:
  """Files matching the glob ``pattern``, in lexicographic filename order."""
  paths = [p for p in glob.glob(pattern) if os.path.isfile(p)]
  return sorted(paths, key=lambda p: (os.path.dirname(p), os.path.basename(p)))


def read_frames(sample_id: str, paths: Sequence[str], check: str = "decode") -> tuple[list[bytes], tuple[int, int]]:
  """Reads frame files as raw bytes and checks each is an image of the sample's size.

  Args:
    sample_id: for error messages.
    paths: the frame files in order.
    check: ``"decode"`` decodes every frame fully (finds truncated files); ``"header"`` only parses headers.

  Returns:
    (frames, (height, width)).

  Raises:
    BadFrameError naming the sample and the file.
  """
  if check not in FRAME_CHECKS:
    raise ValueError(f"frame check must be one of {FRAME_CHECKS}, got {check!r}")
  frames: list[bytes] = []
  size = None
  for path in paths:
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise BadFrameError(sample_id, path, f"cannot read frame ({e.strerror or e})") from e
    if not data:
      raise BadFrameError(sample_id, path, "frame file is empty")
    try:
      with Image.open(io.BytesIO(data)) as im:
        if check == "decode":
          im.load()
        width, height = im.size
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
      raise BadFrameError(sample_id, path, f"not a readable image ({type(e).__name__}: {e})") from e
    if size is None:
      size = (height, width)
    elif size != (height, width):
      raise BadFrameError(sample_id, path, f"frame is {height}x{width} but the sample's first frame is "
                                           f"{size[0]}x{size[1]}")
    frames.append(data)
  assert size is not None
  return frames, size


@dataclasses.dataclass
class Sample:
  """One annotation row, before frames are attached."""
  id: str
  signer: str = "unknown"
  gloss: str = ""
  text: str = ""
  num_frames: int | None = None       # from the annotation, where it has one
  frame_glob: str | None = None       # absolute glob of the frame files; None if the source has no frames
  key: str | None = None              # the source's join key where it differs from ``id``


class DatasetReader:
  """Base class: subclasses implement ``available_splits`` and ``samples(split)``; see the module docstring."""

  name = ""
  layout = ""

  def __init__(self, root: str | None, *, annotations_only: bool = False, skip_bad_frames: bool = False,
               frame_check: str = "decode"):
    if frame_check not in FRAME_CHECKS:
      raise ValueError(f"frame_check must be one of {FRAME_CHECKS}, got {frame_check!r}")
    self.root = root
    self.annotations_only = annotations_only
    self.skip_bad_frames = skip_bad_frames
    self.frame_check = frame_check
    self.notes: list[str] = []
    self.skipped: list[tuple[str, str, str]] = []  # (split, sample id, reason)

  def available_splits(self) -> tuple[str, ...]:
    raise NotImplementedError

  def samples(self, split: str) -> list[Sample]:
    raise NotImplementedError

  def check_split(self, split: str) -> None:
    if split not in self.available_splits():
      raise DataLayoutError(f"split {split!r} not found for {self.name} under {self.root!r} (available: "
                            f"{list(self.available_splits())}); expected layout: {self.layout}")

  def note(self, message: str) -> None:
    if message not in self.notes:
      self.notes.append(message)

  def read(self, split: str) -> Iterator[dict]:
    """Yields the records of ``split`` in annotation order."""
    self.check_split(split)
    for sample in self.samples(split):
      record = self.base_record(sample, split)
      if sample.frame_glob is not None:
        paths = list_frames(sample.frame_glob)
        if self.annotations_only:
          if paths:
            record["num_frames"] = len(paths)
        else:
          try:
            if not paths:
              raise BadFrameError(sample.id, sample.frame_glob, "no frame files match")
            record["frames"], record["frame_size"] = read_frames(sample.id, paths, self.frame_check)
          except BadFrameError as e:
            if not self.skip_bad_frames:
              raise
            self.skipped.append((split, sample.id, str(e)))
            continue
          record["num_frames"] = len(paths)
      yield record

  def base_record(self, sample: Sample, split: str) -> dict:
    record = {"id": sample.id, "split": split, "signer": sample.signer or "unknown", "gloss": sample.gloss,
              "text": sample.text, "dataset": self.name}
    if sample.num_frames is not None:
      record["num_frames"] = int(sample.num_frames)
    return record


def pick_frame_dir(base: str, candidates: Sequence[str], frame_dir: str, layout: str, required: bool) -> str | None:
  """Chooses the frame directory under ``base``: ``frame_dir`` names one of ``candidates`` or is ``"auto"``.

  ``auto`` takes the first candidate that exists. Returns None (or raises DataLayoutError if ``required``) when
  none exists.
  """
  names = list(candidates) if frame_dir == "auto" else [frame_dir]
  if frame_dir != "auto" and frame_dir not in candidates and not os.path.isabs(frame_dir):
    raise ValueError(f"frame directory {frame_dir!r} is not one of {list(candidates)} (or 'auto')")
  for name in names:
    path = os.path.join(base, name)
    if os.path.isdir(path):
      return path
  if required:
    tried = " or ".join(repr(os.path.join(base, n)) for n in names)
    raise DataLayoutError(f"frame directory not found: {tried}; expected layout: {layout} "
                          f"(use --annotations-only to build without frames)")
  return None
