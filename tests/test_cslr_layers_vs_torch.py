"""SlowFastSign temporal layers and losses against PyTorch references written with the original's structure."""
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from hypersign_jax.losses import ctc as ctc_lib
from hypersign_jax.losses import distill
from hypersign_jax.models import cslr, layers
from hypersign_jax.models import temporal_conv as tconv

torch.set_num_threads(1)


def _labels(rng, b, max_len, num_classes, lengths, repeats=False):
  labels = rng.integers(1, num_classes, size=(b, max_len))
  if repeats:  # force some adjacent repeats
    labels[:, 1] = labels[:, 0]
  for i, n in enumerate(lengths):
    labels[i, n:] = 0
  return labels.astype(np.int32)


# ----------------------------------------------------------------------------------------------------- CTC

def test_ctc_matches_torch_per_sequence_and_batch_mean():
  rng = np.random.default_rng(0)
  b, t, c, lmax = 6, 20, 9, 7
  logits = rng.normal(size=(b, t, c)).astype(np.float32) * 3
  logit_lengths = np.array([20, 17, 12, 9, 20, 5], np.int32)
  label_lengths = np.array([7, 3, 5, 4, 0, 4], np.int32)
  labels = _labels(rng, b, lmax, c, label_lengths, repeats=True)
  labels[3, :4] = [2, 2, 2, 2]  # 4 labels + 3 repeats = 7 <= 9 frames: feasible, just
  labels[5, :4] = [3, 3, 4, 4]  # 4 labels + 2 repeats = 6 > 5 frames: infeasible
  loss, feasible = jax.jit(ctc_lib.ctc_loss)(jnp.asarray(logits), logit_lengths, jnp.asarray(labels),
                                             label_lengths)
  loss, feasible = np.asarray(loss), np.asarray(feasible)
  assert feasible.tolist() == [True, True, True, True, True, False]

  log_probs = torch.log_softmax(torch.tensor(logits), -1).transpose(0, 1)  # (T, B, C) as the original
  targets = torch.tensor(labels, dtype=torch.long)
  ref = torch.nn.CTCLoss(blank=0, reduction="none")(log_probs, targets, torch.tensor(logit_lengths),
                                                    torch.tensor(label_lengths)).numpy()
  assert np.isinf(ref[5])  # the original's zero_infinity=False
  np.testing.assert_allclose(loss[:5], ref[:5], rtol=1e-4)
  assert loss[5] == 0.0

  mean, info = jax.jit(ctc_lib.mean_ctc_loss)(jnp.asarray(logits), logit_lengths, jnp.asarray(labels), label_lengths)
  ref_mean = torch.nn.CTCLoss(blank=0, reduction="none", zero_infinity=True)(
      log_probs, targets, torch.tensor(logit_lengths), torch.tensor(label_lengths)).mean().item()
  np.testing.assert_allclose(float(mean), ref_mean, rtol=1e-4)
  assert float(info["num_infeasible"]) == 1.0

  inf_loss, _ = jax.jit(ctc_lib.ctc_loss, static_argnames="zero_infeasible")(
      jnp.asarray(logits), logit_lengths, jnp.asarray(labels), label_lengths, zero_infeasible=False)
  assert np.isinf(np.asarray(inf_loss)[5])


def test_ctc_gradient_matches_torch_and_is_zero_for_infeasible():
  rng = np.random.default_rng(1)
  b, t, c = 3, 10, 6
  logits = rng.normal(size=(b, t, c)).astype(np.float32)
  logit_lengths = np.array([10, 7, 3], np.int32)
  label_lengths = np.array([4, 2, 3], np.int32)
  labels = _labels(rng, b, 4, c, label_lengths)
  labels[2, :3] = [1, 1, 2]  # 3 labels + 1 repeat = 4 > 3 frames
  grad = jax.jit(jax.grad(lambda x: ctc_lib.mean_ctc_loss(x, logit_lengths, jnp.asarray(labels), label_lengths)[0]))(
      jnp.asarray(logits))
  x = torch.tensor(logits, requires_grad=True)
  ref = torch.nn.CTCLoss(blank=0, reduction="none", zero_infinity=True)(
      torch.log_softmax(x, -1).transpose(0, 1), torch.tensor(labels, dtype=torch.long),
      torch.tensor(logit_lengths), torch.tensor(label_lengths)).mean()
  ref.backward()
  g = np.asarray(grad)
  np.testing.assert_allclose(g[:2, :], x.grad.numpy()[:2, :], atol=1e-5)
  assert np.all(g[2] == 0.0)
  assert np.all(g[1, 7:] == 0.0)  # padded frames get no gradient


# ------------------------------------------------------------------------------------------------ BiLSTM

def _load_lstm(jax_lstm: layers.MaskedBiLSTM, torch_lstm: torch.nn.LSTM):
  sd = {k: v.detach().numpy() for k, v in torch_lstm.state_dict().items()}
  for l, layer in enumerate(jax_lstm.layers):
    for name, key in (("w_ih", "weight_ih"), ("w_hh", "weight_hh")):
      getattr(layer, name)[...] = jnp.stack([sd[f"{key}_l{l}"].T, sd[f"{key}_l{l}_reverse"].T])
    for name, key in (("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
      getattr(layer, name)[...] = jnp.stack([sd[f"{key}_l{l}"], sd[f"{key}_l{l}_reverse"]])


def test_masked_bilstm_matches_torch_packed_sequence():
  torch.manual_seed(0)
  t, b, d_in, hidden = 11, 4, 10, 16
  ref = torch.nn.LSTM(d_in, hidden // 2, num_layers=2, bidirectional=True, dropout=0.3).eval()
  model = layers.MaskedBiLSTM(d_in, hidden, num_layers=2, dropout=0.3, rngs=nnx.Rngs(0))
  model.eval()
  _load_lstm(model, ref)
  x = torch.randn(t, b, d_in)
  lengths = torch.tensor([7, 11, 1, 4])  # unsorted: the JAX layer needs no sorting
  with torch.no_grad():
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, _ = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=t)  # (T, B, H), zeros on padding
  got = np.asarray(nnx.jit(lambda m, x, n: m(x, n))(model, jnp.asarray(x.numpy().transpose(1, 0, 2)),
                                                    jnp.asarray(lengths.numpy())))
  want = out.numpy().transpose(1, 0, 2)
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
  for i, n in enumerate(lengths.tolist()):
    assert np.all(got[i, n:] == 0.0)
  # The backward direction starts at each sequence's own last valid step: its first output depends on all steps.
  assert not np.allclose(got[0, 0, hidden // 2:], 0.0)


def test_bilstm_dropout_only_between_layers_in_training():
  model = layers.MaskedBiLSTM(6, 8, num_layers=1, dropout=0.9, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 5, 6))
  lengths = jnp.array([5, 3])
  call = nnx.jit(lambda m, x, n: m(x, n))
  model.train()
  a = call(model, x, lengths)
  model.eval()
  np.testing.assert_array_equal(np.asarray(a), np.asarray(call(model, x, lengths)))  # one layer: no dropout


# ----------------------------------------------------------------------------------------------- TemporalConv

def _torch_temporal_conv(c_in, hidden):
  """The original's stack for conv_type=2: K5 = Conv1d(k=5, pad 0) + BN + ReLU, P2 = MaxPool1d(2)."""
  return torch.nn.Sequential(
      torch.nn.Conv1d(c_in, hidden, 5, stride=1, padding=0), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
      torch.nn.MaxPool1d(2, ceil_mode=False),
      torch.nn.Conv1d(hidden, hidden, 5, stride=1, padding=0), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
      torch.nn.MaxPool1d(2, ceil_mode=False))


def _torch_update_lgt(lgt):
  for ks in ["K5", "P2", "K5", "P2"]:
    lgt = lgt - 4 if ks[0] == "K" else torch.div(lgt, 2)
  return lgt


def _load_tconv(model: tconv.TemporalConv, ref: torch.nn.Sequential):
  for j, (ci, bi) in enumerate(((0, 1), (4, 5))):
    conv, bn = ref[ci], ref[bi]
    model.convs[j].kernel[...] = jnp.asarray(conv.weight.detach().numpy().transpose(2, 1, 0))
    model.convs[j].bias[...] = jnp.asarray(conv.bias.detach().numpy())
    model.bns[j].scale[...] = jnp.asarray(bn.weight.detach().numpy())
    model.bns[j].bias[...] = jnp.asarray(bn.bias.detach().numpy())
    model.bns[j].mean[...] = jnp.asarray(bn.running_mean.numpy())
    model.bns[j].var[...] = jnp.asarray(bn.running_var.numpy())


@pytest.mark.parametrize("train", [False, True])
def test_temporal_conv_matches_torch(train):
  torch.manual_seed(1)
  c_in, hidden, b = 12, 16, 3
  ref = _torch_temporal_conv(c_in, hidden)
  with torch.no_grad():
    for m in ref:
      if isinstance(m, torch.nn.BatchNorm1d):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  ref.train(train)
  model = tconv.TemporalConv(c_in, hidden, rngs=nnx.Rngs(0))
  model.train() if train else model.eval()
  _load_tconv(model, ref)
  num_frames = np.array([21, 9, 30])
  video_len = 4 * np.ceil(num_frames / 4).astype(int) + 12  # the original collate: 4*ceil(T/4)+12
  t_pad = int(video_len.max())
  x = torch.randn(b, c_in, t_pad)
  with torch.no_grad():
    want = ref(x).numpy().transpose(0, 2, 1)
  want_len = _torch_update_lgt(torch.tensor(video_len)).int().numpy()
  got, got_len = nnx.jit(lambda m, x, n: m(x, n))(model, jnp.asarray(x.numpy().transpose(0, 2, 1)),
                                                  jnp.asarray(video_len))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)
  np.testing.assert_array_equal(np.asarray(got_len), want_len)
  np.testing.assert_array_equal(np.asarray(got_len), np.ceil(num_frames / 4).astype(int))  # = batch feat_length
  assert got.shape[1] == tconv.output_size(t_pad) == (t_pad - 12) // 4
  # The float lengths are the original's true division.
  np.testing.assert_allclose(np.asarray(tconv.output_length(jnp.array([13.0]))), [0.25])


# ------------------------------------------------------------------------------------------ NormLinear, SeqKD

def test_norm_linear_matches_reference():
  model = layers.NormLinear(8, 5, rngs=nnx.Rngs(3))
  x = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)
  w = torch.tensor(np.asarray(model.weight[...]))
  want = (torch.tensor(x) @ torch.nn.functional.normalize(w, dim=0)).numpy()
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, atol=1e-6)
  bound = np.sqrt(2.0) * np.sqrt(6.0 / (8 + 5))  # xavier_uniform(gain=sqrt(2))
  assert np.abs(np.asarray(model.weight[...])).max() <= bound


def _torch_seqkd(student_tbc, teacher_tbc, t=8.0):
  """The original: blank dropped, flattened to (T*B, C-1), KLDivLoss(batchmean) * T^2, teacher detached."""
  s = student_tbc[:, :, 1:].reshape(-1, student_tbc.shape[-1] - 1)
  te = teacher_tbc[:, :, 1:].reshape(-1, teacher_tbc.shape[-1] - 1).detach()
  kd = torch.nn.KLDivLoss(reduction="batchmean")
  return kd(torch.log_softmax(s / t, -1), torch.softmax(te / t, -1)) * t * t


def test_seqkd_matches_original_formula_and_batch_max_mask():
  rng = np.random.default_rng(0)
  b, t_bucket, c = 3, 9, 7
  lengths = np.array([6, 4, 5])
  t_orig = lengths.max()  # the original pads to the batch's longest clip
  student = rng.normal(size=(b, t_bucket, c)).astype(np.float32) * 4
  teacher = rng.normal(size=(b, t_bucket, c)).astype(np.float32) * 4
  teacher[np.arange(t_bucket)[None, :] >= lengths[:, None]] = 0.0  # BiLSTM pads with zeros
  ref = _torch_seqkd(torch.tensor(student[:, :t_orig].transpose(1, 0, 2)),
                     torch.tensor(teacher[:, :t_orig].transpose(1, 0, 2))).item()
  mask = np.broadcast_to(np.arange(t_bucket)[None, :] < t_orig, (b, t_bucket))
  got = float(distill.seqkd_loss(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(mask)))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # Unmasked = the formula over every frame of the tensor.
  ref_all = _torch_seqkd(torch.tensor(student.transpose(1, 0, 2)), torch.tensor(teacher.transpose(1, 0, 2))).item()
  np.testing.assert_allclose(float(distill.seqkd_loss(jnp.asarray(student), jnp.asarray(teacher))), ref_all,
                             rtol=1e-5)
  # The teacher is detached.
  g = jax.grad(lambda te: distill.seqkd_loss(jnp.asarray(student), te))(jnp.asarray(teacher))
  assert np.all(np.asarray(g) == 0.0)


# --------------------------------------------------------------------------------------------- the model

class _StandIn(nnx.Module):
  """Stand-in backbone: per-frame spatial mean -> Linear -> (C_slow + C_fast) features."""

  def __init__(self, dims, rngs):
    self.proj = nnx.Linear(3, sum(dims), rngs=rngs)

  def __call__(self, x):
    return {"fused": nnx.relu(self.proj(x.mean(axis=(2, 3))))}


def test_pfe_paths_in_training_only_and_shared_classifier():
  cfg = cslr.SlowFastSignConfig(num_classes=6, hidden_size=8)
  model = cslr.SlowFastSign(cfg, rngs=nnx.Rngs(0), backbone=_StandIn((6, 2), nnx.Rngs(1)), feature_dims=(6, 2))
  video = jax.random.normal(jax.random.key(0), (2, 28, 4, 4, 3))
  video_len = jnp.array([28, 20])
  call = nnx.jit(lambda m, v, n: m(v, n))
  model.train()
  out = call(model, video, video_len)
  assert set(out["sequence_logits"]) == set(out["conv_logits"]) == {"main", "slow", "fast"}
  np.testing.assert_array_equal(np.asarray(out["feat_lengths"]), [4, 2])
  assert np.all(np.asarray(out["sequence_logits"]["main"])[1, 2:] == 0.0)  # zero at padded steps
  model.eval()
  called = []
  orig = tconv.TemporalConv.__call__
  with mock.patch.object(tconv.TemporalConv, "__call__", lambda self, *a: (called.append(self.convs[0].in_features), orig(self, *a))[1]):
    out = call(model, video, video_len)
  assert set(out["sequence_logits"]) == {"main"}
  assert called == [6 + 2]  # only the main path (2304-wide at R101) runs in eval mode
  # share_classifier: the conv head IS the path's classifier.
  conv_head = nnx.jit(lambda m, v, n: m.classifier[0](m.main_temporal_conv(m.features(v), n)[0]))
  np.testing.assert_allclose(np.asarray(out["conv_logits"]["main"]), np.asarray(conv_head(model, video, video_len)),
                             atol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
def test_sequence_residual_adds_the_masked_temporal_conv_features(residual):
  """``sequence_residual`` (not in the original; off by default): the sequence head classifies BiLSTM(x) + x,
  with x the TemporalConv features zeroed past each length; off, it classifies the BiLSTM output alone."""
  cfg = cslr.SlowFastSignConfig(num_classes=6, hidden_size=8, pfe=False, sequence_residual=residual)
  model = cslr.SlowFastSign(cfg, rngs=nnx.Rngs(0), backbone=_StandIn((6, 2), nnx.Rngs(1)), feature_dims=(6, 2))
  model.eval()
  video = jax.random.normal(jax.random.key(0), (2, 28, 4, 4, 3))
  video_len = jnp.array([28, 20])
  out = nnx.jit(lambda m, v, n: m(v, n))(model, video, video_len)
  x, lengths = model.main_temporal_conv(model.features(video), video_len)
  h = np.asarray(model.temporal_model[0](x, lengths))
  valid = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
  expected_in = h + np.where(valid, np.asarray(x), 0.0) if residual else h
  assert np.abs(np.where(valid, 0.0, np.asarray(x))).max() > 0  # the conv features are not zero past the lengths
  np.testing.assert_allclose(np.asarray(out["sequence_logits"]["main"]),
                             np.asarray(model.classifier[0](jnp.asarray(expected_in))), atol=1e-5)
  assert np.all(np.asarray(out["sequence_logits"]["main"])[1, 2:] == 0.0)  # still zero at padded steps
  feats, _ = model.sequence_features(video, video_len)  # what --mode extract writes
  np.testing.assert_allclose(np.asarray(feats), expected_in, atol=1e-5)
