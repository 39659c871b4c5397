"""``python -m data_pipelines.build``: a dataset (official layout or synthetic) -> a prepared dataset directory.

Usage::

    python -m data_pipelines.build --dataset phoenix2014t --root /data/PHOENIX-2014-T --out prepared/p14t
    python -m data_pipelines.build --dataset synthetic --preset smoke --out prepared/synthetic
    python -m data_pipelines.build --dataset slowfastsign --root preprocess/phoenix2014-T \
        --frame-root /data/PHOENIX-2014-T/features/fullFrame-256x256px --out prepared/p14t_sfs
    python -m data_pipelines.build --dataset slrt --annotations data/phoenix-2014t/phoenix-2014t_cleaned.{split} \
        --features head_rgb_input=feats/head_rgb_input/{split}.pkl --out prepared/p14t_feats

Writes into OUT (layout in ``array_record_io.py``): per split ``<split>.array_record-*`` shards (records in the
source's order) and ``<split>.stm`` references; ``gloss_vocab.json`` ({gloss: [index, count]}, blank = 0, glosses
in Python-sorted order counted over all splits, as SlowFastSign's ``gloss_dict.npy``; or the vocabulary given with
``--vocab``, or the preprocess directory's own ``gloss_dict.npy``); ``dataset_info.json`` (name, splits and sizes,
vocabulary size, statistics, skipped samples, notes); for the synthetic corpus also
``corpus/<name>.<split>.corpus.csv`` in the PHOENIX-2014-T layout. Prints a summary (sentences per split,
vocabulary size, frames min/median/max).

Errors a user can cause (missing path, wrong layout, bad frame, unknown gloss) end the CLI with a one-line message
and exit code 2. ``--skip-bad-frames`` skips samples with unreadable frames instead; they are counted in the
summary and listed in ``dataset_info.json``.

Memory: each split is streamed into its shards; only annotations and sizes of the samples are kept in memory.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import shutil
import statistics
import sys
from typing import Any, Iterable, Iterator, Sequence

from data_pipelines import array_record_io
from data_pipelines import corpus_csv
from data_pipelines import readers
from data_pipelines.vocab import GlossVocab, UnknownGlossError

DATASETS = ("synthetic", "phoenix2014", "phoenix2014t", "csl_daily", "slowfastsign", "slrt")
SYNTHETIC_MODULE = "data_pipelines.synthetic.corpus"
INFO_FILE = "dataset_info.json"
VOCAB_FILE = "gloss_vocab.json"


class BuildError(ValueError):
  """A user-caused problem found by the build itself (not by a reader)."""


# --- sources ----------------------------------------------------------------------------------------------------


class SyntheticSource:
  """The synthetic corpus (``data_pipelines.synthetic.corpus``) behind the reader interface."""

  name = "synthetic"

  def __init__(self, preset: str | None, seed: int, resolution: int | None, annotations_only: bool,
               workers: int = 1):
    try:
      self.module = importlib.import_module(SYNTHETIC_MODULE)
    except ImportError as e:
      raise BuildError(f"the synthetic corpus module {SYNTHETIC_MODULE} cannot be imported ({e})") from e
    presets = list(self.module.PRESETS)
    if preset is None:
      preset = "smoke" if "smoke" in presets else presets[0]
    if preset not in presets:
      raise BuildError(f"unknown synthetic preset {preset!r}; known: {presets}")
    self.preset, self.seed, self.resolution = preset, seed, resolution
    self.annotations_only = annotations_only
    self.workers = int(workers)
    self.notes: list[str] = []
    self.skipped: list[tuple[str, str, str]] = []

  def available_splits(self) -> tuple[str, ...]:
    return tuple(self.module.SPLITS)

  def check_split(self, split: str) -> None:
    if split not in self.available_splits():
      raise BuildError(f"the synthetic corpus has no split {split!r} (splits: {list(self.available_splits())})")

  def count(self, split: str) -> int | None:
    preset = self.module.PRESETS[self.preset]
    return preset.size(split) if hasattr(preset, "size") else None

  def gloss_strings(self, split: str) -> Iterator[str]:
    for r in self.module.generate_split(self.preset, split, seed=self.seed, resolution=self.resolution,
                                        with_frames=False):
      yield r.get("gloss", "")

  def read(self, split: str) -> Iterator[dict]:
    self.check_split(split)
    for r in self.module.generate_split(self.preset, split, seed=self.seed, resolution=self.resolution,
                                        with_frames=not self.annotations_only, workers=self.workers):
      r = dict(r)
      r.setdefault("split", split)
      r.setdefault("dataset", self.name)
      if self.annotations_only:
        r.pop("frames", None)
      yield r


class ReaderSource:
  """A registered reader (``data_pipelines.readers``) with the extras the build needs."""

  def __init__(self, reader: readers.DatasetReader):
    self.reader = reader
    self.name = reader.name
    self.notes = reader.notes
    self.skipped = reader.skipped

  def available_splits(self) -> tuple[str, ...]:
    return self.reader.available_splits()

  def check_split(self, split: str) -> None:
    self.reader.check_split(split)

  def count(self, split: str) -> int | None:
    return len(self.reader.samples(split))

  def gloss_strings(self, split: str) -> Iterator[str]:
    for s in self.reader.samples(split):
      yield s.gloss

  def read(self, split: str) -> Iterator[dict]:
    return self.reader.read(split)


def make_source(dataset: str, root: str | None, *, annotations_only: bool = False, skip_bad_frames: bool = False,
                preset: str | None = None, seed: int = 0, resolution: int | None = None, workers: int = 1,
                **reader_options: Any):
  if int(workers) < 1:
    raise BuildError(f"--workers must be >= 1, got {workers}")
  if dataset == "synthetic":
    return SyntheticSource(preset, seed, resolution, annotations_only, workers)
  if int(workers) != 1:
    raise BuildError(f"--workers renders the synthetic corpus in parallel; {dataset} is read with one process")
  if dataset not in readers.READERS:
    raise BuildError(f"unknown dataset {dataset!r}; known: {list(DATASETS)}")
  if root is None and dataset != "slrt":
    raise BuildError(f"--root is required for --dataset {dataset}")
  options = {k: v for k, v in reader_options.items() if v is not None}
  reader = readers.get_reader(dataset, root, annotations_only=annotations_only, skip_bad_frames=skip_bad_frames,
                              **options)
  return ReaderSource(reader)


# --- statistics -------------------------------------------------------------------------------------------------


def _summary(values: Sequence[float]) -> dict | None:
  if not values:
    return None
  return {"min": min(values), "median": statistics.median(values), "max": max(values),
          "mean": round(statistics.fmean(values), 3)}


def light_record(record: dict) -> dict:
  """What the build keeps of a record after writing it: annotations and sizes, no frames/arrays (bounded memory)."""
  light = {k: record[k] for k in ("id", "split", "signer", "gloss", "text", "num_frames", "frame_size")
           if k in record}
  light["has_frames"] = bool(record.get("frames"))
  light["has_keypoints"] = record.get("keypoints") is not None
  light["feature_dims"] = {name: int(v.shape[1]) for name, v in (record.get("features") or {}).items()}
  return light


def split_statistics(records: Sequence[dict], num_skipped: int) -> dict:
  """Statistics of a split from its light records (see ``light_record``)."""
  frames = [r["num_frames"] for r in records if r.get("num_frames") is not None]
  glosses = [len(r.get("gloss", "").split()) for r in records]
  sizes = collections.Counter(tuple(r["frame_size"]) for r in records if r.get("frame_size") is not None)
  features = {}
  for r in records:
    for stream, dim in r["feature_dims"].items():
      features.setdefault(stream, dim)
  return {
      "num_examples": len(records),
      "num_skipped": num_skipped,
      "num_frames": _summary(frames),
      "num_frames_known": len(frames),
      "with_frames": sum(1 for r in records if r["has_frames"]),
      "glosses_per_sentence": _summary(glosses),
      "total_glosses": sum(glosses),
      "with_text": sum(1 for r in records if r.get("text")),
      "signers": sorted({str(r.get("signer", "unknown")) for r in records}),
      "frame_sizes": {f"{h}x{w}": n for (h, w), n in sizes.most_common()},
      "feature_dims": features,
      "with_keypoints": sum(1 for r in records if r["has_keypoints"]),
  }


# --- the build --------------------------------------------------------------------------------------------------


def _progress(total: int | None, desc: str, enabled: bool):
  from tqdm import tqdm  # local: only the CLI shows progress
  return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, leave=False)


def build_dataset(dataset: str, root: str | None, out: str, *, splits: Sequence[str] | None = None,
                  annotations_only: bool = False, num_shards: int = 1, skip_bad_frames: bool = False,
                  vocab: str | None = None, preset: str | None = None, seed: int = 0,
                  resolution: int | None = None, progress: bool = False, workers: int = 1,
                  **reader_options: Any) -> dict:
  """Builds the prepared dataset directory ``out``; returns the contents of its ``dataset_info.json``."""
  from hypersign_jax.metrics import sclite_files  # the STM writer lives with the scorer that reads it

  if num_shards < 1:
    raise BuildError(f"--num-shards must be >= 1, got {num_shards}")
  source = make_source(dataset, root, annotations_only=annotations_only, skip_bad_frames=skip_bad_frames,
                       preset=preset, seed=seed, resolution=resolution, workers=workers, **reader_options)
  available = source.available_splits()
  if not available:
    raise BuildError(f"no splits found for {dataset} under {root!r}")
  splits = list(splits or available)
  for split in splits:
    source.check_split(split)

  # Each split is streamed into its shards (frames never all in memory); only light records are kept for the
  # vocabulary, the checks, the STM/CSV files and the statistics.
  os.makedirs(out, exist_ok=True)
  given_vocab = vocab is not None or getattr(getattr(source, "reader", None), "gloss_dict_path", None) is not None
  records_by_split: dict[str, list[dict]] = {}
  num_skipped: dict[str, int] = {}
  for split in splits:
    before = len(source.skipped)
    bar = _progress(source.count(split), split, progress)
    light: list[dict] = []

    def stream(split=split, light=light):
      for record in source.read(split):
        light.append(light_record(record))
        yield record

    array_record_io.write_split(out, split, stream(), num_shards=num_shards, progress=bar.update,
                                count=source.count(split))
    bar.close()
    num_skipped[split] = len(source.skipped) - before
    try:
      if not light:
        raise BuildError(f"split {split!r} of {dataset} has no samples"
                         + (f" ({num_skipped[split]} skipped for bad frames)" if num_skipped[split] else ""))
      ids = collections.Counter(r["id"] for r in light)
      dupes = [i for i, n in ids.items() if n > 1]
      if dupes:
        raise BuildError(f"split {split!r} has duplicate sample ids: {dupes[:10]}")
    except BuildError:
      for path in array_record_io.shard_paths(out, split):
        os.remove(path)
      raise
    records_by_split[split] = light

  vocabulary, vocab_source = _vocabulary(source, records_by_split, available, vocab)
  if given_vocab:
    for split, records in records_by_split.items():
      try:
        vocabulary.check_records(records)
      except UnknownGlossError as e:
        for path in array_record_io.shard_paths(out, split):
          os.remove(path)
        e.args = (f"split {split!r}: {e} (vocabulary: {vocab_source})",)
        raise

  vocabulary.save_json(os.path.join(out, VOCAB_FILE))
  info_splits = {}
  for split, records in records_by_split.items():
    sclite_files.write_stm(os.path.join(out, f"{split}.stm"),
                           [(r["id"], str(r.get("signer") or "unknown"), r.get("gloss", "")) for r in records])
    if dataset == "synthetic":
      corpus_csv.write_corpus_csv(os.path.join(out, "corpus", f"{source.name}.{split}.corpus.csv"), records)
    info_splits[split] = split_statistics(records, num_skipped[split])

  info = {
      "name": source.name,
      "source": {"dataset": dataset, "root": os.path.abspath(root) if root else None,
                 "annotations_only": annotations_only,
                 **({"preset": source.preset, "seed": seed, "resolution": resolution} if dataset == "synthetic"
                    else {})},
      "splits": info_splits,
      "vocab_size": len(vocabulary),
      "num_classes": vocabulary.num_classes,
      "vocab_source": vocab_source,
      "num_shards": num_shards,
      "skipped": [{"split": s, "id": i, "reason": why} for s, i, why in source.skipped],
      "notes": list(source.notes),
  }
  write_info(out, info)
  return info


def write_info(directory: str, info: dict) -> None:
  """Writes ``dataset_info.json`` (UTF-8, indented) into a prepared dataset directory."""
  with open(os.path.join(directory, INFO_FILE), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2, ensure_ascii=False)
    f.write("\n")


def publish(tmp: str, out: str, info: dict) -> None:
  """Writes ``info`` into the finished temporary directory ``tmp`` and moves it to ``out`` (replacing it)."""
  write_info(tmp, info)
  if os.path.isdir(out):
    shutil.rmtree(out)
  os.replace(tmp, out)


def _vocabulary(source, records_by_split: dict[str, list[dict]], available: Iterable[str],
                vocab: str | None) -> tuple[GlossVocab, str]:
  if vocab is not None:
    return GlossVocab.load(vocab), os.path.abspath(vocab)
  gloss_dict = getattr(getattr(source, "reader", None), "gloss_dict_path", None)
  if gloss_dict is not None:
    return GlossVocab.from_gloss_dict_npy(gloss_dict), os.path.abspath(gloss_dict)
  strings: list[str] = []
  used = []
  for split in available:
    if split in records_by_split:
      strings.extend(r.get("gloss", "") for r in records_by_split[split])
    else:
      strings.extend(source.gloss_strings(split))
    used.append(split)
  return GlossVocab.from_gloss_strings(strings), f"built from the glosses of {'+'.join(used)}"


def format_summary(info: dict, out: str) -> str:
  """The printed summary: sentences per split, vocabulary size, frames min/median/max."""
  lines = [f"{info['name']} -> {out}"]
  lines.append(f"  {'split':<6} {'sentences':>9} {'skipped':>7}  frames min/median/max")
  for split, s in info["splits"].items():
    nf = s["num_frames"]
    frames = "n/a" if nf is None else f"{nf['min']}/{nf['median']:g}/{nf['max']}"
    if nf is not None and s["num_frames_known"] < s["num_examples"]:
      frames += f" (known for {s['num_frames_known']})"
    lines.append(f"  {split:<6} {s['num_examples']:>9} {s['num_skipped']:>7}  {frames}")
  lines.append(f"  vocabulary: {info['vocab_size']} glosses (num_classes {info['num_classes']} with blank = 0; "
               f"{info['vocab_source']})")
  for note in info["notes"]:
    lines.append(f"  note: {note}")
  if info["skipped"]:
    lines.append(f"  skipped {len(info['skipped'])} sample(s) with bad frames (listed in {INFO_FILE}):")
    lines.extend(f"    {s['split']} {s['reason']}" for s in info["skipped"][:10])
  return "\n".join(lines)


# --- CLI --------------------------------------------------------------------------------------------------------


def _stream_pattern(text: str) -> tuple[str, str]:
  stream, sep, pattern = text.partition("=")
  if not sep or not stream or not pattern:
    raise argparse.ArgumentTypeError(f"expected STREAM=PATTERN, got {text!r}")
  return stream, pattern


class _Parser(argparse.ArgumentParser):
  """Usage errors as one line (exit code 2), like every other CLI error here."""

  def error(self, message: str):
    self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = _Parser(prog="python -m data_pipelines.build",
                              description="Build a prepared dataset directory (ArrayRecord shards, vocabulary, STM).")
  p.add_argument("--dataset", required=True, choices=DATASETS)
  p.add_argument("--root", help="dataset root in its official layout (not needed for synthetic)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--splits", nargs="+", help="splits to build (default: all the source has)")
  p.add_argument("--annotations-only", action="store_true", help="records without frames")
  p.add_argument("--num-shards", type=int, default=1)
  p.add_argument("--skip-bad-frames", action="store_true",
                 help="skip (and count) samples with missing/unreadable frames instead of failing")
  p.add_argument("--frame-check", choices=readers.FRAME_CHECKS, default="decode",
                 help="decode every frame (default) or only parse image headers")
  p.add_argument("--vocab", help="use this vocabulary (gloss_vocab.json or gloss_dict.npy); unknown glosses fail")
  p.add_argument("--no-progress", action="store_true")
  g = p.add_argument_group("synthetic")
  g.add_argument("--preset", help="synthetic corpus preset (smoke, demo, ...)")
  g.add_argument("--seed", type=int, default=0)
  g.add_argument("--resolution", type=int, help="synthetic frame size in pixels")
  g.add_argument("--workers", type=int, default=1,
                 help="render the synthetic corpus in this many processes (the same records)")
  g = p.add_argument_group("official layouts")
  g.add_argument("--frame-dir", default="auto",
                 help="frame folder name (PHOENIX: fullFrame-210x260px / fullFrame-256x256px; CSL-Daily: "
                      "frames_512x512 / frames_256x256); default: the first that exists")
  g.add_argument("--keep-broken-rows", action="store_true",
                 help="phoenix2014: keep the train row SlowFastSign's preprocessing drops")
  g.add_argument("--annotation-pkl", help="csl_daily: read labels from this csl2020ct_v2.pkl (trusted file)")
  g.add_argument("--split-file", help="csl_daily: split file (default sentence_label/split_1.txt)")
  g = p.add_argument_group("slowfastsign / slrt files")
  g.add_argument("--frame-root", help="slowfastsign: directory the info files' 'folder' globs are relative to")
  g.add_argument("--dataset-name", help="slowfastsign/slrt: name stored in the records (e.g. phoenix2014t)")
  g.add_argument("--annotations", help="slrt: annotation pickle path pattern with {split} (trusted files)")
  g.add_argument("--features", nargs="+", type=_stream_pattern, metavar="STREAM=PATTERN",
                 help="slrt: feature pickle path pattern per stream, with {split} (trusted files)")
  g.add_argument("--keypoints", help="slrt: keypoint pickle (trusted file)")
  return p.parse_args(argv)


def _reader_options(args: argparse.Namespace) -> dict:
  per_dataset = {
      "phoenix2014": {"frame_dir": args.frame_dir, "keep_broken_rows": args.keep_broken_rows},
      "phoenix2014t": {"frame_dir": args.frame_dir},
      "csl_daily": {"frame_dir": args.frame_dir, "annotation_pkl": args.annotation_pkl,
                    "split_file": args.split_file},
      "slowfastsign": {"frame_root": args.frame_root, "dataset_name": args.dataset_name},
      "slrt": {"annotations": args.annotations, "features": dict(args.features or []),
               "keypoints": args.keypoints, "dataset_name": args.dataset_name},
  }
  options = per_dataset.get(args.dataset, {})
  if args.dataset in readers.READERS and args.dataset != "slrt":
    options["frame_check"] = args.frame_check
  return options


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    info = build_dataset(
        args.dataset, args.root, args.out, splits=args.splits, annotations_only=args.annotations_only,
        num_shards=args.num_shards, skip_bad_frames=args.skip_bad_frames, vocab=args.vocab, preset=args.preset,
        seed=args.seed, resolution=args.resolution, progress=not args.no_progress and sys.stderr.isatty(),
        workers=args.workers, **_reader_options(args))
  except (OSError, ValueError, ImportError) as e:
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"python -m data_pipelines.build: error: {message}", file=sys.stderr)
    return 2
  print(format_summary(info, args.out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
