"""HF PyTorch `MBartForConditionalGeneration` state dict -> parameters of `hypersign_jax.models.mbart`.

A declarative map: each rule is (target path in the NNX state, source state-dict key, transform). Linear weights
(out, in) become kernels (in, out); embeddings, LayerNorm weights (-> `scale`) and biases are copied. The tied
token matrix may appear under any of `model.shared.weight`, `model.{encoder,decoder}.embed_tokens.weight`,
`lm_head.weight` (safetensors keeps only one); `final_logits_bias` is zero when absent (HF does the same).
Minimal version for tests; the full converter (HyperSign prefixes, vocabulary pruning, CLI) builds on it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from flax import nnx

from hypersign_jax.models import mbart

Transform = Callable[[np.ndarray], np.ndarray]
Rule = tuple[tuple[Any, ...], str, Transform]

TIED_EMBEDDING_KEYS = ('model.shared.weight', 'model.encoder.embed_tokens.weight',
                       'model.decoder.embed_tokens.weight', 'lm_head.weight')


def _copy(x: np.ndarray) -> np.ndarray:
  return x


def _linear_kernel(x: np.ndarray) -> np.ndarray:
  return x.T  # torch (out, in) -> flax (in, out)


def _linear(target: tuple[Any, ...], source: str) -> list[Rule]:
  return [(target + ('kernel',), f'{source}.weight', _linear_kernel), (target + ('bias',), f'{source}.bias', _copy)]


def _layer_norm(target: tuple[Any, ...], source: str) -> list[Rule]:
  return [(target + ('scale',), f'{source}.weight', _copy), (target + ('bias',), f'{source}.bias', _copy)]


def _attention(target: tuple[Any, ...], source: str) -> list[Rule]:
  return [r for proj in ('q_proj', 'k_proj', 'v_proj', 'out_proj') for r in _linear(target + (proj,),
                                                                                    f'{source}.{proj}')]


def mbart_rules(encoder_layers: int, decoder_layers: int) -> list[Rule]:
  """All rules except the tied token embedding and `final_logits_bias` (handled by `convert`)."""
  rules: list[Rule] = []
  for stack, count in (('encoder', encoder_layers), ('decoder', decoder_layers)):
    t, s = ('model', stack), f'model.{stack}'
    rules.append((t + ('embed_positions', 'embedding'), f'{s}.embed_positions.weight', _copy))
    rules += _layer_norm(t + ('layernorm_embedding',), f'{s}.layernorm_embedding')
    rules += _layer_norm(t + ('layer_norm',), f'{s}.layer_norm')
    for i in range(count):
      lt, ls = t + ('layers', i), f'{s}.layers.{i}'
      rules += _attention(lt + ('self_attn',), f'{ls}.self_attn')
      rules += _layer_norm(lt + ('self_attn_layer_norm',), f'{ls}.self_attn_layer_norm')
      if stack == 'decoder':
        rules += _attention(lt + ('encoder_attn',), f'{ls}.encoder_attn')
        rules += _layer_norm(lt + ('encoder_attn_layer_norm',), f'{ls}.encoder_attn_layer_norm')
      rules += _linear(lt + ('fc1',), f'{ls}.fc1') + _linear(lt + ('fc2',), f'{ls}.fc2')
      rules += _layer_norm(lt + ('final_layer_norm',), f'{ls}.final_layer_norm')
  return rules


def _set(tree: dict, path: tuple[Any, ...], value: np.ndarray) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def convert(state_dict: Mapping[str, Any], config: mbart.MBartConfig) -> dict:
  """torch/numpy state dict (keys as in HF `MBartForConditionalGeneration`) -> nested pure dict of float32."""
  sd = {k: np.asarray(v.detach().float().numpy() if hasattr(v, 'detach') else v, np.float32)
        for k, v in state_dict.items()}
  out: dict = {}
  missing = []
  for target, source, fn in mbart_rules(config.encoder_layers, config.decoder_layers):
    if source not in sd:
      missing.append(source)
      continue
    _set(out, target, fn(sd[source]))
  tied = next((k for k in TIED_EMBEDDING_KEYS if k in sd), None)
  if tied is None:
    missing.append(' or '.join(TIED_EMBEDDING_KEYS))
  else:
    _set(out, ('model', 'shared', 'embedding'), sd[tied])
  if missing:
    raise KeyError(f'mBART state dict lacks {len(missing)} keys, e.g. {missing[:5]}')
  bias = sd.get('final_logits_bias', np.zeros((1, config.vocab_size), np.float32))
  _set(out, ('final_logits_bias',), bias)
  return out


def load_into(model: mbart.MBartForConditionalGeneration, params: dict) -> None:
  """Writes a converted pure dict into `model` in place, checking every shape."""
  state = nnx.state(model, nnx.Any(nnx.Param, mbart.Buffer))
  expected = nnx.to_pure_dict(state)
  flat_exp = dict(nnx.traversals.flatten_mapping(expected))
  flat_got = dict(nnx.traversals.flatten_mapping(params))
  if flat_exp.keys() != flat_got.keys():
    raise KeyError(f'parameter mismatch: missing {sorted(set(flat_exp) - set(flat_got))[:5]}, '
                   f'unexpected {sorted(set(flat_got) - set(flat_exp))[:5]}')
  for k, v in flat_exp.items():
    if tuple(v.shape) != tuple(flat_got[k].shape):
      raise ValueError(f'{"/".join(map(str, k))}: checkpoint shape {flat_got[k].shape}, model expects {v.shape}')
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
