"""hypersign_jax entry point: train or evaluate any task from a config file.

  python main.py --config configs/toy_regression.py:smoke --workdir /tmp/w            # train (resumes if possible)
  python main.py --config configs/toy_regression.py --workdir /tmp/w --mode eval      # evaluate the best checkpoint
  python main.py --config configs/x.py --workdir W --mode eval --average_last 5      # ... the last 5 kept, averaged
  python main.py --config configs/x.py --workdir W --config.train.batch_size=4        # override a config field
  python main.py --config configs/keypoint_s2g_synthetic.py --workdir W --mode extract  # S2G features -> dataset
  python main.py --config configs/recipe_synthetic.py --workdir W --mode recipe       # S2G -> extract -> G2T -> S2T
  JAX_COORDINATOR_ADDRESS=host0:12345 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 python main.py ...  # process 0 of 2
"""
from __future__ import annotations

import difflib
import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_dict, config_flags

MODES = ("train", "eval", "extract", "recipe")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a variant: configs/<task>_<dataset>.py[:smoke]. Fields can be "
    "overridden with --config.a.b=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the resolved config.json.")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "train: train (resuming from workdir) then evaluate the best "
                          "checkpoint on dev and test; eval: evaluate a workdir's best (or --checkpoint_step) "
                          "checkpoint; extract: write a trained S2G model's features of every split as a dataset "
                          "(config keys extract.*, hypersign_jax/extraction.py); recipe: run a multi-stage recipe config "
                          "(configs/recipe_*.py), each stage a subprocess, finished stages skipped on re-run.")
_STEP = flags.DEFINE_integer("checkpoint_step", None, "--mode eval: evaluate this kept checkpoint instead of the best.")
_AVERAGE = flags.DEFINE_integer("average_last", 0, "--mode eval: N >= 2 evaluates the mean weights of the N newest "
                                "kept checkpoints (up to --checkpoint_step if given) instead of one checkpoint.",
                                lower_bound=0)
_SPLITS = flags.DEFINE_list("splits", None, "--mode eval: splits to evaluate (default: the config's eval.final_splits).")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "env", ("env", "auto", "off"), "Multi-process JAX (hypersign_jax/training/distributed.py): env = "
    "jax.distributed.initialize from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID when they are set; "
    "auto = JAX's cluster auto-detection (SLURM, Open MPI, TPU, ...); off = one process.")


def _fail(message: str) -> None:
  print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
  sys.exit(2)


def _check_override(config_path: str, arg: str) -> str | None:
  """Explains why --config.a.b=v is invalid for the config at ``config_path`` (None if it is valid)."""
  key = arg.split("=", 1)[0][len("--config."):]
  try:
    node = config_flags.config_flags._LoadConfigModule("config", config_path.split(":", 1)[0]).get_config(  # pylint: disable=protected-access
        *([config_path.split(":", 1)[1]] if ":" in config_path else []))
  except Exception:  # the config itself is broken: reported separately
    return None
  path = []
  for part in key.split("."):
    if isinstance(node, (config_dict.ConfigDict, dict)) and part in node:
      node = node[part]
      path.append(part)
      continue
    if isinstance(node, (config_dict.ConfigDict, dict)):
      near = difflib.get_close_matches(part, list(node.keys()), n=1)
      hint = f" (did you mean {'.'.join(path + near)!r}?)" if near else ""
      return f"unknown config key {key!r}{hint}"
    return f"config key {'.'.join(path)!r} is a {type(node).__name__}, it has no field {part!r}"
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  if any(a in ("--help", "-h", "--helpshort") for a in argv[1:]):
    print(__doc__)
    print(flags.FLAGS.main_module_help())
    sys.exit(0)
  config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_arg is None and "--config" in argv and argv.index("--config") + 1 < len(argv):
    config_arg = argv[argv.index("--config") + 1]
  if config_arg is not None:
    file_part = config_arg.split(":", 1)[0]
    if not os.path.isfile(file_part):
      _fail(f"config file {file_part!r} does not exist")
    for arg in argv:
      if arg.startswith("--config."):
        problem = _check_override(config_arg, arg)
        if problem:
          _fail(problem)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    _fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}")
  return []


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CONFIG.value is None:
    _fail("--config is required (e.g. --config configs/toy_regression.py:smoke)")
  if not _WORKDIR.value:
    _fail("--workdir is required")
  try:
    config = _CONFIG.value
    config.task  # pylint: disable=pointless-statement  (surfaces a config file that failed to load)
  except Exception as e:  # pylint: disable=broad-except
    _fail(f"could not load the config: {type(e).__name__}: {e}")
  if (config.task == "recipe") != (_MODE.value == "recipe"):
    _fail("--mode recipe runs the recipe configs (configs/recipe_*.py), and those run only with --mode recipe")
  if _MODE.value == "recipe":
    from hypersign_jax.recipes import stages, two_stream  # pylint: disable=import-outside-toplevel
    try:
      two_stream.run(config, _WORKDIR.value)
    except (stages.StageFailed, ValueError) as e:
      _fail(str(e))
    return
  import jax  # pylint: disable=import-outside-toplevel  (keeps --help fast)
  from hypersign_jax.training import distributed  # pylint: disable=import-outside-toplevel
  try:  # before any other JAX use
    distributed.initialize(_DISTRIBUTED.value)
  except distributed.Error as e:
    _fail(str(e))
  # Compiled programs are cached on disk: a second run of the same config skips most XLA compilation.
  jax.config.update("jax_compilation_cache_dir", os.environ.get(
      "HYPERSIGN_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hypersign_jax", "xla")))
  from hypersign_jax.training import trainer  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO; metrics are printed by the trainer
  if _MODE.value == "train":
    results = trainer.train_and_evaluate(config, _WORKDIR.value)
  elif _MODE.value == "extract":
    from hypersign_jax import extraction  # pylint: disable=import-outside-toplevel
    try:
      results = extraction.extract_features(config, _WORKDIR.value)
    except (FileNotFoundError, ValueError) as e:  # no checkpoint, missing split, bad extract.* keys
      _fail(" ".join(str(e).split()))
  else:
    try:
      results = trainer.evaluate_checkpoint(config, _WORKDIR.value, step=_STEP.value, splits=_SPLITS.value,
                                            average_last=_AVERAGE.value)
    except FileNotFoundError as e:  # no such checkpoint, too few kept to average
      _fail(" ".join(str(e).split()))
  print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
