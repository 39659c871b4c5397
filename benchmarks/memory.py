"""Peak memory of one SlowFastSign train step (R101 + BFF, PFE, PHOENIX-2014 config) with and without remat.

  python benchmarks/memory.py                                   # batch 2 (the paper's), 224 px, T = 64, float32
  python benchmarks/memory.py --dtype bfloat16 --remat none,block,stage
  python benchmarks/memory.py --no-compile                       # only the (fast) saved-activation figures

Compile only, nothing runs and no weight is allocated: the trainer's own train step (``trainer.make_train_step``:
backbone, all three temporal paths, the full loss, its gradient, Adam with coupled weight decay) is lowered with
abstract inputs (``nnx.eval_shape`` model, ``jax.ShapeDtypeStruct`` state and batch of the pipeline's padded shape,
4*ceil(T/4) + 12 frames) exactly as ``trainer._Jitted`` lowers it (shardings, donation of the old state), on a
1-device mesh, and XLA's ``compiled.memory_analysis()`` is read:

* argument bytes = train state (parameters, Adam moments, BN statistics, keys) + batch; output = the new state +
  metrics; alias = outputs written into donated inputs; temp = XLA's temporary buffers (activations kept for the
  backward pass, workspaces);
* peak = argument + output - alias + temp (what the step needs on the device at once).

Also printed: the bytes of forward activations the backward pass keeps (VJP residuals of the loss with respect to
the parameters, ``models/remat.saved_residual_bytes``), backend-independent. This is what remat shrinks. On GPU /
TPU XLA's temp bytes follow it; XLA:CPU schedules the recomputation right after the forward pass, so the CPU's
temp bytes barely move (measured, see /tmp/notes or docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.cslr_step import PHOENIX2014_CLASSES, PHOENIX2014_TRAIN, BenchTask, make_batch  # noqa: E402
from configs import slowfastsign_phoenix2014  # noqa: E402
from hypersign_jax.models import remat as remat_lib  # noqa: E402
from hypersign_jax.training import optim, sharding, trainer  # noqa: E402


def abstract_setup(config, task) -> trainer.Setup:
  """``trainer.build`` without allocating anything: every array of the state is a ``jax.ShapeDtypeStruct``."""
  mesh = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(config.seed)))
  graphdef_train, graphdef_eval, params, rng_keys, rng_count, model_state = trainer.split_model(model)
  steps_per_epoch = max(1, task.train_size() // config.train.batch_size)
  tx, schedules = optim.make_optimizer(config.optimizer, config.schedule, params, steps_per_epoch)
  state = jax.eval_shape(lambda *parts: trainer.initial_state(*parts, tx), params, rng_keys, rng_count,
                         model_state)
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  shardings = sharding.param_shardings(state, mesh, config.mesh.fsdp_min_size)
  return trainer.Setup(task, mesh, graphdef_train, graphdef_eval, state, shardings, tx, schedules,
                       steps_per_epoch, 1)


def measure(config, task, batch: dict, compile_step: bool) -> dict:
  setup = abstract_setup(config, task)
  state = setup.state
  abstract_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)

  def loss_of(params, state, batch):
    model = trainer._model_from_state(setup.graphdef_train, {**state, "params": params},  # pylint: disable=protected-access
                                      state["step"])
    return setup.task.loss_fn(model, batch)[0]

  t0 = time.perf_counter()
  saved = remat_lib.saved_residual_bytes(loss_of, state["params"], state, abstract_batch)
  out = {"saved_activation_bytes": saved, "trace_s": round(time.perf_counter() - t0, 1),
         "param_bytes": sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state["params"]))}
  if not compile_step:
    return out
  batch_sh = sharding.batch_shardings(abstract_batch, setup.mesh)
  jitted = jax.jit(trainer.make_train_step(setup, 1), in_shardings=(setup.state_shardings, batch_sh),
                   out_shardings=(setup.state_shardings, sharding.replicated(setup.mesh)), donate_argnums=(0,))
  t0 = time.perf_counter()
  with jax.set_mesh(setup.mesh):
    compiled = jitted.lower(state, abstract_batch).compile()
  m = compiled.memory_analysis()
  out.update(compile_s=round(time.perf_counter() - t0, 1), argument_bytes=m.argument_size_in_bytes,
             output_bytes=m.output_size_in_bytes, alias_bytes=m.alias_size_in_bytes,
             temp_bytes=m.temp_size_in_bytes,
             peak_bytes=m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
             + m.temp_size_in_bytes)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--frames", type=int, default=64, help="raw clip frames T (padded to 4*ceil(T/4)+12)")
  p.add_argument("--crop", type=int, default=224)
  p.add_argument("--batch", type=int, default=2, help="the paper's batch size is 2")
  p.add_argument("--glosses", type=int, default=12)
  p.add_argument("--classes", type=int, default=PHOENIX2014_CLASSES)
  p.add_argument("--backbone", default="r101", choices=("r101", "tiny"))
  p.add_argument("--dtype", default="float32")
  p.add_argument("--remat", default="none,block", help="comma-separated model.remat values to compare")
  p.add_argument("--remat_policy", default="")
  p.add_argument("--no-compile", dest="compile", action="store_false",
                 help="skip XLA compilation (saved-activation bytes only)")
  p.add_argument("--json", help="also write the results here")
  args = p.parse_args(argv)

  config = slowfastsign_phoenix2014.get_config()
  config.dtype = args.dtype
  config.model.backbone = args.backbone
  config.train.batch_size = args.batch
  config.model.remat_policy = args.remat_policy
  batch = make_batch(config, args.frames, args.crop, args.glosses, args.classes)
  print(f"SlowFastSign train step memory: {args.backbone}, {args.crop} px, T={args.frames} (padded "
        f"{batch['video'].shape[1]}), batch {args.batch}, {args.dtype}, policy {args.remat_policy or 'default'}, "
        f"{jax.devices()[0].device_kind}")
  results = {}
  for mode in args.remat.split(","):
    config.model.remat = mode
    task = BenchTask(config, args.classes, PHOENIX2014_TRAIN)
    results[mode] = measure(config, task, batch, args.compile)
    print(f"  remat={mode}: {json.dumps(results[mode])}", flush=True)

  gib = lambda b: f"{b / 2**30:.2f} GiB"
  cols = ["saved_activation_bytes"] + (["argument_bytes", "output_bytes", "alias_bytes", "temp_bytes",
                                        "peak_bytes"] if args.compile else [])
  print("| remat | " + " | ".join(c.replace("_bytes", "") for c in cols) + " |")
  print("|---" * (len(cols) + 1) + "|")
  for mode, r in results.items():
    print(f"| {mode} | " + " | ".join(gib(r[c]) for c in cols) + " |")
  base = results.get("none")
  if base:
    for mode, r in results.items():
      if mode != "none":
        ratios = [f"saved activations x{r['saved_activation_bytes'] / base['saved_activation_bytes']:.2f}"]
        if args.compile:
          ratios += [f"temp x{r['temp_bytes'] / base['temp_bytes']:.2f}",
                     f"peak x{r['peak_bytes'] / base['peak_bytes']:.2f}"]
        print(f"remat={mode} vs none: " + ", ".join(ratios))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"args": vars(args), "device": jax.devices()[0].device_kind, "results": results}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
