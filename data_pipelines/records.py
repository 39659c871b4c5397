"""The common sample record and its byte encoding.

Every reader (synthetic corpus, PHOENIX-2014, PHOENIX-2014-T, CSL-Daily, SlowFastSign/SLRT files) turns a dataset
into records of this one shape, so later stages cannot tell the sources apart.

A record is a dict with these keys (only ``id`` is always present; the others as the source provides them):

==============  ==========================================================================================
``id``          str, utterance id (the first ``|`` field of the official annotation line)
``split``       str, ``train`` / ``dev`` / ``test``
``signer``      str, e.g. ``Signer08`` (``unknown`` where the dataset has none)
``gloss``       str, space-separated glosses (empty tokens never appear)
``text``        str, spoken-language translation ('' where the dataset has none)
``num_frames``  int, number of video frames
``frames``      list[bytes], one encoded image (PNG or JPEG, the bytes as stored on disk) per frame
``keypoints``   float32 (T, 133, 3): COCO-WholeBody x, y, confidence, in pixels of the original frame
``features``    dict stream name -> float32 (T, D), pre-extracted per-clip features
``frame_size``  (height, width) of the original frames, where known
==============  ==========================================================================================

The encoding is msgpack with NumPy arrays stored as (dtype, shape, raw bytes): no pickle, so records are safe to
read from any file.
"""
from __future__ import annotations

from typing import Any, Iterable

import msgpack
import numpy as np

REQUIRED_KEYS = ("id",)
KNOWN_KEYS = frozenset(
    {"id", "split", "signer", "gloss", "text", "num_frames", "frames", "keypoints", "features", "frame_size",
     "dataset"})

_ND = "__nd__"


def _default(obj: Any) -> Any:
  if isinstance(obj, np.ndarray):
    arr = np.ascontiguousarray(obj)
    return {_ND: True, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}
  if isinstance(obj, np.generic):
    return obj.item()
  raise TypeError(f"cannot encode a value of type {type(obj).__name__} in a record")


def _object_hook(obj: dict) -> Any:
  if obj.get(_ND) is True:
    return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
  return obj


def validate_record(record: dict) -> None:
  """Raises ValueError naming the problem if ``record`` is not a well-formed record."""
  if not isinstance(record, dict):
    raise ValueError(f"a record must be a dict, got {type(record).__name__}")
  for key in REQUIRED_KEYS:
    if key not in record:
      raise ValueError(f"record is missing the required key {key!r}: {sorted(record)}")
  unknown = set(record) - KNOWN_KEYS
  if unknown:
    raise ValueError(f"record {record['id']!r} has unknown keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
  kp = record.get("keypoints")
  if kp is not None and (kp.ndim != 3 or kp.shape[1:] != (133, 3)):
    raise ValueError(f"record {record['id']!r}: keypoints must be (T, 133, 3), got {kp.shape}")
  feats = record.get("features")
  if feats is not None:
    for name, value in feats.items():
      if value.ndim != 2:
        raise ValueError(f"record {record['id']!r}: feature stream {name!r} must be (T, D), got {value.shape}")


def encode_record(record: dict) -> bytes:
  """Record dict -> bytes (validated first)."""
  validate_record(record)
  return msgpack.packb(record, default=_default, use_bin_type=True)


def decode_record(data: bytes) -> dict:
  """Bytes -> record dict. Arrays come back read-only views of the buffer."""
  try:
    record = msgpack.unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=False)
  except Exception as e:  # msgpack raises several unrelated exception types
    raise ValueError(f"not a valid record ({type(e).__name__}: {e})") from e
  if not isinstance(record, dict) or "id" not in record:
    raise ValueError("not a valid record: decoded value has no 'id'")
  if isinstance(record.get("frame_size"), list):
    record["frame_size"] = tuple(record["frame_size"])
  return record


def encode_all(records: Iterable[dict]) -> Iterable[bytes]:
  for record in records:
    yield encode_record(record)
