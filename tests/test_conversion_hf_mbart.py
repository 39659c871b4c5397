"""HF mBART directory <-> our mBART: logits equal to transformers after conversion through the directory path
(safetensors and pytorch_model.bin, tied weights once or under every name), vocabulary pruning, bit-exact round
trip, a directory written back that transformers loads, and one-line errors for malformed directories."""
import json
import os
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import test_mbart_vs_torch as mb_ref
from test_slowfast import seed_rng_state
from checkpoints_conversion import engine, hf_mbart
from hypersign_jax.models import mbart

V = 99


def _randomized_hf(seed=1, **kw):
  torch.manual_seed(0)
  hf = transformers.MBartForConditionalGeneration(mb_ref._hf_config(**kw)).eval()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in list(hf.named_parameters()) + list(hf.named_buffers()):
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.2 * noise if ('layer_norm' in name or 'layernorm' in name) and name.endswith('weight')
              else 0.2 * noise)
  return hf


@pytest.fixture(scope='module')
def hf_model():
  return _randomized_hf()


@pytest.fixture(scope='module')
def hf_dir(hf_model, tmp_path_factory):
  d = str(tmp_path_factory.mktemp('hf') / 'mbart_st')
  hf_model.save_pretrained(d)  # safetensors, tied matrix stored once
  return d


def _ours(vocab=V):
  cfg = mbart.MBartConfig.from_hf(mb_ref._hf_config(vocab_size=vocab))
  return nnx.eval_shape(lambda: mbart.MBartForConditionalGeneration(cfg, rngs=nnx.Rngs(0)))


_forward = nnx.jit(lambda m, s, sm, t, tm: m(s, sm, t, tm))


def _hf_logits(hf, src, src_mask, tgt, tgt_mask):
  with torch.no_grad():
    return hf(input_ids=torch.tensor(src), attention_mask=torch.tensor(src_mask),
              decoder_input_ids=torch.tensor(tgt), decoder_attention_mask=torch.tensor(tgt_mask)).logits.numpy()


def _inputs(vocab=V):
  rng = np.random.default_rng(0)
  src, src_mask = mb_ref._padded_ids(rng, [9, 5, 2], 9, vocab)
  tgt, tgt_mask = mb_ref._padded_ids(rng, [7, 3, 6], 7, vocab)
  return src, src_mask, tgt, tgt_mask


def _load(model, directory, **kw):
  pure, report = hf_mbart.convert_directory(directory, model, **kw)
  engine.load_into_model(model, pure)
  seed_rng_state(model)
  model.eval()
  return report


def test_safetensors_directory_logits_match_transformers(hf_model, hf_dir):
  from safetensors.numpy import load_file
  assert 'lm_head.weight' not in load_file(os.path.join(hf_dir, 'model.safetensors'))  # stored once
  model = _ours()
  report = _load(model, hf_dir)
  assert not report.kept_init and not report.defaulted
  src, src_mask, tgt, tgt_mask = _inputs()
  got = np.asarray(_forward(model, *map(jnp.asarray, (src, src_mask, tgt, tgt_mask))))
  want = _hf_logits(hf_model, src, src_mask, tgt, tgt_mask)
  assert np.abs(want).max() > 1.0
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_pytorch_bin_with_every_tied_name_and_round_trip(hf_model, tmp_path):
  d = tmp_path / 'mbart_bin'
  d.mkdir()
  sd = hf_model.state_dict()
  assert all(k in sd for k in hf_mbart.TIED_EMBEDDING_KEYS)
  torch.save(sd, d / 'pytorch_model.bin')
  (d / 'config.json').write_text(hf_model.config.to_json_string())
  model = _ours()
  pure, report = hf_mbart.convert_directory(str(d), model)
  assert set(report.aliased) == set(hf_mbart.TIED_EMBEDDING_KEYS[1:])
  back = hf_mbart.to_state_dict(pure)
  assert set(back) == set(sd)
  for k, v in sd.items():
    assert back[k].dtype == np.float32
    np.testing.assert_array_equal(back[k], v.numpy(), err_msg=k)


def test_saved_directory_loads_in_transformers(hf_model, hf_dir, tmp_path):
  model = _ours()
  _load(model, hf_dir)
  out = str(tmp_path / 'ours')
  hf_mbart.save_directory(model, out)
  again = transformers.MBartForConditionalGeneration.from_pretrained(out, attn_implementation='eager').eval()
  src, src_mask, tgt, tgt_mask = _inputs()
  np.testing.assert_allclose(_hf_logits(again, src, src_mask, tgt, tgt_mask),
                             _hf_logits(hf_model, src, src_mask, tgt, tgt_mask), atol=1e-6)


def test_vocabulary_pruning_through_a_map_file(hf_model, hf_dir, tmp_path):
  kept_old = [0, 1, 2, 3] + list(range(60, 40, -1)) + [97, 5]    # specials first, then first-seen order
  mapping = {old: new for new, old in enumerate(kept_old)}
  path = tmp_path / 'map_ids.pkl'                                 # HyperSign's format
  path.write_bytes(pickle.dumps(mapping))
  model = _ours(vocab=len(kept_old))
  report = _load(model, hf_dir, prune_map=str(path))
  assert 'model.shared.weight' in report.adapted and 'final_logits_bias' in report.adapted
  rng = np.random.default_rng(1)
  src_new = rng.integers(0, len(kept_old), size=(2, 6))
  tgt_new = rng.integers(0, len(kept_old), size=(2, 5))
  old = np.asarray(kept_old)
  ones = lambda x: np.ones_like(x)
  got = np.asarray(_forward(model, jnp.asarray(src_new), jnp.asarray(ones(src_new)), jnp.asarray(tgt_new),
                            jnp.asarray(ones(tgt_new))))
  want = _hf_logits(hf_model, old[src_new], ones(src_new), old[tgt_new], ones(tgt_new))[..., old]
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  # Without the map, the vocabulary mismatch names the config keys.
  with pytest.raises(engine.ConversionError, match=r"model\.shared\.embedding.*text\.prune_map"):
    hf_mbart.convert_directory(hf_dir, _ours(vocab=len(kept_old)))


def test_malformed_directories(hf_model, hf_dir, tmp_path):
  with pytest.raises(engine.ConversionError, match='not a directory'):
    hf_mbart.convert_directory(os.path.join(hf_dir, 'config.json'), _ours())
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(engine.ConversionError, match='no config.json'):
    hf_mbart.convert_directory(str(empty), _ours())
  (empty / 'config.json').write_text(hf_model.config.to_json_string())
  with pytest.raises(engine.ConversionError, match='no model.safetensors'):
    hf_mbart.convert_directory(str(empty), _ours())
  data = open(os.path.join(hf_dir, 'model.safetensors'), 'rb').read()
  (empty / 'model.safetensors').write_bytes(data[:len(data) // 3])
  with pytest.raises(engine.ConversionError, match='not a readable safetensors file'):
    hf_mbart.convert_directory(str(empty), _ours())
  # Geometry that does not change shapes (heads) is caught from config.json, with the config key.
  cfg = json.loads(hf_model.config.to_json_string())
  cfg['encoder_attention_heads'] = 2
  (empty / 'config.json').write_text(json.dumps(cfg))
  (empty / 'model.safetensors').write_bytes(data)
  with pytest.raises(engine.ConversionError, match=r"encoder_attention_heads.*'model\.encoder_attention_heads'"):
    hf_mbart.convert_directory(str(empty), _ours())
  # A missing tensor is named.
  from safetensors.numpy import load_file, save_file
  sd = load_file(os.path.join(hf_dir, 'model.safetensors'))
  del sd['model.decoder.layers.1.fc2.bias']
  cfg['encoder_attention_heads'] = 4
  (empty / 'config.json').write_text(json.dumps(cfg))
  save_file(sd, str(empty / 'model.safetensors'))
  with pytest.raises(engine.MissingKeysError, match=r'model\.decoder\.layers\.1\.fc2\.bias'):
    hf_mbart.convert_directory(str(empty), _ours())
