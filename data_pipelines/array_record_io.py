"""Writing records to ArrayRecord shards and reading them back with random access.

Layout of a prepared dataset directory (written by ``python -m data_pipelines.build``)::

    OUT/
      dataset_info.json                       # name, splits and their sizes, vocabulary size, statistics
      gloss_vocab.json                        # gloss -> [index, count], blank = 0 (SlowFastSign conventions)
      <split>.array_record-00000-of-0000N     # encoded records (see records.py), in id order of the source
      <split>.stm                             # reference glosses for sclite-style scoring

Written directly with ``array_record`` (no TFDS builder, so nothing here needs TensorFlow); read with
``grain.sources.ArrayRecordDataSource``.
"""
from __future__ import annotations

import glob
import os
from typing import Iterable, Sequence

from array_record.python import array_record_module
import grain

from data_pipelines import records as records_lib

SHARD_PATTERN = "{split}.array_record-{index:05d}-of-{count:05d}"


def shard_paths(directory: str, split: str) -> list[str]:
  """The ArrayRecord shards of ``split`` in ``directory``, in order. Raises FileNotFoundError if none."""
  paths = sorted(glob.glob(os.path.join(directory, f"{split}.array_record-*-of-*")))
  if not paths:
    raise FileNotFoundError(
        f"no ArrayRecord shards for split {split!r} in {directory!r} (expected files named "
        f"{SHARD_PATTERN.format(split=split, index=0, count=1)!r}; build them with "
        f"`python -m data_pipelines.build`)")
  return paths


def write_split(directory: str, split: str, records: Sequence[dict] | Iterable[dict], num_shards: int = 1,
                progress=None) -> int:
  """Encodes ``records`` into ``num_shards`` ArrayRecord files; returns the number written.

  Records are assigned to shards in contiguous blocks, so reading the shards in order gives the input order.
  ``progress`` is an optional callable called once per record (e.g. a tqdm ``update``).
  """
  records = list(records)
  os.makedirs(directory, exist_ok=True)
  for old in glob.glob(os.path.join(directory, f"{split}.array_record-*-of-*")):
    os.remove(old)
  num_shards = max(1, min(num_shards, len(records) or 1))
  per_shard = -(-len(records) // num_shards) if records else 0
  for index in range(num_shards):
    path = os.path.join(directory, SHARD_PATTERN.format(split=split, index=index, count=num_shards))
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    try:
      for record in records[index * per_shard:(index + 1) * per_shard]:
        writer.write(records_lib.encode_record(record))
        if progress is not None:
          progress(1)
    finally:
      writer.close()
  return len(records)


class RecordSource(grain.sources.RandomAccessDataSource):
  """Random-access source of decoded records of one split."""

  def __init__(self, directory: str, split: str):
    self._paths = shard_paths(directory, split)
    self._source = grain.sources.ArrayRecordDataSource(self._paths)
    self.split = split

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    data = self._source[index]
    try:
      return records_lib.decode_record(data)
    except ValueError as e:
      raise ValueError(f"record {index} of split {self.split!r} in {self._paths[0]!r}...: {e}") from e

  def __repr__(self) -> str:
    return f"RecordSource({self._paths[0]!r}..., split={self.split!r}, n={len(self)})"
