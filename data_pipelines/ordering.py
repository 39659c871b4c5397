"""Train stream order: record index at every stream position, optionally grouped by length (and SortaGrad).

The default train order is grain's ``MapDataset.source(range(n)).shuffle(seed).repeat()`` (a fresh permutation
per epoch). Padding every batch to the bucket of its longest clip wastes compute when a random batch mixes short
and long clips (synthetic demo corpus, batch 4, buckets (64, 168): 2.6 padded frames per valid frame). Two
standard options change only which records share a batch, never what a record becomes:

* ``group_by_length = W`` (> 0): each epoch's permutation is cut into windows of ``W`` global batches; inside a
  window the records are sorted by length and cut into batches, and the batches of the window are shuffled
  (fairseq / HF ``group_by_length`` style). Batches hold clips of similar length, the window keeps the stream
  random at the scale of ``W`` batches;
* ``sortagrad_epochs = E`` (> 0): the first ``E`` epochs visit the records shortest first (Deep Speech 2's
  SortaGrad: CTC models leave the blank plateau sooner when the first updates see short label sequences), ties
  broken by the epoch's permutation; later epochs are shuffled (and grouped when ``group_by_length`` is on).

Eval splits with ``group_by_length`` are read shortest first (``Reordered``); results are keyed by id.

The order is a pure function of (seed, epoch, lengths), computed lazily per epoch, so a resumed iterator and every
process of a multi-process job see the same stream. ``lengths`` are raw record lengths (before augmentation).
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

_EPOCH_CACHE = 4


class EpochOrder:
  """Infinite sequence: stream position -> record index (one permutation of ``range(n)`` per epoch)."""

  def __init__(self, lengths: Sequence[int], seed: int, global_batch: int, group_by_length: int = 0,
               sortagrad_epochs: int = 0):
    self.lengths = np.asarray(lengths, np.int64)
    if self.lengths.ndim != 1 or not len(self.lengths):
      raise ValueError(f"lengths must be a non-empty 1-D sequence, got shape {self.lengths.shape}")
    if global_batch <= 0:
      raise ValueError(f"global_batch must be positive, got {global_batch}")
    if group_by_length < 0 or sortagrad_epochs < 0:
      raise ValueError(f"group_by_length ({group_by_length}) and sortagrad_epochs ({sortagrad_epochs}) must be >= 0")
    self.n, self.seed, self.global_batch = len(self.lengths), int(seed), int(global_batch)
    self.group_by_length, self.sortagrad_epochs = int(group_by_length), int(sortagrad_epochs)
    self._cache: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return sys.maxsize

  def __getitem__(self, position: int) -> int:
    position = int(position)
    if position < 0:
      raise IndexError(f"negative stream position {position}")
    epoch, offset = divmod(position, self.n)
    return int(self.epoch_order(epoch)[offset])

  def epoch_order(self, epoch: int) -> np.ndarray:
    order = self._cache.get(epoch)
    if order is None:
      order = self._compute(epoch)
      if len(self._cache) >= _EPOCH_CACHE:
        self._cache.pop(min(self._cache))
      self._cache[epoch] = order
    return order

  def _compute(self, epoch: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, 0x5EED, epoch])
    perm = rng.permutation(self.n)
    if epoch < self.sortagrad_epochs:
      return perm[np.argsort(self.lengths[perm], kind="stable")]
    if not self.group_by_length:
      return perm
    window = self.group_by_length * self.global_batch
    out = []
    for start in range(0, self.n, window):
      chunk = perm[start:start + window]
      chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
      batches = [chunk[i:i + self.global_batch] for i in range(0, len(chunk), self.global_batch)]
      for b in rng.permutation(len(batches)):
        out.append(batches[b])
    return np.concatenate(out)

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_cache"] = {}
    return state


class Fetch:
  """``record index -> source[index]`` (picklable map function over an ``EpochOrder`` dataset)."""

  def __init__(self, source):
    self.source = source

  def __call__(self, index: int):
    return self.source[int(index)]


class Reordered:
  """``source`` read in the order ``order`` (a permutation of its indices)."""

  def __init__(self, source, order: Sequence[int]):
    self.source, self.order = source, np.asarray(order, np.int64)
    if len(self.order) != len(source) or not np.array_equal(np.sort(self.order), np.arange(len(source))):
      raise ValueError(f"order must be a permutation of range({len(source)})")

  def __len__(self) -> int:
    return len(self.order)

  def __getitem__(self, index: int):
    return self.source[int(self.order[index])]
