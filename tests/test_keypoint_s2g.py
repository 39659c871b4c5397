"""The keypoint S2G model and the ``keypoint_s2g`` task: point selection, normalisation, shapes and lengths, and
CTC training through the real trainer on the smoke synthetic corpus (built by the task into a tmp directory)."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import keypoint_s2g_synthetic
from hypersign_jax.models import keypoint_s2g as kp_model
from hypersign_jax.tasks import base
from hypersign_jax.tasks import keypoint_s2g
from hypersign_jax.training import logging as train_logging
from hypersign_jax.training import trainer


def smoke_config(tmp_path):
  c = keypoint_s2g_synthetic.get_config("smoke")
  c.data.dir = str(tmp_path / "data")  # missing: the task builds the smoke corpus there
  return c


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  return keypoint_s2g.KeypointS2GTask(smoke_config(tmp_path_factory.mktemp("kp")))


def device_batch(batch):
  return {k: jnp.asarray(v) for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}


def test_task_is_registered_and_needs_slowfast_padding(tmp_path):
  assert base.get_task("keypoint_s2g") is keypoint_s2g.KeypointS2GTask
  c = smoke_config(tmp_path)
  c.data.pipeline.kp_padding = "zero"
  with pytest.raises(ValueError, match="kp_padding"):
    keypoint_s2g.KeypointS2GTask(c)


def test_twostream_selection_has_79_points_in_part_order():
  pts = kp_model.TWOSTREAM_79
  assert len(pts) == len(set(pts)) == 79
  assert pts[:16] == tuple(range(23, 71, 3)) and pts[16:58] == tuple(range(91, 133))
  assert pts[58:68] == tuple(range(71, 91, 2)) and pts[68:] == tuple(range(11))
  cfg = kp_model.KeypointS2GConfig(num_classes=5)
  assert cfg.input_size == 79 * 3 + 42 * 2


def test_normalisation_removes_position_and_scale_and_drops_unsure_points():
  rng = np.random.default_rng(0)
  kp = rng.uniform(-0.8, 0.8, (2, 6, 133, 3)).astype(np.float32)
  kp[..., 2] = 0.9
  kp[0, 2, 100, 2] = 0.05  # an unsure hand point
  lengths = jnp.array([6, 6])
  moved = kp.copy()
  moved[..., :2] = kp[..., :2] * 1.7 + np.array([0.3, -0.2], np.float32)
  for norm in ("frame", "clip"):
    cfg = kp_model.KeypointS2GConfig(num_classes=5, norm=norm)
    a = np.asarray(kp_model.normalise(jnp.asarray(kp), lengths, cfg))
    b = np.asarray(kp_model.normalise(jnp.asarray(moved), lengths, cfg))
    np.testing.assert_allclose(a, b, atol=1e-4)
  cfg = kp_model.KeypointS2GConfig(num_classes=5, norm="none")
  a = np.asarray(kp_model.normalise(jnp.asarray(kp), lengths, cfg))
  assert not np.allclose(a, np.asarray(kp_model.normalise(jnp.asarray(moved), lengths, cfg)), atol=1e-2)
  k = kp_model.TWOSTREAM_79.index(100)
  assert a.shape == (2, 6, cfg.input_size)
  np.testing.assert_array_equal(a[0, 2, 2 * k:2 * k + 2], 0.0)        # coordinates of the unsure point: 0
  assert a[0, 2, 2 * 79 + k] == pytest.approx(0.05)                    # its confidence is still an input
  assert np.all(a[0, 3, 2 * k:2 * k + 2] != 0.0)


def test_shapes_lengths_and_sequence_features(task):
  model = task.build_model(nnx.Rngs(0))
  model.eval()
  batch = next(iter(task.eval_batches("dev", 4)))
  out = nnx.jit(lambda m, b: m(b["keypoints"], b["video_length"]))(model, device_batch(batch))
  b, t_out = batch["keypoints"].shape[0], (batch["keypoints"].shape[1] - 12) // 4
  num_classes = task.vocab.num_classes
  assert out["sequence_logits"]["main"].shape == out["conv_logits"]["main"].shape == (b, t_out, num_classes)
  expected = np.array([math.ceil(n / 4) for n in batch["num_frames"]])
  np.testing.assert_array_equal(out["feat_lengths"], expected)
  np.testing.assert_array_equal(out["feat_lengths"], batch["feat_length"])
  seq, lengths = nnx.jit(lambda m, b: m.sequence_features(b["keypoints"], b["video_length"]))(
      model, device_batch(batch))
  assert seq.shape == (b, t_out, task.config.model.hidden_size)
  np.testing.assert_array_equal(lengths, expected)
  seq = np.asarray(seq)
  for i, n in enumerate(expected):
    assert np.all(seq[i, n:] == 0) and np.any(seq[i, :n] != 0)
  # sequence_features is exactly the classifier's input
  np.testing.assert_allclose(np.asarray(model.classifier(jnp.asarray(seq))), out["sequence_logits"]["main"],
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="main"):
    model(jnp.asarray(batch["keypoints"]), jnp.asarray(batch["video_length"]), branches=("slow",))


def test_a_few_training_steps_lower_the_ctc_loss(tmp_path, task):
  c = keypoint_s2g_synthetic.get_config("smoke")
  c.data.dir = task.data_dir
  c.train.num_steps = 24
  c.eval.final_splits = ()
  workdir = str(tmp_path / "work")
  trainer.train_and_evaluate(c, workdir, task=keypoint_s2g.KeypointS2GTask(c))
  events = [e for e in train_logging.read_metrics(workdir) if e["split"] == "train"]
  ctc = [e["main/seq_ctc"] for e in events]
  assert len(ctc) == 24
  assert np.mean(ctc[-5:]) < 0.75 * np.mean(ctc[:3]), ctc
  assert all(e["ctc_infeasible"] == 0 for e in events)
  dev = [e for e in train_logging.read_metrics(workdir) if e["split"] == "dev"]
  assert dev and dev[-1]["num_samples"] == 8
