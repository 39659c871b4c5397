"""HyperSign S2T `.ckpt` <-> our `HyperSignSLT`: bit-exact round trip of every tensor of the original state dict,
eval-mode encoder states and decoder logits equal to a tiny PyTorch reference with the original's key names
(tests/test_slt_vs_torch.py, plus the original's dead modules and its second encoder reference), and one-line
errors naming the offending keys."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import test_hypersign_modules_vs_torch as mods_ref
import test_slt_vs_torch as slt_ref
from checkpoints_conversion import cli, engine
from checkpoints_conversion import hypersign as hs_conv

TOL = 1e-5
HEADS = ('visual_head', 'visual_head_keypoint')


def _reference() -> slt_ref.TS2T:
  """The S2T reference with every name the original's state dict has (804 at full size)."""
  torch.manual_seed(0)
  reference = slt_ref.TS2T()
  rn, tn = reference.recognition_network, reference.translation_network
  rn.layer_norm = torch.nn.LayerNorm(sum(slt_ref.DIMS.values()))               # unused in the original
  sst = tn.SST_network
  sst.logit_scale_sd = torch.nn.Parameter(torch.ones([1]))                      # dead
  sst.video_query_model2 = mods_ref.TQueryModel(slt_ref.D_MODEL, slt_ref.SD_DIM)  # dead
  sst.text_query_model2 = mods_ref.TQueryModel(slt_ref.D_MODEL, slt_ref.SD_DIM)   # dead
  tn.encoder = tn.model.model.encoder                                           # alias (same tensors)
  mods_ref._randomise(reference, 11)  # pylint: disable=protected-access
  with torch.no_grad():
    for name, p in tn.model.named_parameters():
      if 'layer_norm' not in name and 'layernorm' not in name:
        p.mul_(0.5)
    for head in HEADS:  # non-zero counters, so that the round trip shows they come back
      getattr(rn, head).bn1.norm.num_batches_tracked.fill_(123)
  return reference


@pytest.fixture(scope='module')
def reference():
  return _reference()


@pytest.fixture(scope='module')
def state_dict(reference):
  return {k: v.detach().clone() for k, v in reference.state_dict().items()}


@pytest.fixture(scope='module')
def abstract_model():
  return nnx.eval_shape(slt_ref._our_model)  # pylint: disable=protected-access


def test_round_trip_is_bit_exact_and_every_skip_is_reported(state_dict, abstract_model):
  sd = engine.to_numpy(state_dict)
  pure, report = hs_conv.convert_s2t({'model_state': state_dict, 'epoch': 3}, abstract_model)
  assert report.ok
  dead = {k for k in sd if k.startswith(('recognition_network.layer_norm.',
                                         'translation_network.SST_network.video_query_model2.',
                                         'translation_network.SST_network.text_query_model2.'))}
  dead |= {'translation_network.SST_network.logit_scale_sd'}
  buffers = {k for k in sd if k.endswith(('.pe.pe', '.num_batches_tracked'))}
  assert len(dead) == 2 + 2 * 8 + 1 and len(buffers) == 4
  assert set(report.skipped) == dead | buffers
  encoder_alias = {k for k in sd if k.startswith('translation_network.encoder.')}
  tied = {f'translation_network.model.{k}' for k in ('model.encoder.embed_tokens.weight',
                                                     'model.decoder.embed_tokens.weight', 'lm_head.weight')}
  assert encoder_alias and set(report.aliased) == encoder_alias | tied
  assert set(report.kept_init) == {'translation_network.num_updates', 'translation_network.psc.step'}
  # Every source key is accounted for exactly once.
  used = {s for srcs, _ in report.mapped.values() for s in srcs}
  assert used | set(report.skipped) | set(report.aliased) == set(sd)
  assert not used & (set(report.skipped) | set(report.aliased))

  back = hs_conv.s2t_to_torch(pure, template=state_dict)
  assert set(back) == set(sd)
  for k, v in sd.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
    np.testing.assert_array_equal(back[k], v, err_msg=k)

  # Without a template: every live tensor bit-exact, the rest recomputed / initialised, strict load succeeds.
  bare = hs_conv.s2t_to_torch(pure, pe_length=64)
  assert set(bare) == set(sd)
  for k, v in sd.items():
    if k not in dead | buffers:
      np.testing.assert_array_equal(bare[k], v, err_msg=k)
  for head in HEADS:
    np.testing.assert_allclose(bare[f'recognition_network.{head}.pe.pe'], sd[f'recognition_network.{head}.pe.pe'],
                               atol=1e-5)
    assert bare[f'recognition_network.{head}.bn1.norm.num_batches_tracked'] == 0
  fresh = _reference()
  fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bare.items()}, strict=True)


def test_converted_model_matches_torch_reference_in_eval(reference, state_dict, tmp_path):
  path = os.path.join(tmp_path, 'best.ckpt')
  torch.save({'epoch': 3, 'global_step': 100, 'model_state': state_dict, 'best_score': 1.0}, path)
  model = slt_ref._our_model()  # pylint: disable=protected-access
  report = hs_conv.load_s2t(path, model)
  assert report.ok and 'vl_mapper.FusionNet.block.layernorm.scale' in report.mapped

  feats, mask, dec_in, labels = slt_ref._inputs(2)  # pylint: disable=protected-access
  captured = {'enc': [], 'logits': []}
  tn = reference.translation_network
  hooks = [tn.model.model.encoder.register_forward_hook(
               lambda m, i, o: captured['enc'].append(o.last_hidden_state.detach().numpy())),
           tn.model.register_forward_hook(lambda m, i, o: captured['logits'].append(o.logits.detach().numpy()))]
  reference.eval()
  try:
    with torch.no_grad():  # eval: both views are F_f (lambda 0 keeps F_f exactly)
      reference({k: torch.from_numpy(v) for k, v in feats.items()}, torch.from_numpy(mask),
                 torch.from_numpy(dec_in).long(), torch.from_numpy(labels).long(), (0.0, 0.0), 0)
  finally:
    for h in hooks:
      h.remove()
    reference.train()

  model.eval()
  f = {k: jnp.asarray(v) for k, v in feats.items()}
  m = {k: jnp.asarray(mask) for k in feats}
  out, (enc, _) = nnx.jit(lambda mod: (mod(f, m, jnp.asarray(dec_in)), mod.encode_fused(f, m)))(model)
  valid = np.arange(slt_ref.T + 2)[None] < (np.asarray(slt_ref.LENGTHS) + 2)[:, None]
  t_enc, t_logits = captured['enc'][0], captured['logits'][0]
  assert np.abs(t_logits).max() > 1.0 and np.std(t_enc) > 0.1  # informative outputs
  # Padded encoder positions are masked out of every attention; compared on the valid ones.
  np.testing.assert_allclose(np.asarray(out['encoder'][0])[valid], t_enc[valid], rtol=TOL, atol=TOL)
  np.testing.assert_allclose(np.asarray(enc)[valid], t_enc[valid], rtol=TOL, atol=TOL)
  np.testing.assert_allclose(np.asarray(out['logits'][0]), t_logits, rtol=TOL, atol=TOL)
  np.testing.assert_allclose(np.asarray(out['logits'][1]), captured['logits'][1], rtol=TOL, atol=TOL)


def test_missing_key_is_named(state_dict, abstract_model):
  sd = dict(state_dict)
  del sd['vl_mapper.FusionNet.block.layernorm.weight']
  with pytest.raises(engine.MissingKeysError, match=r'vl_mapper\.FusionNet\.block\.layernorm\.weight'):
    hs_conv.convert_s2t(sd, abstract_model)


def test_wrong_gloss_count_is_named_with_the_config_key(state_dict, abstract_model):
  sd = dict(state_dict)
  for head in HEADS:
    sd[f'recognition_network.{head}.gloss_output_layer.weight'] = torch.zeros(slt_ref.CLASSES + 3, slt_ref.HIDDEN)
    sd[f'recognition_network.{head}.gloss_output_layer.bias'] = torch.zeros(slt_ref.CLASSES + 3)
  with pytest.raises(engine.ConversionError) as e:
    hs_conv.convert_s2t(sd, abstract_model)
  msg = str(e.value)
  assert 'gloss_output_layer.weight gives (8, 10)' in msg and 'the model has (8, 7)' in msg
  assert 'model.num_recognition_classes' in msg and len(msg.splitlines()) == 1


def test_inconsistent_encoder_alias_is_named(state_dict, abstract_model):
  sd = dict(state_dict)
  key = 'translation_network.encoder.layers.0.fc1.weight'
  sd[key] = sd[key] + 1.0
  with pytest.raises(engine.ConversionError, match=r'translation_network\.encoder\.layers\.0\.fc1\.weight should be '
                                                   r'the same tensor as translation_network\.model\.model\.encoder'):
    hs_conv.convert_s2t(sd, abstract_model)


def test_cli_hypersign_source_is_wired(tmp_path, capsys):
  bad = os.path.join(tmp_path, 'best.ckpt')
  with open(bad, 'wb') as f:
    f.write(b'not a checkpoint')
  args = ['--source', 'hypersign', '--input', bad, '--output', os.path.join(tmp_path, 'out')]
  assert cli.run(args + ['--config', 'configs/g2t_synthetic.py:smoke']) == 2
  assert 'converts into task slt' in capsys.readouterr().err
  assert cli.run(args + ['--config', 'configs/hypersign_synthetic.py:smoke']) == 2
  err = capsys.readouterr().err
  assert 'not implemented' not in err and f'{bad}: not a readable PyTorch checkpoint' in err
