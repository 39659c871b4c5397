"""Train-step time and FLOP utilisation of the HyperSign S2T model (PHOENIX-2014-T config) on this machine.

  python benchmarks/s2t_step.py                      # full size (mbart-large-cc25 geometry), T=29, L=20, batch 1
  python benchmarks/s2t_step.py --layers 2 --steps 3 # a smaller mBART for a quick look

One step = the whole training forward (two VisualHeads, VLMapper + DSG, PSC views, two encoder and two
teacher-forced decoder passes, SST, the full loss of tasks/slt.s2t_loss), its gradient and the Adam update with the
paper's three parameter groups and coupled weight decay (hypersign_jax/training/optim.py), jitted with donation.
Random weights and inputs (T feature frames of 832 per stream, L target tokens, V = 2498, 1094 recognition
classes); dropout as configured (0.3 / 0.1 / 0.1 / DSG 0.5).

FLOPs are XLA's own count for the compiled step (`jax.jit(...).lower(...).compile().cost_analysis()['flops']`,
multiply-add = 2); utilisation = achieved FLOP/s of the step divided by the FLOP/s of a large float32 matmul
(N x N @ N x N, 2 N^3 FLOPs) timed in the same run, i.e. relative to what this machine's matmul reaches, not to a
datasheet peak; on a GPU with a known datasheet peak (H100 / H200 / A100, or ``--peak_tflops``) the MFU against the
dense peak of ``--dtype`` is printed too. ``--dtype bfloat16`` computes in bfloat16 with float32 parameters;
``--remat layer`` rematerialises every mBART layer.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.reference import (add_step_flags, describe_mfu, device_peak_flops,  # noqa: E402
                                  matmul_flops_per_s, mfu)
from configs import hypersign_phoenix2014t  # noqa: E402
from hypersign_jax.models import fusion, mbart, psc, slt, sst, visual_head  # noqa: E402
from hypersign_jax.tasks import slt as slt_task  # noqa: E402
from hypersign_jax.text import tokenizer as tok  # noqa: E402
from hypersign_jax.training import optim  # noqa: E402


def phoenix_model_config(layers: int | None, dtype: str = "float32", remat: str = "none",
                         remat_policy: str = "") -> slt.SLTConfig:
  c = hypersign_phoenix2014t.get_config()
  m = c.model
  dtype = jnp.dtype(dtype)
  mb = mbart.MBartConfig(vocab_size=2498, d_model=m.d_model, encoder_layers=layers or m.encoder_layers,
                         decoder_layers=layers or m.decoder_layers, encoder_attention_heads=m.encoder_attention_heads,
                         decoder_attention_heads=m.decoder_attention_heads, encoder_ffn_dim=m.encoder_ffn_dim,
                         decoder_ffn_dim=m.decoder_ffn_dim, dropout=m.dropout, attention_dropout=m.attention_dropout,
                         max_position_embeddings=m.max_position_embeddings, dtype=dtype, remat=remat,
                         remat_policy=remat_policy)
  return slt.SLTConfig(
      streams=tuple(m.streams), input_sizes=(832, 832),
      head=visual_head.VisualHeadConfig(hidden_size=m.head.hidden_size, ff_size=m.head.ff_size, num_classes=1094,
                                        dropout=m.head.dropout, dtype=dtype),
      mapper=fusion.VLMapperConfig(in_features=m.head.hidden_size, num_glosses=1094, out_features=mb.d_model,
                                   fusion_dropout=m.mapper.fusion_dropout, dtype=dtype),
      psc=psc.PSCConfig(final_step=m.psc.final_step),
      sst=sst.SSTConfig(video_dim=mb.d_model, text_dim=mb.d_model, sd_num=m.sst.sd_num, sd_dim=m.sst.sd_dim,
                        dtype=dtype),
      mbart=mb, lang_id=6, eos_id=tok.EOS)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--frames", type=int, default=29, help="T feature frames (PHOENIX mean 116.6 / 4)")
  p.add_argument("--target", type=int, default=20, help="L target tokens")
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--layers", type=int, default=0, help="mBART layers per stack (0 = the config's 12)")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--dtype", default="float32", help="compute dtype: float32 | bfloat16 (parameters stay float32)")
  p.add_argument("--remat", default="none", choices=("none", "layer"), help="rematerialise every mBART layer")
  add_step_flags(p)
  args = p.parse_args(argv)

  cfg = phoenix_model_config(args.layers, args.dtype, args.remat, args.remat_policy)
  c = hypersign_phoenix2014t.get_config()
  t0 = time.perf_counter()
  model = slt.HyperSignSLT(cfg, rngs=nnx.Rngs(0))
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  tx, _ = optim.make_optimizer(c.optimizer, c.schedule, params, steps_per_epoch=444)
  opt_state = tx.init(params)
  init_s = time.perf_counter() - t0

  rng = np.random.default_rng(0)
  b, t, length = args.batch, args.frames, args.target
  feats = {s: jnp.asarray(rng.normal(size=(b, t, 832)).astype(np.float32)) for s in cfg.streams}
  masks = {s: jnp.ones((b, t), jnp.float32) for s in cfg.streams}
  targets = [list(rng.integers(30, 2498, size=length - 2)) + [tok.EOS, 6] for _ in range(b)]
  tt = tok.encode_targets(targets, 6, length)
  dec_in, labels = jnp.asarray(tt["decoder_input_ids"]), jnp.asarray(tt["labels"])

  def step(params, opt_state, rest):
    def loss_of(p):
      m = nnx.merge(graphdef, p, rest, copy=True)
      out = m(feats, masks, dec_in)
      loss, _ = slt_task.s2t_loss(out, labels, c.loss)
      return loss, nnx.state(m, nnx.Not(nnx.Param))
    (loss, new_rest), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_rest, loss

  jitted = jax.jit(step, donate_argnums=(0, 1, 2))
  t0 = time.perf_counter()
  lowered = jitted.lower(params, opt_state, rest)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan")))

  times = []
  for i in range(args.steps + 1):
    t0 = time.perf_counter()
    params, opt_state, rest, loss = compiled(params, opt_state, rest)
    loss.block_until_ready()
    if i:  # the first call also pays one-time allocation
      times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  mm = matmul_flops_per_s(args.matmul, 5)
  peak, peak_desc = device_peak_flops(args.dtype, args.peak_tflops)
  util = mfu(flops, step_s, peak)
  result = {
      "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(), "params": int(n_params),
      "mbart_layers": cfg.mbart.encoder_layers, "frames": t, "target": length, "batch": b, "dtype": args.dtype,
      "remat": args.remat, "remat_policy": args.remat_policy,
      "init_s": round(init_s, 2), "compile_s": round(compile_s, 2), "step_s_median": round(step_s, 4),
      "step_s_all": [round(x, 4) for x in times], "loss": float(loss),
      "xla_flops_per_step": flops, "achieved_gflops": flops / step_s / 1e9,
      f"matmul{args.matmul}_gflops": mm / 1e9, "utilisation_vs_matmul": flops / step_s / mm,
      "peak": peak_desc, "mfu": util,
      "flops_source": "XLA cost_analysis of the compiled train step (forward + backward + Adam)",
  }
  print(json.dumps(result, indent=2))
  print(f"S2T train step: {step_s:.4f} s, {flops / step_s / 1e12:.2f} TFLOP/s achieved; MFU "
        + describe_mfu(util, peak_desc))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
