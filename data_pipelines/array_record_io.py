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
                progress=None, count: int | None = None) -> int:
  """Encodes ``records`` into ``num_shards`` ArrayRecord files; returns the number written.

  Records are streamed (never all in memory) when their number is known: a sequence's ``len`` or ``count``, or
  with one shard. Records go to shards in contiguous blocks, so reading the shards in order gives the input order.
  ``progress`` is an optional callable called once per record (e.g. a tqdm ``update``).
  """
  if count is None and hasattr(records, "__len__"):
    count = len(records)
  if count is None and num_shards > 1:
    records = list(records)
    count = len(records)
  os.makedirs(directory, exist_ok=True)
  for old in glob.glob(os.path.join(directory, f"{split}.array_record-*-of-*")):
    os.remove(old)
  num_shards = 1 if count is None else max(1, min(num_shards, count or 1))
  per_shard = -(-count // num_shards) if count else 0
  written, writer, shard = 0, None, -1
  try:
    for record in records:
      target = written // per_shard if per_shard else 0
      if target != shard:
        if writer is not None:
          writer.close()
        shard = target
        path = os.path.join(directory, SHARD_PATTERN.format(split=split, index=shard, count=num_shards))
        writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
      writer.write(records_lib.encode_record(record))
      written += 1
      if progress is not None:
        progress(1)
  finally:
    if writer is not None:
      writer.close()
  if count is not None and written > count:
    raise ValueError(f"split {split!r}: expected at most {count} records, got {written}")
  # Fewer records than announced (samples skipped while reading), or none: the remaining shards exist, empty.
  for index in range(shard + 1, num_shards):
    path = os.path.join(directory, SHARD_PATTERN.format(split=split, index=index, count=num_shards))
    array_record_module.ArrayRecordWriter(path, "group_size:1").close()
  return written


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
