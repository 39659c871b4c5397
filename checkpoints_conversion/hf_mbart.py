"""HF PyTorch `MBartForConditionalGeneration` (state dict or model directory) <-> `hypersign_jax.models.mbart`.

The table (target <- source, hook):

  model.shared.embedding                      <- model.shared.weight (aliases: model.{encoder,decoder}.embed_tokens.weight,
                                                 lm_head.weight: tied; any one of them is enough, all must agree)
  model.{encoder,decoder}.embed_positions.embedding <- model.{..}.embed_positions.weight  (1026 rows: offset 2)
  <linear>.kernel / .bias                     <- <linear>.weight.T / .bias   (q/k/v/out_proj, fc1, fc2)
  <layer norm>.scale / .bias                  <- <layer norm>.weight / .bias
  final_logits_bias                           <- final_logits_bias (zeros when absent, as HF)

A model directory holds `config.json` and `model.safetensors` (read without torch; sharded
`model.safetensors.index.json` too) or `pytorch_model.bin`; `config.json` must describe the same geometry as our
model (each difference names the config key to change). Vocabulary pruning (HyperSign's `map_ids.pkl` or our
`map_ids.json`, see `hypersign_jax.text.pruning`): a full-vocabulary checkpoint going into a pruned model keeps the
rows (token matrix) and columns (`final_logits_bias`) of the kept ids, in pruned order; reported as adaptations.
The reverse writes an HF directory that `transformers` loads (`save_directory`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
from flax import nnx

from checkpoints_conversion import engine
from checkpoints_conversion.engine import LINEAR, rule
from hypersign_jax.models import mbart

TIED_EMBEDDING_KEYS = ('model.shared.weight', 'model.encoder.embed_tokens.weight',
                       'model.decoder.embed_tokens.weight', 'lm_head.weight')
GEOMETRY = ('d_model', 'encoder_layers', 'decoder_layers', 'encoder_attention_heads', 'decoder_attention_heads',
            'encoder_ffn_dim', 'decoder_ffn_dim', 'max_position_embeddings', 'scale_embedding',
            'activation_function')
HINT_VOCAB = ("the vocabulary size follows the tokenizer and pruning map (config keys 'text.spm_model', "
              "'text.prune_map'); a full-vocabulary mBART is pruned only when a pruning map is given")
HINT_LAYERS = ("mBART geometry follows config keys 'model.d_model', 'model.encoder_layers', 'model.decoder_layers', "
               "'model.encoder_ffn_dim', 'model.decoder_ffn_dim'")

TABLE = engine.Table(
    'hf_mbart',
    rules=(rule(r'model\.shared\.embedding', 'model.shared.weight'),
           rule(r'model\.(encoder|decoder)\.embed_positions\.embedding', r'model.\1.embed_positions.weight'),
           rule(r'final_logits_bias', 'final_logits_bias'),
           rule(r'(.+)\.kernel', r'\1.weight', hook=LINEAR),
           rule(r'(.+)\.scale', r'\1.weight'),
           rule(r'(.+)\.bias', r'\1.bias')),
    aliases=tuple(engine.alias(k.replace('.', r'\.'), TIED_EMBEDDING_KEYS[0]) for k in TIED_EMBEDDING_KEYS[1:]),
    defaults=((r'final_logits_bias', lambda shape: np.zeros(shape, np.float32),
               'absent from the checkpoint: zeros (as HF)'),),
    hints=((r'model\.shared\..*|final_logits_bias|lm_head\..*|.*embed_tokens\..*', HINT_VOCAB),
           (r'.*embed_positions\..*', "config key 'model.max_position_embeddings'"),
           (r'model\.(encoder|decoder)\.layers\..*', HINT_LAYERS)))


def abstract_model(config: mbart.MBartConfig) -> mbart.MBartForConditionalGeneration:
  return nnx.eval_shape(lambda: mbart.MBartForConditionalGeneration(config, rngs=nnx.Rngs(0)))


def convert(state_dict: Mapping[str, Any], config: mbart.MBartConfig, *, ignore: Sequence[str] = ()) -> dict:
  """torch/numpy state dict (keys as in HF `MBartForConditionalGeneration`) -> nested pure dict of float32.

  Raises `engine.MissingKeysError` (a KeyError) naming missing keys and `engine.ConversionError` for unexpected
  keys or shapes. An SLRT `gloss_embedding.weight` next to the mBART keys is left to the caller (G2T task)."""
  table = TABLE + engine.Table('gloss', (), skip=((r'gloss_embedding\.weight', 'G2T gloss table, not mBART'),))
  pure, _ = engine.convert(table, state_dict, engine.model_variables(abstract_model(config)), ignore=ignore)
  return pure


def load_into(model: mbart.MBartForConditionalGeneration, params: dict) -> None:
  """Writes a converted pure dict into `model` in place, checking every name and shape."""
  state = nnx.state(model, nnx.Any(nnx.Param, mbart.Buffer))
  flat_exp = engine.flatten(nnx.to_pure_dict(state))
  flat_got = engine.flatten(params)
  if flat_exp.keys() != flat_got.keys():
    raise KeyError(f'parameter mismatch: missing {sorted(map(engine.dotted, set(flat_exp) - set(flat_got)))[:5]}, '
                   f'unexpected {sorted(map(engine.dotted, set(flat_got) - set(flat_exp)))[:5]}')
  for k, v in flat_exp.items():
    if tuple(v.shape) != tuple(np.shape(flat_got[k])):
      raise ValueError(f'{engine.dotted(k)}: checkpoint shape {np.shape(flat_got[k])}, model expects {v.shape}')
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)


def to_state_dict(pure: Mapping, *, tied_copies: bool = True) -> dict[str, np.ndarray]:
  """Our mBART variables -> HF state dict (every tied name when ``tied_copies``, else only model.shared)."""
  return engine.to_state_dict(TABLE, pure, with_aliases=tied_copies)


# ------------------------------------------------------------------------------------------------- directories
def read_directory(directory: str) -> tuple[dict, dict[str, np.ndarray]]:
  """(config.json dict, state dict as NumPy) of an HF mBART directory; one-line errors for what is wrong."""
  if not os.path.isdir(directory):
    raise engine.ConversionError(f'{directory}: not a directory (an HF mBART directory with config.json and '
                                 'model.safetensors or pytorch_model.bin is expected)')
  cfg_path = os.path.join(directory, 'config.json')
  try:
    with open(cfg_path, encoding='utf-8') as f:
      hf_cfg = json.load(f)
  except FileNotFoundError as e:
    raise engine.ConversionError(f'{directory}: no config.json') from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise engine.ConversionError(f'{cfg_path}: not valid JSON ({e})') from e
  if not isinstance(hf_cfg, dict) or hf_cfg.get('model_type', 'mbart') != 'mbart':
    raise engine.ConversionError(f"{cfg_path}: model_type {hf_cfg.get('model_type') if isinstance(hf_cfg, dict) else hf_cfg!r} "
                                 "is not 'mbart'")
  st, index, pt = (os.path.join(directory, n) for n in ('model.safetensors', 'model.safetensors.index.json',
                                                         'pytorch_model.bin'))
  if os.path.isfile(st):
    files = [st]
  elif os.path.isfile(index):
    with open(index, encoding='utf-8') as f:
      files = [os.path.join(directory, n) for n in sorted(set(json.load(f)['weight_map'].values()))]
  elif os.path.isfile(pt):
    raw = engine.read_torch(pt)
    if not isinstance(raw, Mapping):
      raise engine.ConversionError(f'{pt}: expected a state dict, found {type(raw).__name__}')
    return hf_cfg, engine.to_numpy(raw)
  else:
    raise engine.ConversionError(f'{directory}: no model.safetensors, model.safetensors.index.json or '
                                 'pytorch_model.bin')
  from safetensors import SafetensorError  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  sd: dict[str, np.ndarray] = {}
  for path in files:
    try:
      sd.update(load_file(path))
    except (SafetensorError, OSError, ValueError) as e:
      raise engine.ConversionError(f'{path}: not a readable safetensors file (truncated?): {e}') from e
  return hf_cfg, sd


def check_config(hf_cfg: Mapping, config: mbart.MBartConfig, source: str) -> None:
  """config.json vs our MBartConfig: every geometry difference, with the config key to change."""
  diffs = [f"{k}: checkpoint {hf_cfg[k]!r}, model {getattr(config, k)!r} (config key 'model.{k}')"
           for k in GEOMETRY if k in hf_cfg and hf_cfg[k] is not None and hf_cfg[k] != getattr(config, k)]
  if diffs:
    raise engine.ConversionError(f'{source}/config.json does not fit the model: ' + '; '.join(diffs))


def prune_vocabulary(sd: dict[str, np.ndarray], kept_ids: np.ndarray, vocab_size: int, report: engine.Report
                     ) -> dict[str, np.ndarray]:
  """Rows of the tied matrices / columns of final_logits_bias of the kept ids (pruned order), if the checkpoint
  has the full vocabulary and the model the pruned one."""
  sd = dict(sd)
  kept_ids = np.asarray(kept_ids)
  for k in TIED_EMBEDDING_KEYS + ('final_logits_bias',):
    if k not in sd:
      continue
    axis = 1 if k == 'final_logits_bias' else 0
    rows = sd[k].shape[axis]
    if rows == vocab_size:
      continue
    if len(kept_ids) != vocab_size or kept_ids.max() >= rows:
      raise engine.ConversionError(
          f'{k} has {rows} rows; the pruning map keeps {len(kept_ids)} ids (max {kept_ids.max()}) and the model has '
          f'{vocab_size}: the map does not belong to this checkpoint ({HINT_VOCAB})')
    sd[k] = np.take(sd[k], kept_ids, axis=axis)
    report.adapted[k] = f'vocabulary pruned {rows} -> {vocab_size} (pruning map, kept ids in pruned order)'
  return sd


def convert_directory(directory: str, model, *, prune_map: Any = None, target_prefix: str = '',
                      ignore: Sequence[str] = (), keep_init: Sequence[tuple[str, str]] = ()
                      ) -> tuple[dict, engine.Report]:
  """An HF mBART directory -> pure dict of every variable of ``model``.

  Args:
    directory: HF model directory.
    model: our `MBartForConditionalGeneration`, or a model holding it under ``target_prefix`` (e.g. the G2T model,
      prefix ``'model.'``); abstract or concrete (concrete needed for ``keep_init`` targets).
    prune_map: a `hypersign_jax.text.pruning.PruneMap`, a path to one, or None.
    target_prefix: where the mBART sits inside ``model``.
    ignore: fnmatch patterns (see `engine.convert`).
    keep_init: (target regex, reason) of ``model`` variables that are not in an mBART checkpoint.
  """
  hf_cfg, sd = read_directory(directory)
  sub = model
  for part in filter(None, target_prefix.split('.')):
    sub = getattr(sub, part)
  check_config(hf_cfg, sub.config, directory)
  report = engine.Report(f'hf_mbart:{os.path.basename(os.path.normpath(directory))}')
  if prune_map is not None:
    if isinstance(prune_map, (str, os.PathLike)):
      from hypersign_jax.text import pruning  # pylint: disable=import-outside-toplevel
      try:
        prune_map = pruning.PruneMap.load(prune_map)
      except (OSError, ValueError) as e:
        raise engine.ConversionError(f'pruning map: {e}') from e
    sd = engine.resolve_aliases(TABLE, sd, report)
    sd = prune_vocabulary(sd, prune_map.kept_ids, sub.config.vocab_size, report)
  table = TABLE.prefixed(target_prefix, '')
  if keep_init:
    table = table + engine.Table('keep', (), keep_init=tuple(keep_init))
  return engine.convert(table, sd, engine.model_variables(model), ignore=ignore, report=report)


def save_directory(model: mbart.MBartForConditionalGeneration, directory: str, pure: Mapping | None = None) -> None:
  """Writes `config.json` + `model.safetensors` (one copy of the tied matrix, as HF) loadable by transformers."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  os.makedirs(directory, exist_ok=True)
  cfg = model.config
  hf_cfg = {k: getattr(cfg, k) for k in GEOMETRY + ('vocab_size', 'pad_token_id', 'bos_token_id', 'eos_token_id',
                                                    'init_std')}
  hf_cfg.update(model_type='mbart', architectures=['MBartForConditionalGeneration'], dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
                tie_word_embeddings=True, is_encoder_decoder=True, decoder_start_token_id=cfg.eos_token_id,
                forced_eos_token_id=cfg.eos_token_id)
  with open(os.path.join(directory, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(hf_cfg, f, indent=2)
  sd = to_state_dict(pure if pure is not None else engine.model_variables(model), tied_copies=False)
  save_file({k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()},
            os.path.join(directory, 'model.safetensors'), metadata={'format': 'pt'})
