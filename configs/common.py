"""Shared config pieces: every config file starts from ``base_config`` and sets its task's fields.

Config files are ml_collections ``get_config(arg)`` functions; ``--config=configs/x.py:smoke`` passes ``smoke`` as
``arg``, and ``--config.a.b=v`` overrides a field. Configs are locked: an unknown key or a value of the wrong type
is an error naming the key.
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config(task: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = task
  c.seed = 0
  c.dtype = "float32"  # compute dtype of the model ('bfloat16' on accelerators); parameters stay float32

  # Devices: a ('data', 'fsdp') mesh; -1 = the remaining devices. Parameters with >= fsdp_min_size elements are
  # sharded over 'fsdp'.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, fsdp_min_size=4096))

  c.train = ml_collections.ConfigDict(dict(
      batch_size=8,             # global batch size (all devices, all processes)
      num_steps=0,              # > 0: train this many steps; else num_epochs
      num_epochs=1.0,
      log_every=50,
      eval_every_steps=0,       # evaluate on dev every N steps ...
      eval_every_epochs=1,      # ... or every N epochs (used when eval_every_steps = 0)
      eval_from_step=0,         # no dev evaluation before this step (the last step is always evaluated) ...
      eval_from_epochs=0.0,     # ... or this many epochs (used when eval_from_step = 0)
      checkpoint_every_steps=0,  # extra checkpoints between evaluations (0 = only at evaluations / the end)
      keep_checkpoints=2,
      max_bad_steps=30,         # stop after this many steps with a non-finite loss/gradient (skipped, counted)
      stop_at=config_dict.placeholder(float),  # stop once the best dev metric (eval.metric) reaches it (None = never)
      early_stop_evals=0,       # stop after this many dev evaluations without a new best (0 = never)
      tensorboard=True,
      fast_compile=False,       # compile steps with XLA's cheapest optimisation level (smoke runs on CPU)
      # Read this many training batches ahead and compile their (and dev's) step programs on background threads
      # while training runs (training/compile_ahead.py); 0 = compile each program when its first batch arrives.
      # Costs `compile_ahead` batches of host memory; pays off with several bucket shapes and idle cores.
      compile_ahead=0,
      # One thread: XLA:CPU compiles already use more than one core, and two at a time on 2 cores are slower than
      # one after the other (demo RGB step: 46 s for two in sequence, 51 s side by side; the RGB stage's first 25
      # steps came 57 s sooner with 1 thread than with 2; docs/benchmarks.md, session 10).
      compile_threads=1,
  ))

  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8,
      weight_decay=0.0, weight_decay_mode="coupled",  # coupled = PyTorch Adam(weight_decay); decoupled = AdamW
      momentum=0.0, nesterov=False,
      clip_grad_norm=0.0, grad_accum_steps=1,
      groups=ml_collections.ConfigDict(),  # {name: {'pattern': regex on 'a/b/c' path, 'lr': float}}
  ))
  c.schedule = ml_collections.ConfigDict(dict(
      name="constant", unit="step", milestones=(), gamma=0.1, total=1.0, eta_min_ratio=0.0, warmup=0,
      offset=0))

  c.eval = ml_collections.ConfigDict(dict(
      metric="loss", mode="min",  # model selection on dev
      batch_size=8,
      final_splits=("dev", "test"),
  ))
  c.model = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict()
  return c


def parse_variant(arg: str | None, known: tuple[str, ...]) -> str:
  """The variant after ':' in --config=file.py:variant ('' = full), checked against the file's variants."""
  arg = arg or ""
  if arg not in ("",) + known:
    raise ValueError(f"unknown config variant {arg!r}; this config has: {', '.join(known) or 'none'}")
  return arg


def extract_config(stream: str) -> ml_collections.ConfigDict:
  """``--mode extract`` fields of the S2G configs (RGB ``cslr``, ``keypoint_s2g``); see hypersign_jax/extraction.py."""
  return ml_collections.ConfigDict(dict(
      out="",                                # '' = <workdir>/features_<stream>
      stream=stream,                         # feature stream name in the written records ('rgb' / 'keypoint')
      splits=("train", "dev", "test"),
      batch_size=0,                          # 0 = eval.batch_size
      checkpoint="auto",                     # 'auto' (best, else latest) | 'best' | 'latest'
      order="length",                        # read shortest first (less padding; a split waits in memory) | 'source'
  ))
