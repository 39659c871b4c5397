"""The whole HyperSign S2T training loss equals a PyTorch reference assembled after the original's structure.

Reference: two VisualHeads, the VLMapper with DSG and the SST network from tests/test_hypersign_modules_vs_torch.py
(original module names), HF `MBartForConditionalGeneration` for the translation part, the PSC views with a fixed
lambda pair, the encoder input built per sample (valid frames + `</s>` + language rows of `model.shared`, all x
sqrt(d_model)), two teacher-forced passes, XentLoss (label smoothing 0.2) per view, symmetric decoder KL and
encoder-channel KL with their warm-up factors, SST. Dropout off, BatchNorm in training mode, float32, 1e-5.
Our parameters come from the reference's state dict through the converters' name rules (one name per tensor).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import test_g2t as g2t_ref
import test_hypersign_modules_vs_torch as ref
from checkpoints_conversion import hf_mbart
from hypersign_jax.models import fusion, mbart, psc, slt, sst, visual_head
from hypersign_jax.tasks import slt as slt_task

TOL = 1e-5
B, T, L = 3, 5, 6
LENGTHS = [5, 3, 4]
DIMS = {'rgb': 12, 'keypoint': 10}
HIDDEN, FF, CLASSES = 8, 16, 7
D_MODEL, VOCAB, LANG, PAD, EOS = 16, 40, 6, 1, 2
SD_NUM, SD_DIM = 12, 8
LAMBDAS = (0.3, 0.6)
STEP = 1000  # warm-up factors 1.25 (KL) and 0.25 (gkl)
LOSS = dict(label_smoothing=0.2, gkl_weight=1.0, kl_factor=5.0, kl_warmup_steps=4000, gkl_factor=1.0,
            gkl_warmup_steps=4000, sst_weight=1.0, mask_padding=False, ctc=False, recognition_weight=0.0)


class TS2T(torch.nn.Module):
  """HyperSign's S2T forward + loss (mode hyper, feature input), attribute names as the original."""

  def __init__(self):
    super().__init__()
    self.recognition_network = torch.nn.Module()
    self.recognition_network.visual_head = ref.TVisualHead(CLASSES, DIMS['rgb'], HIDDEN, FF, p=0.0)
    self.recognition_network.visual_head_keypoint = ref.TVisualHead(CLASSES, DIMS['keypoint'], HIDDEN, FF, p=0.0)
    self.vl_mapper = ref.TVLMapper('fuse_projection_share', HIDDEN, D_MODEL, 0.0)
    self.translation_network = torch.nn.Module()
    hf_cfg = transformers.MBartConfig(
        vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=32,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, scale_embedding=True, pad_token_id=PAD,
        bos_token_id=0, eos_token_id=EOS)
    hf_cfg._attn_implementation = 'eager'  # pylint: disable=protected-access
    self.translation_network.model = transformers.MBartForConditionalGeneration(hf_cfg)
    self.translation_network.SST_network = ref.TSST(D_MODEL, SD_NUM, SD_DIM)

  def forward(self, feats, mask, decoder_input_ids, labels, lambdas, step):
    rn, tn = self.recognition_network, self.translation_network
    rgb = rn.visual_head(feats['rgb'], mask)
    kp = rn.visual_head_keypoint(feats['keypoint'], mask)
    mapped = self.vl_mapper(rgb['gloss_feature'], kp['gloss_feature'])
    f_f, f_v, f_k = mapped['output'], mapped['rgb_feature'], mapped['keypoint_feature']
    view1 = lambdas[0] * f_v + (1 - lambdas[0]) * f_f
    view2 = lambdas[1] * f_k + (1 - lambdas[1]) * view1
    lengths = mask.sum(-1)
    shared = tn.model.model.shared.weight
    suffix = shared[torch.tensor([EOS, LANG])]

    def encoder_inputs(view):
      rows = []
      for i, n in enumerate(lengths.tolist()):
        x = torch.cat([view[i, :n], suffix], dim=0)
        rows.append(torch.cat([x, torch.zeros(T + 2 - x.shape[0], D_MODEL)], dim=0))
      enc_mask = (torch.arange(T + 2)[None] < (lengths[:, None] + 2)).long()
      return torch.stack(rows) * math.sqrt(D_MODEL), enc_mask

    outs = []
    for view in (view1, view2):
      embeds, enc_mask = encoder_inputs(view)
      enc = tn.model.model.encoder(inputs_embeds=embeds, attention_mask=enc_mask).last_hidden_state
      out = tn.model(attention_mask=enc_mask, decoder_input_ids=decoder_input_ids, encoder_outputs=(enc,),
                     output_hidden_states=True)
      outs.append((enc, out.logits, out.decoder_hidden_states[-1]))
    (enc1, logits1, dec1), (enc2, logits2, dec2) = outs
    ce = [g2t_ref.torch_xent_loss(torch.log_softmax(lg, -1), labels, 0.2, PAD) / B for lg in (logits1, logits2)]
    kl = ref.t_sym_kl(logits1, logits2) / B * ref.t_warmup(step, 5.0, 4000)
    gkl = ref.t_sym_kl(enc1, enc2) / B * ref.t_warmup(step, 1.0, 4000)
    sst_loss = ref.t_sst_loss(tn.SST_network(enc1, enc2, dec1, dec2), 1.0)
    return ce[0] + ce[1] + kl + gkl + sst_loss, {'ce_view1': ce[0], 'ce_view2': ce[1], 'kl_loss': kl,
                                                  'gkl_loss': gkl, 'sst_loss': sst_loss}


def _our_model() -> slt.HyperSignSLT:
  cfg = slt.SLTConfig(
      streams=('rgb', 'keypoint'), input_sizes=(DIMS['rgb'], DIMS['keypoint']),
      head=visual_head.VisualHeadConfig(hidden_size=HIDDEN, ff_size=FF, num_classes=CLASSES, dropout=0.0),
      mapper=fusion.VLMapperConfig(in_features=HIDDEN, out_features=D_MODEL, fusion_dropout=0.0),
      psc=psc.PSCConfig(final_step=10 * STEP),
      sst=sst.SSTConfig(video_dim=D_MODEL, text_dim=D_MODEL, sd_num=SD_NUM, sd_dim=SD_DIM),
      mbart=mbart.MBartConfig(vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=1, decoder_layers=1,
                              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
                              decoder_ffn_dim=24, max_position_embeddings=32, dropout=0.0, attention_dropout=0.0),
      lang_id=LANG, eos_id=EOS)
  return slt.HyperSignSLT(cfg, rngs=nnx.Rngs(0))


def _load_reference_weights(model: slt.HyperSignSLT, reference: TS2T) -> None:
  sd = reference.state_dict()
  mbart_sd = {k[len('translation_network.model.'):]: v for k, v in sd.items()
              if k.startswith('translation_network.model.')}
  rest = {k: v for k, v in sd.items() if not k.startswith('translation_network.model.')}
  pure = ref._torch_to_nnx(rest)  # pylint: disable=protected-access
  pure['translation_network']['model'] = hf_mbart.convert(mbart_sd, model.mbart.config)
  state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat, mbart.Buffer))
  ours = set(ref._flat_keys(nnx.to_pure_dict(state)))  # pylint: disable=protected-access
  theirs = set(ref._flat_keys(pure))  # pylint: disable=protected-access
  assert ours == theirs, (sorted(ours - theirs)[:5], sorted(theirs - ours)[:5])  # one tensor per parameter
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  mask = (np.arange(T)[None] < np.asarray(LENGTHS)[:, None])
  feats = {s: np.where(mask[..., None], rng.normal(size=(B, T, d)), 0.0).astype(np.float32) + 1e-8
           for s, d in DIMS.items()}
  targets = [list(rng.integers(30, VOCAB, size=n)) + [EOS, LANG] for n in (4, 2, 3)]
  from hypersign_jax.text import tokenizer as tok  # pylint: disable=import-outside-toplevel
  t = tok.encode_targets(targets, LANG, L)
  return feats, mask.astype(np.int64), t['decoder_input_ids'], t['labels']


@pytest.fixture(scope='module')
def pair():
  torch.manual_seed(0)
  reference = TS2T()
  ref._randomise(reference, 7)  # pylint: disable=protected-access
  with torch.no_grad():  # mBART-like scales for the translation part (keeps the softmaxes informative)
    for name, p in reference.translation_network.model.named_parameters():
      if 'layer_norm' not in name and 'layernorm' not in name:
        p.mul_(0.5)
  reference.train()
  model = _our_model()
  _load_reference_weights(model, reference)
  model.train()
  model.translation_network.num_updates[...] = jnp.asarray(STEP, jnp.int32)
  model.translation_network.psc.step[...] = jnp.asarray(STEP, jnp.int32)
  return reference, model


def test_s2t_training_loss_and_gradients_equal_pytorch(pair, monkeypatch):
  reference, model = pair
  feats, mask, dec_in, labels = _inputs()
  fixed = iter(LAMBDAS * 2)
  monkeypatch.setattr(psc, 'sample_lambda', lambda key, sigma, mean=0.0: jnp.float32(next(fixed)))

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def loss_and_grad(params, rest):
    def f(p):
      m = nnx.merge(graphdef, p, rest, copy=True)
      out = m({k: jnp.asarray(v) for k, v in feats.items()}, {k: jnp.asarray(mask) for k in feats},
              jnp.asarray(dec_in))
      return slt_task.s2t_loss(out, jnp.asarray(labels), ml_collections.ConfigDict(LOSS))
    return jax.value_and_grad(f, has_aux=True)(params)

  (loss, metrics), grads = loss_and_grad(params, rest)
  t_loss, t_terms = reference({k: torch.from_numpy(v) for k, v in feats.items()}, torch.from_numpy(mask),
                              torch.from_numpy(dec_in).long(), torch.from_numpy(labels).long(), LAMBDAS, STEP)
  t_loss.backward()

  np.testing.assert_allclose(float(loss), t_loss.item(), rtol=TOL, atol=TOL)
  for k, v in t_terms.items():
    np.testing.assert_allclose(float(metrics[k]), v.item(), rtol=TOL, atol=TOL, err_msg=k)
  assert float(metrics['kl_loss']) > 1e-4 and float(metrics['gkl_loss']) > 1e-6  # the terms are exercised
  np.testing.assert_allclose(float(metrics['lambda1']), LAMBDAS[0])
  np.testing.assert_allclose(float(metrics['lambda2']), LAMBDAS[1])

  # Gradients of representative parameters of every part (torch layout -> ours).
  g = nnx.to_pure_dict(grads)
  tp = dict(reference.named_parameters())
  checks = {
      'recognition_network.visual_head.fc1.weight': g['recognition_network']['visual_head']['fc1']['kernel'].T,
      'recognition_network.visual_head_keypoint.bn1.norm.weight':
          g['recognition_network']['visual_head_keypoint']['bn1']['norm']['scale'],
      'vl_mapper.FusionNet.block.gamma_hypernet.0.weight':
          g['vl_mapper']['FusionNet']['block']['gamma_hypernet'][0]['kernel'].T,
      'translation_network.model.model.shared.weight': g['translation_network']['model']['model']['shared']['embedding'],
      'translation_network.model.model.encoder.layers.0.fc1.weight':
          g['translation_network']['model']['model']['encoder']['layers'][0]['fc1']['kernel'].T,
      'translation_network.SST_network.space_dict': g['translation_network']['SST_network']['space_dict'],
      'translation_network.SST_network.logit_scale': g['translation_network']['SST_network']['logit_scale'],
  }
  for name, ours in checks.items():
    theirs = tp[name].grad.numpy()
    ours = np.asarray(ours)
    if name.endswith('shared.weight'):
      # torch's Embedding(padding_idx=1) gives the pad row no gradient from the token lookups (only from the tied
      # LM head); our mBART's lookup does (decoder inputs contain pads). Compared on every other row.
      ours, theirs = np.delete(ours, PAD, axis=0), np.delete(theirs, PAD, axis=0)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(theirs).max()),
                               err_msg=name)


def test_eval_mode_views_are_fused_and_inference_needs_no_references(pair):
  """In eval both views are F_f (KL terms 0) and `encode_fused` equals the teacher-forced view-1 encoder."""
  _, model = pair
  feats, mask, dec_in, _ = _inputs(1)
  model.eval()
  try:
    f = {k: jnp.asarray(v) for k, v in feats.items()}
    m = {k: jnp.asarray(mask) for k in feats}
    out, (enc, enc_mask) = nnx.jit(lambda mod: (mod(f, m, jnp.asarray(dec_in)), mod.encode_fused(f, m)))(model)
  finally:
    model.train()
  np.testing.assert_array_equal(np.asarray(out['encoder'][0]), np.asarray(out['encoder'][1]))
  np.testing.assert_allclose(np.asarray(enc), np.asarray(out['encoder'][0]), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(enc_mask).sum(-1), np.asarray(LENGTHS) + 2)
