"""Reader for SLRT / TwoStream-SLR / HyperSign data files (annotations, extracted features, keypoints).

Files (all named by the user; none is looked up by this reader, because unpickling runs code)::

    annotations   e.g. data/phoenix-2014t/phoenix-2014t_cleaned.{split}, data/csl-daily/csl-daily.{split}
                  gzip pickle of a list of dicts: name, signer, gloss, text, num_frames, sign (placeholder), ...
    features      one file per split and stream, e.g. extract_features/head_rgb_input/{split}.pkl:
                  gzip pickle of a list of dicts with 'name' and 'sign', a torch FloatTensor (T, 832)
    keypoints     one plain pickle: {name: {'keypoints': array (T_frames, 133, 3)}} (HRNet COCO-WholeBody x, y, score)

Paths are patterns with ``{split}`` (relative paths resolve against the root, if one is given). Records are
joined by ``name``: features go under ``record['features'][stream]`` as float32 (T, D) and keypoints under
``record['keypoints']`` as float32 (T, 133, 3). A sample missing from a feature or keypoint file is an error
naming the sample and file (the original silently skips a missing feature *file* and crashes later, HyperSign §1.1).

Ids: SLRT names carry the split (``train/11August_2010_Wednesday_tagesschau-1``); the record id drops that
``<split>/`` prefix so it equals the official annotation's first field. Texts are kept as in the files (PHOENIX
texts end with " ."; CSL-Daily texts have no spaces). Integer signers become strings. Torch is imported only
to unpickle the feature tensors, which are converted to NumPy at once.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

import numpy as np

from data_pipelines import readers

LAYOUT = ("an SLRT annotation pickle per split (--annotations PATTERN with {split}), optional feature pickles per "
          "stream (--features STREAM=PATTERN) and an optional keypoint pickle (--keypoints PATH)")


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value, dtype=np.float32)


class SlrtReader(readers.DatasetReader):
  """SLRT pickles -> records with text, glosses, ``features`` and ``keypoints`` (no frames)."""

  name = "slrt"
  layout = LAYOUT

  def __init__(self, root: str | None, *, annotations: str | Mapping[str, str] | None = None,
               features: Mapping[str, str] | None = None, keypoints: str | None = None,
               dataset_name: str | None = None, **options):
    super().__init__(root, **options)
    if root is not None and not os.path.isdir(root):
      raise readers.missing(root, "SLRT root directory", LAYOUT)
    if not annotations:
      raise readers.DataLayoutError(f"no SLRT annotation files named: pass --annotations PATTERN (e.g. "
                                    f"data/phoenix-2014t/phoenix-2014t_cleaned.{{split}}); expected layout: {LAYOUT}")
    self.annotations = annotations
    self.features = dict(features or {})
    self.keypoints_path = self._resolve(keypoints) if keypoints else None
    if self.keypoints_path is not None:
      readers.require_file(self.keypoints_path, "SLRT keypoint pickle", LAYOUT)
    if dataset_name:
      self.name = dataset_name
    self._keypoints: dict | None = None

  def _resolve(self, path: str) -> str:
    if self.root is not None and not os.path.isabs(path):
      return os.path.join(self.root, path)
    return path

  def annotation_path(self, split: str) -> str:
    if isinstance(self.annotations, Mapping):
      if split not in self.annotations:
        raise readers.DataLayoutError(f"no SLRT annotation file named for split {split!r} "
                                      f"(named: {sorted(self.annotations)}); expected layout: {LAYOUT}")
      return self._resolve(self.annotations[split])
    return self._resolve(self.annotations.format(split=split))

  def feature_path(self, stream: str, split: str) -> str:
    return self._resolve(self.features[stream].format(split=split))

  def available_splits(self) -> tuple[str, ...]:
    splits = self.annotations.keys() if isinstance(self.annotations, Mapping) else readers.SPLITS
    return tuple(s for s in readers.SPLITS if s in splits and os.path.isfile(self.annotation_path(s)))

  def check_split(self, split: str) -> None:
    readers.require_file(self.annotation_path(split), f"SLRT {split} annotation pickle", LAYOUT)
    for stream in self.features:
      readers.require_file(self.feature_path(stream, split), f"SLRT {split} feature pickle of stream {stream!r}",
                           LAYOUT)

  def _entries(self, path: str, what: str) -> list[dict]:
    data = readers.load_pickle(path, what)
    if not isinstance(data, list) or not all(isinstance(d, dict) and "name" in d for d in data):
      raise ValueError(f"{what} {path!r}: expected a list of dicts with a 'name' key, got {type(data).__name__}")
    return data

  def samples(self, split: str) -> list[readers.Sample]:
    path = self.annotation_path(split)
    out = []
    for i, entry in enumerate(self._entries(path, f"SLRT {split} annotation pickle")):
      name = str(entry["name"])
      sample_id = name[len(split) + 1:] if name.startswith(split + "/") else name
      num_frames = entry.get("num_frames")
      try:
        num_frames = int(num_frames) if num_frames is not None else None
      except (TypeError, ValueError):
        raise ValueError(f"{path}: entry {i} ({name!r}) has num_frames {num_frames!r}, not an integer") from None
      out.append(readers.Sample(id=sample_id, signer=str(entry.get("signer", "unknown")),
                                gloss=readers.clean_glosses(entry.get("gloss", "") or ""),
                                text=str(entry.get("text", "") or "").strip(), num_frames=num_frames,
                                key=name))
    return out

  def _load_features(self, stream: str, split: str) -> dict[str, Any]:
    try:
      import torch  # noqa: F401  (the pickles hold torch tensors; imported only here)
    except ImportError as e:
      raise ImportError("reading SLRT feature pickles needs PyTorch (CPU build: pip install torch==2.13.0)") from e
    path = self.feature_path(stream, split)
    entries = self._entries(path, f"SLRT {split} feature pickle of stream {stream!r}")
    by_name = {}
    for entry in entries:
      if "sign" not in entry:
        raise ValueError(f"{path}: entry {entry['name']!r} has no 'sign' tensor")
      by_name[str(entry["name"])] = entry["sign"]
    return by_name

  def _keypoint_table(self) -> dict:
    if self._keypoints is None:
      data = readers.load_pickle(self.keypoints_path, "SLRT keypoint pickle")
      if not isinstance(data, dict):
        raise ValueError(f"SLRT keypoint pickle {self.keypoints_path!r}: expected a dict name -> "
                         f"{{'keypoints': (T, 133, 3)}}, got {type(data).__name__}")
      self._keypoints = data
    return self._keypoints

  def read(self, split: str) -> Iterator[dict]:
    self.check_split(split)
    samples = self.samples(split)
    streams = {stream: self._load_features(stream, split) for stream in self.features}
    keypoints = self._keypoint_table() if self.keypoints_path is not None else None
    names = {s.key for s in samples}
    for stream, table in streams.items():
      extra = len(set(table) - names)
      if extra:
        self.note(f"{self.feature_path(stream, split)}: {extra} entries have no annotation in "
                  f"{self.annotation_path(split)} and were not used")
    for sample in samples:
      record = self.base_record(sample, split)
      if streams:
        record["features"] = {}
        for stream, table in streams.items():
          if sample.key not in table:
            raise MissingEntryError(f"sample {sample.key!r} of {self.annotation_path(split)} has no features in "
                            f"{self.feature_path(stream, split)} (stream {stream!r})")
          value = _to_numpy(table[sample.key])
          if value.ndim != 2:
            raise ValueError(f"sample {sample.key!r}: features of stream {stream!r} in "
                             f"{self.feature_path(stream, split)} must be (T, D), got shape {value.shape}")
          record["features"][stream] = value
      if keypoints is not None:
        entry = keypoints.get(sample.key, keypoints.get(sample.id))
        if entry is None:
          raise MissingEntryError(f"sample {sample.key!r} has no entry in the keypoint pickle {self.keypoints_path}")
        value = _to_numpy(entry["keypoints"] if isinstance(entry, dict) else entry)
        if value.ndim != 3 or value.shape[1:] != (133, 3):
          raise ValueError(f"sample {sample.key!r}: keypoints in {self.keypoints_path} must be (T, 133, 3), "
                           f"got {value.shape}")
        record["keypoints"] = value
      yield record


class MissingEntryError(ValueError):
  """A sample missing from a feature/keypoint file (a ValueError, so the message is shown unquoted)."""
