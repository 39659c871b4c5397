"""Throughput of CTC decoding: prefix beam search (NumPy) and greedy (jitted jnp), in utterances per second.

Setting of SlowFastSign's evaluation: beam 10, blank 0, ctcdecode's cutoff_top_n 40, ~1k classes
(PHOENIX-2014 has 1296), T' = 100 frames after the 4x temporal downsampling. Inputs are softmax probabilities of
random logits at two temperatures: "flat" (many competitive classes, the slow case) and "peaked" (a trained
model's typical output: one class dominates most frames).

  PYTHONPATH=. .venv/bin/python benchmarks/ctc_decode.py [--classes 1000] [--frames 100] [--batch 32]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from hypersign_jax.decoding import ctc


def _inputs(rng, batch, frames, classes, scale):
  logits = rng.normal(size=(batch, frames, classes)) * scale
  logits[..., 0] += scale  # blank is frequent, as in trained CSLR models
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _time(fn, repeats):
  fn()  # warm-up (jit compile for greedy)
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--classes', type=int, default=1000)
  parser.add_argument('--frames', type=int, default=100)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--beam', type=int, default=ctc.DEFAULT_BEAM_WIDTH)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  lengths = np.full((args.batch,), args.frames)
  print(f'C={args.classes} T={args.frames} B={args.batch} beam={args.beam} cutoff_top_n={ctc.DEFAULT_CUTOFF_TOP_N} '
        f'backend={jax.default_backend()}')
  for name, scale in (('flat', 0.5), ('peaked', 4.0)):
    probs = _inputs(rng, args.batch, args.frames, args.classes, scale)
    sec = _time(lambda: ctc.beam_search_decode(probs, lengths, beam_width=args.beam), args.repeats)
    print(f'prefix beam search ({name:6s}): {args.batch / sec:8.1f} utt/s  ({1e3 * sec / args.batch:.2f} ms/utt)')
  x, lens = jnp.asarray(probs), jnp.asarray(lengths)
  sec = _time(lambda: jax.block_until_ready(ctc.greedy_decode(x, lens)), args.repeats)
  print(f'greedy (jit, batch {args.batch}):    {args.batch / sec:8.1f} utt/s  ({1e3 * sec / args.batch:.3f} ms/utt)')


if __name__ == '__main__':
  main()
