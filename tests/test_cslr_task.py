"""The ``cslr`` task through the real trainer on the smoke synthetic corpus (built by the task into tmp_path).

A stand-in backbone (per-frame pooling + Linear) replaces the SlowFast network so the test stays well under a
minute on 2 CPU cores; everything else (pipeline, TemporalConv, BiLSTMs, PFE, CTC, SeqKD, decoding, scorer) is real.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import slowfastsign_synthetic
from hypersign_jax.metrics import sclite_files, wer
from hypersign_jax.models import cslr as cslr_model
from hypersign_jax.tasks import base
from hypersign_jax.tasks import cslr
from hypersign_jax.training import logging as train_logging
from hypersign_jax.training import trainer

DIMS = (24, 8)


class StandInBackbone(nnx.Module):
  """(B, T, H, W, 3) -> 2x2 spatial average pooling -> Linear -> ReLU: per-frame (C_slow + C_fast) features."""

  def __init__(self, rngs):
    self.proj = nnx.Linear(12, sum(DIMS), rngs=rngs)

  def __call__(self, x):
    b, t, h, w, c = x.shape
    x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, t, 2, h // 2, 2, w // 2, c).mean(axis=(3, 5))
    return {"fused": nnx.relu(self.proj(x.reshape(b, t, 12)))}


class StandInTask(cslr.CSLRTask):

  def build_model(self, rngs):
    return cslr_model.SlowFastSign(self.model_config(), rngs=rngs, backbone=StandInBackbone(rngs),
                                   feature_dims=DIMS)


def small_config(tmp_path, **train):
  c = slowfastsign_synthetic.get_config("smoke")
  c.data.dir = str(tmp_path / "data")  # missing: the task builds the smoke corpus there
  c.train.num_steps = 24
  c.train.log_every = 1
  c.optimizer.lr = 3e-3
  c.eval.decode = "beam"
  for k, v in train.items():
    setattr(c.train, k, v)
  return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("cslr")
  c = small_config(tmp)
  task = StandInTask(c)
  workdir = str(tmp / "work")
  final = trainer.train_and_evaluate(c, workdir, task=task)
  return c, task, workdir, final


def test_task_is_registered():
  assert base.get_task("cslr") is cslr.CSLRTask


def test_training_decreases_the_loss(trained):
  _, _, workdir, _ = trained
  events = [e for e in train_logging.read_metrics(workdir) if e["split"] == "train"]
  losses = [e["loss"] for e in events]
  assert len(losses) == 24
  assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:3]), losses
  assert all(e["ctc_infeasible"] == 0 for e in events)
  # total = L_main + 0.25 L_slow + 0.25 L_fast, each path = SeqCTC + ConvCTC + 25 SeqKD
  e = events[-1]
  np.testing.assert_allclose(e["loss"], e["main/loss"] + 0.25 * (e["slow/loss"] + e["fast/loss"]), rtol=1e-4)
  np.testing.assert_allclose(e["main/loss"], e["main/seq_ctc"] + e["main/conv_ctc"] + 25 * e["main/seqkd"],
                             rtol=1e-4)


def test_eval_scores_the_ctm_with_the_real_scorer(trained):
  c, task, workdir, final = trained
  dev = final["dev"]
  refs = {u: g for u, _, g in sclite_files.read_stm(os.path.join(task.data_dir, "dev.stm"))}
  hyps = sclite_files.read_ctm(os.path.join(workdir, "hyp_dev.ctm"))
  assert set(hyps) == set(refs) and dev["num_samples"] == len(refs) == 8
  result = wer.corpus_wer(refs, {k: " ".join(v) for k, v in hyps.items()}, cleanup=c.eval.cleanup)
  assert dev["wer"] == pytest.approx(result.wer)
  assert dev["wer"] == pytest.approx(dev["sub"] + dev["del"] + dev["ins"])
  with open(os.path.join(workdir, "final_metrics.json"), encoding="utf-8") as f:
    assert json.load(f)["dev"]["wer"] == pytest.approx(dev["wer"])


def test_eval_fn_returns_main_path_log_probs_and_lengths(trained):
  c, task, _, _ = trained
  model = task.build_model(nnx.Rngs(0))
  model.eval()
  batch = next(iter(task.eval_batches("dev", 4)))
  device = {k: jnp.asarray(v) for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}
  out = jax.device_get(nnx.jit(task.eval_fn)(model, device))
  assert set(out) == {"log_probs", "lengths"}
  np.testing.assert_array_equal(out["lengths"], batch["feat_length"])
  np.testing.assert_allclose(np.exp(out["log_probs"]).sum(-1), 1.0, rtol=1e-5)


def test_missing_dataset_dir_without_preset_is_an_error(tmp_path):
  c = slowfastsign_synthetic.get_config("smoke")
  c.data.dir = str(tmp_path / "nothing")
  c.data.synthetic_preset = ""
  with pytest.raises(FileNotFoundError, match="data.dir"):
    cslr.CSLRTask(c)
