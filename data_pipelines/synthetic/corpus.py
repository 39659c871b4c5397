"""The built-in synthetic signing corpus: presets, record generation and corpus statistics.

No part of SlowFastSign or HyperSign; it replaces the licensed PHOENIX-2014(-T) videos on machines that cannot
download them (docs: ARCHITECTURE.md section 4). Each record follows ``data_pipelines.records``: a gloss sentence
from ``grammar``, its rule-based translation, keypoints from the procedural ``signer`` and PNG frames from
``render``. Everything is a pure function of (preset, split, seed, index): records can be generated one at a
time, in any order, and are byte-identical across runs.

Signers ``Signer01 .. SignerNN``: the last ``heldout_signers`` of a preset never sign a training sentence; a
``heldout_share`` of the dev/test sentences is signed by them (signer-independent evaluation), the rest by the
training signers (signer-dependent, as in PHOENIX).

Detector failures: in the ``demo`` preset the keypoint detector loses both arms in spans covering about 10 % of
the frames (``signer.Timing.arm_miss_rate``) while the frames still show them, so neither stream carries all the
information (the RGB stream's hands are a few pixels wide): the setting where fusing the two streams pays
(docs/benchmarks.md). ``smoke`` and ``full`` have no such spans.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import multiprocessing
from concurrent import futures
from typing import Iterable, Iterator

import numpy as np

from data_pipelines.synthetic import grammar as gr
from data_pipelines.synthetic import render as rd
from data_pipelines.synthetic import signer as sg

SPLITS = ("train", "dev", "test")
DATASET = "synthetic"


@dataclasses.dataclass(frozen=True)
class Preset:
  """Sizes and generation settings of one corpus preset."""
  name: str
  train: int
  dev: int
  test: int
  categories: tuple[tuple[str, int], ...]  # glosses per grammar category (see grammar.CATEGORY_GLOSSES)
  resolution: int  # frames are resolution x resolution pixels
  num_signers: int
  heldout_signers: int  # the last k signers appear only in dev/test
  heldout_share: float  # fraction of dev/test sentences signed by held-out signers
  min_glosses: int
  max_glosses: int
  timing: sg.Timing
  signer_variation: float = 1.0
  left_handed_fraction: float = 0.0

  def size(self, split: str) -> int:
    return {"train": self.train, "dev": self.dev, "test": self.test}[_check_split(split)]

  @property
  def vocabulary_size(self) -> int:
    return sum(n for _, n in self.categories)

  def signer_names(self, split: str) -> list[str]:
    """Names of the signers that can appear in ``split``."""
    names = [f"Signer{i:02d}" for i in range(1, self.num_signers + 1)]
    if _check_split(split) == "train" and self.heldout_signers:
      return names[:-self.heldout_signers]
    return names


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", train=24, dev=8, test=8,
        categories=(("time", 2), ("region", 2), ("quant", 1), ("noun", 3), ("adj", 1), ("verb", 2), ("neg", 1)),
        resolution=32, num_signers=4, heldout_signers=1, heldout_share=0.5, min_glosses=2, max_glosses=5,
        timing=sg.Timing(sign_frames=(4, 7), transition_frames=(1, 2), rest_frames=(1, 3))),
    "demo": Preset(
        name="demo", train=2000, dev=200, test=200,
        categories=(("time", 10), ("region", 12), ("quant", 3), ("noun", 14), ("adj", 12), ("verb", 12),
                    ("neg", 1), ("conj", 1), ("temp", 3), ("num", 8)),
        resolution=64, num_signers=10, heldout_signers=2, heldout_share=0.5, min_glosses=2, max_glosses=9,
        timing=sg.Timing(sign_frames=(6, 11), transition_frames=(2, 3), rest_frames=(3, 6), rest_probability=0.9,
                         arm_miss_rate=0.12)),
    "full": Preset(
        name="full", train=7000, dev=500, test=500,
        categories=tuple((c, len(g)) for c, g in gr.CATEGORY_GLOSSES.items()),
        resolution=112, num_signers=12, heldout_signers=3, heldout_share=0.5, min_glosses=2, max_glosses=11,
        timing=sg.Timing(sign_frames=(7, 14), transition_frames=(2, 4), rest_frames=(2, 6), noise=0.005),
        signer_variation=1.2, left_handed_fraction=0.1),
}


def _check_split(split: str) -> str:
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  return split


def get_preset(preset: str | Preset) -> Preset:
  if isinstance(preset, Preset):
    return preset
  if preset not in PRESETS:
    raise ValueError(f"unknown synthetic preset {preset!r}; known presets: {sorted(PRESETS)}")
  return PRESETS[preset]


def gloss_vocabulary(preset: str, seed: int = 0) -> list[str]:
  """All glosses of the preset's grammar (the same for every seed: the seed changes motions and sentences)."""
  del seed
  return gr.build_vocabulary(get_preset(preset).categories)


def grammar_of(preset: str | Preset) -> gr.Grammar:
  p = get_preset(preset)
  return gr.Grammar(tuple(gr.build_vocabulary(p.categories)), p.min_glosses, p.max_glosses)


@functools.lru_cache(maxsize=8)
def motions(seed: int) -> dict[str, sg.GlossMotion]:
  """The motion of every gloss of the lexicon for corpus seed ``seed`` (shared by all presets)."""
  return sg.motion_bank(gr.LEXICON, seed)


def signers(preset: str | Preset, seed: int = 0) -> list[sg.SignerStyle]:
  p = get_preset(preset)
  return [sg.sample_signer(i, seed, p.left_handed_fraction, p.signer_variation)
          for i in range(1, p.num_signers + 1)]


def generate_split(preset: str, split: str, seed: int = 0, resolution: int | None = None,
                   with_frames: bool = True, workers: int = 1) -> Iterator[dict]:
  """Yields the records of one split (see ``data_pipelines.records``) in id order.

  ``resolution`` overrides the preset's frame size (keypoints are in pixels of the frame, so they scale with it);
  ``with_frames=False`` skips rendering (the other fields are unchanged); ``workers > 1`` renders chunks of records
  in that many processes (the records, and their order, are the same).
  """
  p = get_preset(preset)
  _check_split(split)
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
  res = int(resolution or p.resolution)
  if res < 16:
    raise ValueError(f"resolution must be at least 16 pixels, got {res}")
  if int(workers) < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  n = p.size(split)
  if int(workers) == 1 or n <= _CHUNK:
    yield from _records(p, split, int(seed), res, with_frames, 0, n)
    return
  yield from _generate_in_processes(p, split, int(seed), res, with_frames, n, int(workers))


_CHUNK = 25  # records per task of a worker process


@functools.lru_cache(maxsize=4)
def _split_context(p: Preset, seed: int):
  """What every record of a (preset, seed) draws from: the grammar, the gloss motions, seen / held-out signers."""
  styles = signers(p, seed)
  return (grammar_of(p), motions(seed), styles[:p.num_signers - p.heldout_signers],
          styles[p.num_signers - p.heldout_signers:])


def _records(p: Preset, split: str, seed: int, res: int, with_frames: bool, start: int, stop: int) -> list[dict]:
  """Records ``start .. stop - 1`` of a split (each a pure function of its index)."""
  grammar, bank, seen, heldout = _split_context(p, seed)
  size = (res, res)
  split_index = SPLITS.index(split)
  out = []
  for i in range(start, stop):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0, split_index, i]))
    glosses = grammar.sample(rng)
    if split != "train" and heldout and rng.random() < p.heldout_share:
      style = heldout[int(rng.integers(len(heldout)))]
    else:
      style = seen[int(rng.integers(len(seen)))]
    perf = sg.perform(glosses, bank, style, p.timing, size, rng)
    record = {
        "id": f"synth-{split}-{i:06d}",
        "split": split,
        "signer": style.name,
        "gloss": " ".join(glosses),
        "text": gr.translate(glosses),
        "num_frames": int(len(perf.keypoints)),
        "keypoints": perf.keypoints,
        "frame_size": size,
        "dataset": DATASET,
    }
    if with_frames:
      frames = rd.render_clip(perf.clean, style, size)
      record["frames"] = [rd.encode_png(f) for f in frames]
    out.append(record)
  return out


def _generate_in_processes(p: Preset, split: str, seed: int, res: int, with_frames: bool, n: int,
                           workers: int) -> Iterator[dict]:
  """``_records`` over chunks in ``workers`` spawned processes, yielded in order, at most 2 chunks per worker
  in flight (so a slow consumer does not pile the whole split up in memory)."""
  starts = iter(range(0, n, _CHUNK))
  with futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
    queue: collections.deque = collections.deque()

    def submit():  # the next chunk, if any is left
      start = next(starts, None)
      if start is not None:
        queue.append(pool.submit(_records, p, split, seed, res, with_frames, start, min(start + _CHUNK, n)))

    for _ in range(2 * workers):
      submit()
    while queue:
      chunk = queue.popleft().result()
      submit()
      yield from chunk


def _summary(values: list[int]) -> dict[str, float]:
  if not values:
    return {"min": 0, "median": 0.0, "max": 0}
  return {"min": int(min(values)), "median": float(np.median(values)), "max": int(max(values))}


def corpus_statistics(records: Iterable[dict]) -> dict:
  """Sentence count, gloss vocabulary used, glosses and frames per sentence (min/median/max), signers."""
  n = 0
  vocab: set[str] = set()
  words: set[str] = set()
  lengths, frames = [], []
  per_signer: dict[str, int] = {}
  for r in records:
    n += 1
    glosses = r.get("gloss", "").split()
    vocab.update(glosses)
    words.update(r.get("text", "").split())
    lengths.append(len(glosses))
    frames.append(int(r.get("num_frames", 0)))
    name = r.get("signer", "unknown")
    per_signer[name] = per_signer.get(name, 0) + 1
  return {
      "sentences": n,
      "vocabulary": len(vocab),
      "glosses": sorted(vocab),
      "text_vocabulary": len(words),
      "glosses_per_sentence": _summary(lengths),
      "frames": _summary(frames),
      "signers": sorted(per_signer),
      "sentences_per_signer": dict(sorted(per_signer.items())),
  }
