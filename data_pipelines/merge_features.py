"""Feature dataset directories: writing one, and merging single-stream ones into the two-stream S2T input.

A *feature dataset directory* is a prepared dataset directory (``array_record_io.py`` layout: ArrayRecord shards
per split, ``gloss_vocab.json``, ``<split>.stm``, ``dataset_info.json``) whose records carry ``features``
{stream: float32 (T, D)} and the source's ``id`` / ``split`` / ``signer`` / ``gloss`` / ``text`` (no frames, no
keypoints). Three producers write the same format, so the S2T task (``tasks/slt.py``) cannot tell them apart:
``--mode extract`` (``hypersign_jax/extraction.py``, one stream per run), the SLRT feature-pickle reader
(``python -m data_pipelines.build --dataset slrt --features rgb=... keypoint=...``), and the synthetic stand-ins
(``synthetic_features.py``).

Merging (HyperSign reads two streams per sample)::

    python -m data_pipelines.merge_features --stream rgb=workdirs/s2g_rgb/features_rgb \
        --stream keypoint=workdirs/kp_s2g/features_keypoint --out workdirs/data/two_stream

Each ``NAME=DIR`` takes feature stream NAME from DIR's records (``NAME=DIR:SOURCE`` takes stream SOURCE and
renames it NAME). Samples are joined by id; every input must hold the same ids per split (an error lists the
differences). The streams of one sample must have the same length T (HyperSign's S2T stage pairs them step by
step): the two S2G models of this project both downsample with TemporalConv K5-P2-K5-P2 from the same frame count
in SlowFastSign's padded layout, so both give T' = ceil(frames / 4) and the check passes by construction; a
mismatch is an error naming the sample (``--align truncate`` cuts every stream to the shortest instead, and
counts the samples cut in ``dataset_info.json``). The vocabulary and STM files come from the first input (the
others' vocabularies must be equal).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from data_pipelines import array_record_io, build
from data_pipelines.vocab import GlossVocab

SPLITS = ("train", "dev", "test")
ALIGN = ("error", "truncate")
RECORD_FIELDS = ("id", "split", "signer", "gloss", "text", "num_frames", "frame_size", "dataset")


class MergeError(ValueError):
  """Inputs that cannot be merged (different ids, lengths or vocabularies, a missing stream)."""


def feature_record(source: Mapping, features: Mapping[str, np.ndarray]) -> dict:
  """A feature record: the source record's annotation fields (``RECORD_FIELDS``) + ``features`` (float32)."""
  out = {k: source[k] for k in RECORD_FIELDS if k in source and source[k] is not None}
  out["features"] = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in features.items()}
  return out


def write_feature_dataset(out: str, splits: Mapping[str, tuple[Iterable[dict], int]], vocab_path: str,
                          info: dict, progress: Callable[[str, int], Callable[[int], None] | None] | None = None
                          ) -> dict:
  """Writes a feature dataset directory atomically (a temporary sibling directory, renamed at the end).

  Args:
    out: the directory (replaced if it exists).
    splits: split -> (records, number of records); records are streamed into the shards.
    vocab_path: the ``gloss_vocab.json`` to copy (the source dataset's).
    info: extra fields of ``dataset_info.json`` (``name``, provenance); split statistics are added.
    progress: optional ``(split, total) -> per-record callback`` (e.g. a tqdm bar's ``update``).

  Returns the written ``dataset_info.json`` contents.
  """
  from hypersign_jax.metrics import sclite_files  # pylint: disable=import-outside-toplevel
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".writing-", dir=parent)
  try:
    stats = {}
    for split, (records, count) in splits.items():
      light: list[dict] = []

      def stream(records=records, light=light) -> Iterator[dict]:
        for record in records:
          light.append(build.light_record(record))
          yield record

      callback = progress(split, count) if progress is not None else None
      written = array_record_io.write_split(tmp, split, stream(), count=count, progress=callback)
      if written != count:
        raise ValueError(f"split {split!r}: wrote {written} records, expected {count}")
      sclite_files.write_stm(os.path.join(tmp, f"{split}.stm"),
                             [(r["id"], str(r.get("signer") or "unknown"), r.get("gloss", "")) for r in light])
      stats[split] = build.split_statistics(light, 0)
    shutil.copyfile(vocab_path, os.path.join(tmp, build.VOCAB_FILE))
    vocab = GlossVocab.load_json(vocab_path)
    full = {"name": "features", **info, "splits": stats, "vocab_size": len(vocab), "num_classes": vocab.num_classes,
            "vocab_source": os.path.abspath(vocab_path), "num_shards": 1, "skipped": []}
    full.setdefault("notes", [])
    build.publish(tmp, out, full)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return full


def _parse_stream(text: str) -> tuple[str, str, str]:
  """``NAME=DIR`` or ``NAME=DIR:SOURCE`` -> (name, directory, source stream)."""
  name, sep, rest = text.partition("=")
  if not sep or not name or not rest:
    raise argparse.ArgumentTypeError(f"expected NAME=DIR or NAME=DIR:SOURCE_STREAM, got {text!r}")
  directory, source = rest, name
  if ":" in rest and not os.path.isdir(rest):
    directory, source = rest.rsplit(":", 1)
  return name, directory, source


def merge(inputs: Sequence[tuple[str, str, str]], out: str, *, splits: Sequence[str] | None = None,
          align: str = "error", progress: bool = False) -> dict:
  """Merges single-stream feature datasets ``[(name, directory, source stream), ...]`` into ``out``."""
  if align not in ALIGN:
    raise MergeError(f"align must be one of {ALIGN}, got {align!r}")
  if not inputs:
    raise MergeError("no input streams given")
  names = [name for name, _, _ in inputs]
  if len(set(names)) != len(names):
    raise MergeError(f"stream names must be distinct, got {names}")
  for _, directory, _ in inputs:
    if not os.path.isfile(os.path.join(directory, build.VOCAB_FILE)):
      raise MergeError(f"{directory!r} is not a feature dataset directory (no {build.VOCAB_FILE})")
  vocabs = []
  for _, directory, _ in inputs:
    with open(os.path.join(directory, build.VOCAB_FILE), encoding="utf-8") as f:
      vocabs.append(json.load(f))
  for (_, directory, _), vocab in zip(inputs[1:], vocabs[1:]):
    if vocab != vocabs[0]:
      raise MergeError(f"{directory!r} has a different gloss vocabulary from {inputs[0][1]!r}; the streams must "
                       "come from the same prepared dataset")
  if splits is None:
    splits = [s for s in SPLITS if all(_has_split(d, s) for _, d, _ in inputs)]
    if not splits:
      raise MergeError(f"the inputs have no split in common among {SPLITS}")
  truncated: dict[str, int] = {}
  plan = {}
  for split in splits:
    sources = [array_record_io.RecordSource(d, split) for _, d, _ in inputs]
    plan[split] = (_merged_records(split, inputs, sources, align, truncated), len(sources[0]))

  def bar(split, total):
    from hypersign_jax.training import logging as train_logging  # pylint: disable=import-outside-toplevel
    b = train_logging.progress(total, desc=f"merge {split}", enabled=progress)
    return b.update

  info = {"name": "merged_features",
          "merged_from": {name: {"dir": os.path.abspath(d), "stream": s} for name, d, s in inputs},
          "streams": names, "align": align, "aligned_by_truncation": truncated}
  return write_feature_dataset(out, plan, os.path.join(inputs[0][1], build.VOCAB_FILE), info, progress=bar)


def _has_split(directory: str, split: str) -> bool:
  try:
    array_record_io.shard_paths(directory, split)
  except FileNotFoundError:
    return False
  return True


def _merged_records(split, inputs, sources, align, truncated) -> Iterator[dict]:
  first = sources[0]
  ids = [[str(src[i]["id"]) for i in range(len(src))] for src in sources]
  position = [{sample_id: i for i, sample_id in enumerate(x)} for x in ids]
  for (name, directory, _), x in zip(inputs[1:], ids[1:]):
    if set(x) != set(ids[0]):
      only_first = sorted(set(ids[0]) - set(x))[:5]
      only_this = sorted(set(x) - set(ids[0]))[:5]
      raise MergeError(f"split {split!r}: stream {name!r} ({directory}) has other sample ids than "
                       f"{inputs[0][0]!r} (only in the first: {only_first}, only in this one: {only_this})")
  for i, sample_id in enumerate(ids[0]):
    base = first[i]
    features = {}
    for (name, directory, stream), src, pos in zip(inputs, sources, position):
      record = base if src is first else src[pos[sample_id]]
      feats = record.get("features") or {}
      if stream not in feats:
        raise MergeError(f"sample {sample_id!r} in {directory!r} has no feature stream {stream!r} "
                         f"(it has {sorted(feats)})")
      features[name] = np.asarray(feats[stream], dtype=np.float32)
    lengths = {name: int(v.shape[0]) for name, v in features.items()}
    if len(set(lengths.values())) > 1:
      if align == "error":
        raise MergeError(f"sample {sample_id!r} of split {split!r}: the streams have different lengths {lengths}; "
                         "HyperSign needs equal T per sample (--align truncate cuts them to the shortest)")
      shortest = min(lengths.values())
      features = {name: v[:shortest] for name, v in features.items()}
      truncated[split] = truncated.get(split, 0) + 1
    yield feature_record(base, features)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m data_pipelines.merge_features",
                              description="Merge single-stream feature dataset directories into one multi-stream "
                                          "directory (the S2T input).")
  p.add_argument("--stream", action="append", type=_parse_stream, required=True, metavar="NAME=DIR[:SOURCE]",
                 help="a stream to take: NAME from DIR's records (or SOURCE from DIR, renamed NAME); repeat")
  p.add_argument("--out", required=True)
  p.add_argument("--splits", nargs="+", help="splits to merge (default: those all inputs have)")
  p.add_argument("--align", choices=ALIGN, default="error",
                 help="streams of one sample with different lengths: fail (default) or cut to the shortest")
  p.add_argument("--no-progress", action="store_true")
  args = p.parse_args(argv)
  try:
    info = merge(args.stream, args.out, splits=args.splits, align=args.align,
                 progress=not args.no_progress)
  except (OSError, ValueError) as e:
    print(f"{p.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  sizes = ", ".join(f"{s} {v['num_examples']}" for s, v in info["splits"].items())
  dims = next(iter(info["splits"].values()))["feature_dims"]
  print(f"merged {info['streams']} -> {args.out}: {sizes}; feature dims {dims}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
