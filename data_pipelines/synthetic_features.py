"""STAND-IN per-stream features for the synthetic corpus, until real RGB / keypoint encoders exist.

HyperSign's S2T stage reads pre-extracted features, one (T, 832) sequence per stream per video, produced by two
separately trained S3D recognition models (design/HYPERSIGN.md §1.1; T = floor(min(N, 400) / 4)). The project
has no such encoders yet (issue: two-stream recipe), so this module derives the two streams *deterministically*
from a synthetic record, with no learning at all. They are NOT S3D features; numbers obtained on them say
nothing about the paper's numbers. They only have the right shapes and the right kind of structure for the S2T
model to be exercised end to end:

* temporal length: the first min(N, 400) frames are cut to a multiple of 4 and mean-pooled over windows of 4
  (S3D's temporal stride), so T = floor(min(N, 400) / 4) (at least 1);
* `keypoint`: pose (COCO-WholeBody 0-10) and both hands (91-132) of the record's keypoints, centred and scaled
  by the frame size, plus their frame-to-frame velocities, pooled, then a fixed random projection (seeded) to
  `dim` channels, tanh, plus Gaussian noise;
* `rgb`: the decoded frames block-averaged to 8 x 8 x 3 plus their temporal differences, pooled, then a
  *different* fixed projection, tanh, plus *independent* noise. The two streams see different evidence (hand
  geometry vs. coarse appearance) with independent noise, so combining them can help;
* everything is a pure function of (record, `seed`, `dim`, `noise`): projections are seeded by
  (seed, stream, widths), the noise by (seed, stream, CRC32 of the sample id).

`add_features(record, ...)` returns a record with `features` = {'rgb': (T, dim), 'keypoint': (T, dim)} float32
(frames/keypoints dropped unless kept); `write_features_dataset(out, preset, ...)` writes a prepared dataset
directory of such records (ArrayRecord shards, `gloss_vocab.json`, STM files, `dataset_info.json` with a
`stand_in_features` note) using the build's helpers. CLI::

    python -m data_pipelines.synthetic_features --preset smoke --out workdirs/data/hypersign_synthetic_smoke
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zlib
from typing import Iterator, Sequence

import numpy as np

from data_pipelines import array_record_io, build
from data_pipelines.synthetic import render

STREAM_NAMES = ("rgb", "keypoint")
WINDOW = 4            # S3D temporal stride
MAX_FRAMES = 400      # centre crop length of the original extraction
POSE = tuple(range(0, 11))
HANDS = tuple(range(91, 133))
RGB_GRID = 8          # frames are block-averaged to RGB_GRID x RGB_GRID
DEFAULT_DIM = 64
DEFAULT_NOISE = 0.3
NOTE = ("STAND-IN features derived deterministically from synthetic keypoints/frames by "
        "data_pipelines/synthetic_features.py (fixed random projections + noise), not S3D features")


def _projection(seed: int, stream: str, d_in: int, d_out: int) -> np.ndarray:
  code = STREAM_NAMES.index(stream)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5F, code, d_in, d_out]))
  return (rng.normal(size=(d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)


def _noise(seed: int, stream: str, sample_id: str, shape: tuple[int, ...], scale: float) -> np.ndarray:
  code = STREAM_NAMES.index(stream)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E, code, zlib.crc32(sample_id.encode())]))
  return (scale * rng.normal(size=shape)).astype(np.float32)


def temporal_pool(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
  """(N, F) -> (T, F): the first min(N, 400) frames cut to a multiple of `window`, mean over each window."""
  x = x[:MAX_FRAMES]
  t = len(x) // window
  if t == 0:
    return x.mean(axis=0, keepdims=True)
  return x[:t * window].reshape(t, window, -1).mean(axis=1)


def _with_velocity(x: np.ndarray) -> np.ndarray:
  vel = np.diff(x, axis=0, prepend=x[:1])
  return np.concatenate([x, vel], axis=-1)


def keypoint_input(keypoints: np.ndarray, frame_size: Sequence[int]) -> np.ndarray:
  """(N, 133, 3) pixels -> (N, 2 * 2 * 53) normalised pose + hand coordinates and their velocities."""
  h, w = (float(frame_size[0]), float(frame_size[1])) if frame_size else (1.0, 1.0)
  pts = np.asarray(keypoints, np.float32)[:, list(POSE + HANDS), :2]
  centre = np.array([w / 2, h / 2], np.float32)
  norm = (pts - centre) / (max(h, w) / 2)
  return _with_velocity(norm.reshape(len(norm), -1))


def rgb_input(frames: Sequence[bytes]) -> np.ndarray:
  """Encoded frames -> (N, 2 * 3 * 8 * 8) block-averaged frames in [0, 1] and their temporal differences."""
  out = []
  for data in frames:
    img = render.decode_png(data).astype(np.float32) / 255.0
    h, w, _ = img.shape
    gh, gw = h // RGB_GRID, w // RGB_GRID
    if gh == 0 or gw == 0:
      raise ValueError(f"frames of {h}x{w} pixels are smaller than the {RGB_GRID}x{RGB_GRID} grid")
    img = img[:gh * RGB_GRID, :gw * RGB_GRID].reshape(RGB_GRID, gh, RGB_GRID, gw, 3).mean(axis=(1, 3))
    out.append(img.reshape(-1))
  return _with_velocity(np.stack(out))


def stream_features(record: dict, stream: str, dim: int = DEFAULT_DIM, seed: int = 0,
                    noise: float = DEFAULT_NOISE) -> np.ndarray:
  """One stand-in stream (T, dim) float32 of a synthetic record (see the module docstring)."""
  sample_id = str(record.get("id", "?"))
  if stream == "keypoint":
    if record.get("keypoints") is None:
      raise ValueError(f"sample {sample_id!r} has no keypoints; the 'keypoint' stand-in stream needs them")
    x = keypoint_input(record["keypoints"], record.get("frame_size"))
  elif stream == "rgb":
    if not record.get("frames"):
      raise ValueError(f"sample {sample_id!r} has no frames; the 'rgb' stand-in stream needs them (generate "
                       "the corpus with frames)")
    x = rgb_input(record["frames"])
  else:
    raise ValueError(f"unknown stream {stream!r}; expected one of {STREAM_NAMES}")
  pooled = temporal_pool(x)
  feats = np.tanh(pooled @ _projection(seed, stream, pooled.shape[1], dim))
  return (feats + _noise(seed, stream, sample_id, feats.shape, noise)).astype(np.float32)


def add_features(record: dict, dim: int = DEFAULT_DIM, seed: int = 0, noise: float = DEFAULT_NOISE,
                 keep_inputs: bool = False) -> dict:
  """A copy of `record` with `features` {'rgb', 'keypoint'}; frames and keypoints dropped unless `keep_inputs`."""
  out = dict(record)
  out["features"] = {s: stream_features(record, s, dim, seed, noise) for s in STREAM_NAMES}
  if not keep_inputs:
    out.pop("frames", None)
    out.pop("keypoints", None)
  return out


def write_features_dataset(out: str, preset: str, *, seed: int = 0, dim: int = DEFAULT_DIM,
                           noise: float = DEFAULT_NOISE, resolution: int | None = None,
                           splits: Sequence[str] | None = None) -> dict:
  """Writes a prepared dataset directory of synthetic records with stand-in features (atomically: built in a
  temporary sibling directory, then renamed). Returns its `dataset_info.json` contents."""
  from hypersign_jax.metrics import sclite_files  # pylint: disable=import-outside-toplevel
  source = build.SyntheticSource(preset, seed, resolution, annotations_only=False)
  available = source.available_splits()
  splits = list(splits or available)
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
  try:
    records_by_split: dict[str, list[dict]] = {}
    for split in splits:
      source.check_split(split)
      light: list[dict] = []

      def stream(split=split, light=light) -> Iterator[dict]:
        for record in source.read(split):
          record = add_features(record, dim, seed, noise)
          light.append(build.light_record(record))
          yield record

      array_record_io.write_split(tmp, split, stream(), count=source.count(split))
      records_by_split[split] = light
    vocabulary, vocab_source = build._vocabulary(source, records_by_split, available, None)  # pylint: disable=protected-access
    vocabulary.save_json(os.path.join(tmp, build.VOCAB_FILE))
    for split, records in records_by_split.items():
      sclite_files.write_stm(os.path.join(tmp, f"{split}.stm"),
                             [(r["id"], str(r.get("signer") or "unknown"), r.get("gloss", "")) for r in records])
    info = {
        "name": f"synthetic_{preset}_features",
        "source": {"dataset": "synthetic", "root": None, "annotations_only": False, "preset": preset,
                   "seed": seed, "resolution": resolution},
        "stand_in_features": {"note": NOTE, "streams": list(STREAM_NAMES), "dim": dim, "noise": noise,
                              "window": WINDOW},
        "splits": {s: build.split_statistics(r, 0) for s, r in records_by_split.items()},
        "vocab_size": len(vocabulary),
        "num_classes": vocabulary.num_classes,
        "vocab_source": vocab_source,
        "num_shards": 1,
        "skipped": [],
        "notes": [NOTE],
    }
    build.publish(tmp, out, info)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return info


def ensure_features_dataset(out: str, preset: str, **kwargs) -> None:
  """Builds `out` with `write_features_dataset` unless it already holds a prepared dataset."""
  if not os.path.isfile(os.path.join(out, build.INFO_FILE)):
    write_features_dataset(out, preset, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m data_pipelines.synthetic_features",
                              description="Write a synthetic dataset directory with STAND-IN rgb/keypoint "
                                          "features (not S3D features).")
  p.add_argument("--preset", default="smoke")
  p.add_argument("--out", required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dim", type=int, default=DEFAULT_DIM)
  p.add_argument("--noise", type=float, default=DEFAULT_NOISE)
  p.add_argument("--resolution", type=int)
  args = p.parse_args(argv)
  try:
    info = write_features_dataset(args.out, args.preset, seed=args.seed, dim=args.dim, noise=args.noise,
                                  resolution=args.resolution)
  except (OSError, ValueError) as e:
    print(f"{p.prog}: error: {e}", file=sys.stderr)
    return 2
  sizes = ", ".join(f"{s} {v['num_examples']}" for s, v in info["splits"].items())
  print(f"{info['name']} -> {args.out}: {sizes}; streams {info['stand_in_features']['streams']} x {args.dim} "
        f"(stand-ins)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
