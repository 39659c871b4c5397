"""Command line: convert an original checkpoint into a workdir that ``main.py --mode eval`` (or ``--mode train``,
resuming at step 0) loads.

  python -m checkpoints_conversion --source slowfastsign --input phoenix2014_dev_18.01.pt \
      --config configs/slowfastsign_phoenix2014.py --output workdirs/sfs_released
  python -m checkpoints_conversion --source hf_mbart --input pretrained_models/slt/mBart_de \
      --config configs/g2t_phoenix2014t.py:cc25 --output workdirs/g2t_from_mbart [--prune-map map_ids.pkl]
  python main.py --config configs/slowfastsign_phoenix2014.py --workdir workdirs/sfs_released --mode eval

Sources: slowfastsign (``.pt``, task cslr), pyslowfast (Caffe2 ``.pkl`` backbone, task cslr; the temporal part stays
at init), hf_mbart (HF directory, task g2t; or slt, where only the mBART is loaded), mmtlb_g2t (SLRT G2T ``.ckpt``,
task g2t), hypersign (HyperSign S2T ``.ckpt``, task slt).

The model is built from the config by the trainer (``trainer.build``: the task's ``build_model``, the optimizer and
the sharded state layout), the converted variables replace its parameters and model state, and the state is saved
at step 0 as both ``checkpoints/latest`` and ``checkpoints/best`` with a fresh data-iterator state. Config fields
can be overridden like main.py's: ``--config.data.dir=...``. The key-level report is printed (and written to
``<output>/conversion_report.txt``). Exit status 2 with a one-line message for malformed input (missing or
truncated file, wrong file type, missing / unexpected keys, wrong class or vocabulary count).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
from typing import Any, Sequence

from checkpoints_conversion import engine

SOURCES = ('slowfastsign', 'hf_mbart', 'pyslowfast', 'hypersign', 'mmtlb_g2t')
TASKS = {'slowfastsign': ('cslr',), 'pyslowfast': ('cslr',), 'hf_mbart': ('g2t', 'slt'), 'mmtlb_g2t': ('g2t',),
         'hypersign': ('slt',)}


class CliError(Exception):
  """A one-line user error (exit status 2)."""


def load_config(spec: str, overrides: Sequence[str]):
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    raise CliError(f'config file {path!r} does not exist')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if root not in sys.path:
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location('_conversion_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(variant) if variant else module.get_config()
  for item in overrides:
    key, eq, raw = item[len('--config.'):].partition('=')
    if not eq:
      raise CliError(f'{item}: expected --config.<key>=<value>')
    node = config
    parts = key.split('.')
    for p in parts[:-1]:
      if p not in node:
        raise CliError(f'unknown config key {key!r}')
      node = node[p]
    if parts[-1] not in node:
      raise CliError(f'unknown config key {key!r}')
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    try:
      node[parts[-1]] = value
    except (TypeError, ValueError) as e:
      raise CliError(f'config key {key!r}: {e}') from e
  return config


def _read_input(source: str, path: str) -> Any:
  """Reads and validates the input before anything expensive is built."""
  from checkpoints_conversion import hf_mbart, hypersign, pyslowfast, slowfastsign  # pylint: disable=import-outside-toplevel
  if source == 'slowfastsign':
    return slowfastsign.extract_state_dict(engine.read_torch(path), path)
  if source == 'pyslowfast':
    return pyslowfast.read_pkl(path)
  if source in ('mmtlb_g2t', 'hypersign'):
    return hypersign.extract_state_dict(engine.read_torch(path), path)
  if source == 'hf_mbart':
    hf_mbart.read_directory(path)  # validates; converted from the path later (pruning needs the model)
    return path
  raise CliError(f'--source {source}: unknown source')


def _convert(source: str, data: Any, model, task, ignore: Sequence[str], prune_map: str | None):
  from checkpoints_conversion import hf_mbart, hypersign, pyslowfast, slowfastsign  # pylint: disable=import-outside-toplevel
  if source == 'slowfastsign':
    return slowfastsign.convert(data, model, ignore=ignore)
  if source == 'pyslowfast':
    return pyslowfast.convert(data, model, ignore=ignore)
  if source == 'mmtlb_g2t':
    return hypersign.convert_g2t(data, model, ignore=ignore)
  if source == 'hypersign':
    return hypersign.convert_s2t(data, model, ignore=ignore)
  # hf_mbart
  pm = prune_map if prune_map else getattr(task, 'prune_map', None)
  if hasattr(model, 'translation_network'):
    return hf_mbart.convert_directory(
        data, model, prune_map=pm, target_prefix='translation_network.model.', ignore=ignore,
        keep_init=((r'(?!translation_network\.model\.).*', 'not part of mBART: left at init'),))
  return hf_mbart.convert_directory(
      data, model, prune_map=pm, target_prefix='model.', ignore=ignore,
      keep_init=((r'gloss_embedding\..*', 'the G2T gloss table is not in an mBART checkpoint: left at init'),))


def run(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m checkpoints_conversion', description=__doc__.split('\n')[0])
  parser.add_argument('--source', required=True, choices=SOURCES)
  parser.add_argument('--input', required=True, help='checkpoint file or directory')
  parser.add_argument('--config', required=True, help='CONFIG[:variant], as main.py')
  parser.add_argument('--output', required=True, help='workdir to create')
  parser.add_argument('--ignore', action='append', default=[],
                      help='fnmatch pattern of source keys / target paths allowed to be unexpected or missing '
                           '(missing ones keep their init); repeatable')
  parser.add_argument('--prune-map', default=None, help='hf_mbart: vocabulary pruning map (default: the task\'s)')
  parser.add_argument('--quiet', action='store_true', help='print only the summary and non-mapped keys')
  args, rest = parser.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith('--config.')]
  if len(overrides) != len(rest):
    parser.error(f'unrecognized arguments: {" ".join(a for a in rest if a not in overrides)}')
  try:
    return _run(args, overrides)
  except (CliError, engine.ConversionError, FileNotFoundError) as e:
    print(f'checkpoints_conversion: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}',
          file=sys.stderr)
    return 2


def _run(args, overrides) -> int:
  config = load_config(args.config, overrides)
  allowed = TASKS[args.source]
  if config.task not in allowed:
    raise CliError(f"--source {args.source} converts into task {' or '.join(allowed)}, the config's task is "
                   f"{config.task!r}")
  ckpt_dir = os.path.join(args.output, 'checkpoints')
  if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise CliError(f'{args.output} already has checkpoints; choose a new --output')
  data = _read_input(args.source, args.input)

  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from hypersign_jax.training import checkpointing, trainer  # pylint: disable=import-outside-toplevel
  try:
    setup = trainer.build(config)
  except (ValueError, KeyError) as e:
    raise CliError(f'building the model from {args.config}: {e}') from e
  model = trainer._model_from_state(setup.graphdef_train, setup.state, 0)  # pylint: disable=protected-access
  pure, report = _convert(args.source, data, model, setup.task, args.ignore, args.prune_map)
  engine.load_into_model(model, pure)
  _, params, _, _, model_state = nnx.split(model, nnx.Param, nnx.RngKey, nnx.RngCount, ...)
  state = dict(setup.state, params=params, model_state=model_state)
  state = jax.device_put(state, setup.state_shardings)

  batch = config.train.batch_size // jax.process_count()
  iterator = setup.task.train_iterator(config.seed, batch, jax.process_index(), jax.process_count())
  meta = {'best': None, 'best_step': None, 'bad_steps': 0, 'iterator': iterator.get_state(),
          'converted_from': {'source': args.source, 'input': os.path.abspath(args.input)}}
  os.makedirs(args.output, exist_ok=True)
  ckpts = checkpointing.Checkpoints(args.output, keep=config.train.keep_checkpoints)
  ckpts.save(0, state, meta, is_best=True)
  ckpts.close()
  with open(os.path.join(args.output, 'config.json'), 'w', encoding='utf-8') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  text = report.format(verbose=True)
  with open(os.path.join(args.output, 'conversion_report.txt'), 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  print(report.format(verbose=not args.quiet))
  print(f'wrote step-0 checkpoints (latest and best) to {os.path.join(args.output, "checkpoints")}')
  return 0


def main() -> None:
  sys.exit(run())
