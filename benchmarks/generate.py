"""Beam-search throughput: our jitted JAX beam search vs HF PyTorch `generate` on the same mBART weights.

  python benchmarks/generate.py [--batch 16] [--beams 5] [--max-length 60] [--d-model 256] [--layers 3] [--vocab 2500]

A random mBART (HF `MBartForConditionalGeneration`, eager attention, float32) is converted to our Flax model with
`checkpoints_conversion.hf_mbart`; both decode the same random source batch with HyperSign's settings (num_beams,
length_penalty 1, max_length counting the start token, decoding from the language token only). The outputs are
asserted identical token for token, then each side is timed over `--repeats` runs (ours after one compile run) and
sentences/s and the ratio are printed. The EOS logit bias makes hypotheses end at realistic lengths.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PAD, EOS, LANG = 1, 2, 6


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--beams", type=int, default=5)
  p.add_argument("--max-length", type=int, default=60)
  p.add_argument("--src-length", type=int, default=16)
  p.add_argument("--d-model", type=int, default=256)
  p.add_argument("--layers", type=int, default=3)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--vocab", type=int, default=2500)
  p.add_argument("--eos-bias", type=float, default=4.5)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
  args = p.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import torch
  import transformers
  from flax import nnx

  from checkpoints_conversion import hf_mbart
  from hypersign_jax.decoding import beam_search
  from hypersign_jax.models import mbart

  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  hf_cfg = transformers.MBartConfig(
      vocab_size=args.vocab, d_model=args.d_model, encoder_layers=args.layers, decoder_layers=args.layers,
      encoder_attention_heads=args.heads, decoder_attention_heads=args.heads, encoder_ffn_dim=4 * args.d_model,
      decoder_ffn_dim=4 * args.d_model, max_position_embeddings=max(128, args.max_length + 2), pad_token_id=PAD,
      bos_token_id=0, eos_token_id=EOS, decoder_start_token_id=LANG, forced_eos_token_id=None, dropout=0.0)
  hf_cfg._attn_implementation = "eager"  # pylint: disable=protected-access
  hf = transformers.MBartForConditionalGeneration(hf_cfg).eval()
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, prm in list(hf.named_parameters()) + list(hf.named_buffers()):
      if "norm" in name:
        continue
      prm.copy_(torch.randn(prm.shape, generator=gen) * (0.1 if "embed" in name or "shared" in name else 0.08))
    hf.final_logits_bias[0, EOS] += args.eos_bias
  ours = mbart.MBartForConditionalGeneration(mbart.MBartConfig.from_hf(hf_cfg), rngs=nnx.Rngs(0))
  hf_mbart.load_into(ours, hf_mbart.convert(hf.state_dict(), ours.config))
  ours.eval()

  rng = np.random.default_rng(0)
  lengths = rng.integers(args.src_length // 2, args.src_length + 1, size=args.batch)
  mask = (np.arange(args.src_length)[None] < lengths[:, None]).astype(np.int64)
  src = np.where(mask, rng.integers(30, args.vocab, size=mask.shape), PAD)
  src[np.arange(args.batch), lengths - 1] = LANG
  src[np.arange(args.batch), lengths - 2] = EOS

  cfg = beam_search.BeamSearchConfig(start_token_id=LANG, max_length=args.max_length, num_beams=args.beams,
                                     length_penalty=1.0, eos_token_id=EOS, pad_token_id=PAD)

  @nnx.jit
  def ours_generate(model, ids, m):
    enc = model.encode(ids, m)
    return beam_search.generate(model, enc, m, cfg)[0]

  def run_ours():
    return np.asarray(jax.block_until_ready(ours_generate(ours, jnp.asarray(src), jnp.asarray(mask))))

  def run_hf():
    with torch.no_grad():
      out = hf.generate(input_ids=torch.tensor(src), attention_mask=torch.tensor(mask),
                        decoder_input_ids=torch.full((args.batch, 1), LANG), max_length=args.max_length,
                        num_beams=args.beams, length_penalty=1.0, do_sample=False, early_stopping=False,
                        no_repeat_ngram_size=0, min_length=0, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=0,
                        decoder_start_token_id=LANG)
    return out.numpy()

  t0 = time.perf_counter()
  first = run_ours()
  compile_s = time.perf_counter() - t0
  ref = run_hf()
  width = ref.shape[1]
  if not (np.array_equal(first[:, :width], ref) and np.all(first[:, width:] == PAD)):
    bad = int(np.flatnonzero(~np.all(first[:, :width] == ref, axis=1))[0])
    raise AssertionError(f"outputs differ (row {bad}):\n ours {first[bad].tolist()}\n hf   {ref[bad].tolist()}")
  gen_len = np.sum((ref != PAD), axis=1) - 1

  def timed(fn):
    times = []
    for _ in range(args.repeats):
      t = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t)
    return min(times)

  t_ours, t_hf = timed(run_ours), timed(run_hf)
  print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}")
  print(f"mBART d={args.d_model} layers={args.layers}+{args.layers} heads={args.heads} V={args.vocab}; batch "
        f"{args.batch}, beams {args.beams}, max_length {args.max_length}; generated length mean "
        f"{gen_len.mean():.1f} (min {gen_len.min()}, max {gen_len.max()}); outputs identical: yes")
  print(f"ours (jitted beam search): {args.batch / t_ours:8.2f} sentences/s  ({t_ours * 1e3:.0f} ms/batch; "
        f"first call incl. compile {compile_s:.1f} s)")
  print(f"HF PyTorch generate      : {args.batch / t_hf:8.2f} sentences/s  ({t_hf * 1e3:.0f} ms/batch)")
  print(f"ratio ours / HF          : {t_hf / t_ours:8.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
