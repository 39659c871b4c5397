"""``--mode extract`` and the feature merge: smoke-trained S2G runs (keypoint model, and the RGB SlowFastSign model
with a stand-in backbone) -> per-split feature records -> a two-stream dataset the ``slt`` task reads.

Everything lives in tmp directories: the smoke corpus is built by the tasks, each S2G model trains a few steps.
"""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import hypersign_synthetic
from configs import keypoint_s2g_synthetic
from configs import slowfastsign_synthetic
from data_pipelines import array_record_io
from data_pipelines import merge_features
from hypersign_jax import extraction
from hypersign_jax.metrics import sclite_files
from hypersign_jax.models import cslr as cslr_model
from hypersign_jax.tasks import cslr
from hypersign_jax.tasks import keypoint_s2g
from hypersign_jax.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = ("train", "dev", "test")
DIMS = (24, 8)


class StandInBackbone(nnx.Module):
  """(B, T, H, W, 3) -> 2x2 spatial average pooling -> Linear -> ReLU (a cheap stand-in for SlowFast)."""

  def __init__(self, rngs):
    self.proj = nnx.Linear(12, sum(DIMS), rngs=rngs)

  def __call__(self, x):
    b, t, h, w, c = x.shape
    x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, t, 2, h // 2, 2, w // 2, c).mean(axis=(3, 5))
    return {"fused": nnx.relu(self.proj(x.reshape(b, t, 12)))}


class StandInRGBTask(cslr.CSLRTask):

  def build_model(self, rngs):
    return cslr_model.SlowFastSign(self.model_config(), rngs=rngs, backbone=StandInBackbone(rngs),
                                   feature_dims=DIMS)


def _short(c, data_dir, steps):
  c.data.dir = data_dir
  c.train.num_steps = steps
  c.eval.final_splits = ()
  return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("extract")
  data_dir = str(tmp / "data")
  kp_cfg = _short(keypoint_s2g_synthetic.get_config("smoke"), data_dir, 6)
  kp_task = keypoint_s2g.KeypointS2GTask(kp_cfg)  # builds the smoke corpus
  trainer.train_and_evaluate(kp_cfg, str(tmp / "kp"), task=kp_task)
  kp_summary = extraction.extract_features(kp_cfg, str(tmp / "kp"), task=kp_task, progress=False)

  rgb_cfg = _short(slowfastsign_synthetic.get_config("smoke"), data_dir, 4)
  rgb_cfg.model.hidden_size = 48
  rgb_task = StandInRGBTask(rgb_cfg)
  trainer.train_and_evaluate(rgb_cfg, str(tmp / "rgb"), task=rgb_task)
  rgb_out = str(tmp / "rgb_features")
  rgb_summary = extraction.extract_features(rgb_cfg, str(tmp / "rgb"), out=rgb_out, task=rgb_task, progress=False)
  merged = str(tmp / "merged")
  merge_features.merge([("rgb", rgb_out, "rgb"), ("keypoint", kp_summary["out"], "keypoint")], merged)
  return {"tmp": tmp, "data": data_dir, "kp": (kp_cfg, kp_task, kp_summary), "rgb": (rgb_cfg, rgb_task, rgb_summary),
          "merged": merged}


@pytest.mark.parametrize("stream", ["kp", "rgb"])
def test_records_match_the_source_split(runs, stream):
  cfg, task, summary = runs[stream]
  name = "keypoint" if stream == "kp" else "rgb"
  assert summary["stream"] == name and summary["checkpoint"] == "best"
  assert summary["dim"] == cfg.model.hidden_size
  for split in SPLITS:
    source = array_record_io.RecordSource(runs["data"], split)
    out = array_record_io.RecordSource(summary["out"], split)
    assert len(out) == len(source) == summary["splits"][split]
    for i in range(len(source)):
      src, rec = source[i], out[i]
      for key in ("id", "split", "signer", "gloss", "text", "num_frames"):
        assert rec[key] == src[key], key
      assert set(rec["features"]) == {name} and "frames" not in rec and "keypoints" not in rec
      feat = rec["features"][name]
      assert feat.dtype == np.float32
      assert feat.shape == (math.ceil(src["num_frames"] / 4), cfg.model.hidden_size)
    assert sclite_files.read_stm(os.path.join(summary["out"], f"{split}.stm")) == \
        sclite_files.read_stm(os.path.join(runs["data"], f"{split}.stm"))
  with open(os.path.join(summary["out"], "gloss_vocab.json"), encoding="utf-8") as f, \
      open(os.path.join(runs["data"], "gloss_vocab.json"), encoding="utf-8") as g:
    assert json.load(f) == json.load(g)
  with open(os.path.join(summary["out"], "dataset_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  assert info["extracted"]["step"] == summary["step"] == cfg.train.num_steps
  assert info["splits"]["dev"]["feature_dims"] == {name: cfg.model.hidden_size}


@pytest.mark.parametrize("stream", ["kp", "rgb"])
def test_features_are_the_restored_models_output(runs, stream):
  cfg, task, summary = runs[stream]
  workdir = str(runs["tmp"] / stream)
  setup, state, which, step = extraction.restore(cfg, workdir, task)
  assert which == "best" and step == cfg.train.num_steps
  model = nnx.merge(setup.graphdef_eval, state["params"], jax.tree.map(jax.random.wrap_key_data, state["rng"]),
                    state["rng_count"], state["model_state"])
  batch = next(iter(task.eval_batches("dev", cfg.eval.batch_size)))
  device = {k: jnp.asarray(v) for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}
  seq, lengths = nnx.jit(lambda m, b: m.sequence_features(*task.model_inputs(b)))(model, device)
  logits = nnx.jit(lambda m, b: m(*task.model_inputs(b), branches=("main",)))(model, device)
  np.testing.assert_array_equal(lengths, logits["feat_lengths"])
  # the features feed the classifier: classifier(features) = the model's sequence logits
  head = model.classifier if stream == "kp" else model.classifier[0]
  np.testing.assert_allclose(np.asarray(head(seq)), logits["sequence_logits"]["main"], rtol=1e-4, atol=1e-4)
  out = array_record_io.RecordSource(summary["out"], "dev")
  name = summary["stream"]
  for i, sample_id in enumerate(batch["id"]):
    rec = out[i]
    assert rec["id"] == sample_id
    assert rec["features"][name].shape[0] == int(lengths[i])  # T' = the model's output length
    np.testing.assert_allclose(rec["features"][name], np.asarray(seq)[i, :int(lengths[i])], rtol=1e-5, atol=1e-5)


def test_merged_dataset_feeds_the_slt_task(runs):
  from hypersign_jax.tasks import slt  # pylint: disable=import-outside-toplevel
  merged = runs["merged"]
  with open(os.path.join(merged, "dataset_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  assert info["streams"] == ["rgb", "keypoint"] and info["aligned_by_truncation"] == {}
  for split in SPLITS:
    src = array_record_io.RecordSource(runs["data"], split)
    out = array_record_io.RecordSource(merged, split)
    assert [out[i]["id"] for i in range(len(out))] == [src[i]["id"] for i in range(len(src))]
  c = hypersign_synthetic.get_config("smoke")
  c.data.dir = merged
  c.data.synthetic_features_preset = ""
  task = slt.SLTTask(c)
  assert task.input_sizes == (48, runs["kp"][0].model.hidden_size)
  batch = next(iter(task.train_iterator(0, 4)))
  lengths = batch["feature_lengths"]
  np.testing.assert_array_equal(lengths["rgb"], lengths["keypoint"])
  assert batch["features"]["rgb"].shape[-1] == 48 and batch["labels"].shape[0] == 4
  assert len(list(task.eval_batches("dev", 4))) == 2


def _feature_dir(path, lengths, stream, ids=None, vocab=None):
  records = [{"id": ids[i] if ids else f"s{i}", "split": "train", "signer": "A", "gloss": "X Y", "text": "t",
              "features": {stream: np.full((n, 3), i, np.float32)}} for i, n in enumerate(lengths)]
  merge_features.write_feature_dataset(str(path), {"train": (records, len(records))}, vocab, {"name": "x"})
  return str(path)


def test_merge_checks_lengths_and_ids(tmp_path, runs):
  vocab = os.path.join(runs["data"], "gloss_vocab.json")
  a = _feature_dir(tmp_path / "a", [4, 5], "rgb", vocab=vocab)
  b = _feature_dir(tmp_path / "b", [4, 6], "kp", vocab=vocab)
  with pytest.raises(merge_features.MergeError, match=r"'s1'.*different lengths"):
    merge_features.merge([("rgb", a, "rgb"), ("keypoint", b, "kp")], str(tmp_path / "m"))
  assert not os.path.exists(tmp_path / "m")
  info = merge_features.merge([("rgb", a, "rgb"), ("keypoint", b, "kp")], str(tmp_path / "m"), align="truncate")
  assert info["aligned_by_truncation"] == {"train": 1}
  rec = array_record_io.RecordSource(str(tmp_path / "m"), "train")[1]
  assert rec["features"]["rgb"].shape == rec["features"]["keypoint"].shape == (5, 3)
  c = _feature_dir(tmp_path / "c", [4, 5], "kp", ids=["s0", "other"], vocab=vocab)
  with pytest.raises(merge_features.MergeError, match="other sample ids"):
    merge_features.merge([("rgb", a, "rgb"), ("keypoint", c, "kp")], str(tmp_path / "m2"))


def test_extract_cli_without_checkpoint_is_a_one_line_error(tmp_path, runs):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  args = ["--config", "configs/keypoint_s2g_synthetic.py:smoke", "--workdir", str(tmp_path / "empty"), "--mode",
          "extract", f"--config.data.dir={runs['data']}"]
  proc = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "no checkpoints" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "empty" / "checkpoints")


def test_either_reading_order_extracts_the_same_records_in_source_order(tmp_path, runs):
  cfg, task, summary = runs["kp"]
  for order, group in (("source", 2), ("length", 0)):  # the extraction's order wins over the pipeline's setting
    c = cfg.copy_and_resolve_references()
    c.data.pipeline.group_by_length = group
    c.extract.order = order
    out = str(tmp_path / order)
    again = extraction.extract_features(c, str(runs["tmp"] / "kp"), out=out, splits=("dev",), progress=False)
    assert c.data.pipeline.group_by_length == group  # the caller's config is left alone
    first, second = (array_record_io.RecordSource(d, "dev") for d in (summary["out"], again["out"]))
    assert len(first) == len(second) > 0
    for i in range(len(first)):
      assert second[i]["id"] == first[i]["id"]
      np.testing.assert_allclose(second[i]["features"]["keypoint"], first[i]["features"]["keypoint"], atol=1e-6)
  # A task that reads shortest first (built by the caller) gives the source order too.
  grouped = cfg.copy_and_resolve_references()
  grouped.data.pipeline.group_by_length = 2
  out = str(tmp_path / "task")
  again = extraction.extract_features(grouped, str(runs["tmp"] / "kp"), out=out, splits=("dev",),
                                      task=keypoint_s2g.KeypointS2GTask(grouped), progress=False)
  ids = [array_record_io.RecordSource(d, "dev")[i]["id"] for d in (summary["out"], out)
         for i in range(len(array_record_io.RecordSource(d, "dev")))]
  assert ids[:len(ids) // 2] == ids[len(ids) // 2:]
  grouped.extract.order = "random"
  with pytest.raises(ValueError, match="extract.order"):
    extraction.extract_features(grouped, str(runs["tmp"] / "kp"), out=str(tmp_path / "x"), splits=("dev",),
                                progress=False)
