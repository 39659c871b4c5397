"""S2T task: stand-in features are deterministic; the model trains through the real trainer (loss decreases), the
eval path translates without references and is scored by the real BLEU/ROUGE scorer; single-stream switch."""
import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import hypersign_synthetic
from data_pipelines import array_record_io, synthetic_features
from data_pipelines.synthetic import corpus
from hypersign_jax.metrics import translation
from hypersign_jax.models import slt as slt_model
from hypersign_jax.tasks import slt as slt_task
from hypersign_jax.training import sharding, trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("slt") / "features")
  synthetic_features.write_features_dataset(out, "smoke", dim=16)
  return out


def _config(data_dir, tmp_path, **model):
  c = hypersign_synthetic.get_config("smoke")
  c.data.dir = data_dir
  c.text.cache_dir = str(tmp_path / "spm")
  for k, v in model.items():
    c.model[k] = v
  return c


def test_stand_in_features_are_deterministic_and_pooled_by_four(data_dir):
  record = next(corpus.generate_split("smoke", "dev", seed=0))
  a = synthetic_features.add_features(record, dim=16)
  b = synthetic_features.add_features(record, dim=16)
  for s in ("rgb", "keypoint"):
    np.testing.assert_array_equal(a["features"][s], b["features"][s])
    assert a["features"][s].shape == (record["num_frames"] // 4, 16)
  assert not np.allclose(a["features"]["rgb"], a["features"]["keypoint"])  # different projections and noise
  stored = array_record_io.RecordSource(data_dir, "dev")[0]
  np.testing.assert_array_equal(stored["features"]["rgb"], a["features"]["rgb"])
  with open(os.path.join(data_dir, "dataset_info.json"), encoding="utf-8") as f:
    assert "STAND-IN" in json.load(f)["stand_in_features"]["note"]


def test_s2t_trains_and_translates_through_the_trainer(data_dir, tmp_path):
  config = _config(data_dir, tmp_path)
  workdir = str(tmp_path / "work")
  final = trainer.train_and_evaluate(config, workdir)

  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  train = [r for r in rows if r["split"] == "train"]
  assert len(train) == 4 and train[-1]["loss"] < 0.6 * train[0]["loss"]
  assert train[0]["kl_factor"] > 0 and train[-1]["psc_sigma"] < train[0]["psc_sigma"]

  dev = final["dev"]
  with open(os.path.join(workdir, "slt_dev.tsv"), encoding="utf-8") as f:
    table = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  assert len(table) == dev["num_samples"] == 8
  hyps, refs = [r["hypothesis"] for r in table], [r["reference"] for r in table]
  expected = translation.translation_scores(hypotheses=hyps, references=refs)
  for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"):
    assert dev[key] == pytest.approx(expected[key])
  assert dev["bleu1"] > 5.0  # it learned something (an untrained model's output scores 0)
  assert "tok:none" in dev["signature"]


def test_single_stream_switch_and_reference_free_translation(data_dir, tmp_path):
  config = _config(data_dir, tmp_path, streams=("keypoint",))
  task = slt_task.SLTTask(config)
  model = task.build_model(nnx.Rngs(0))
  assert isinstance(model.vl_mapper, slt_model.SingleStreamMapper)
  assert hasattr(model.recognition_network, "visual_head_keypoint")
  assert not hasattr(model.recognition_network, "visual_head")
  batch = next(iter(task.eval_batches("dev", 8)))
  device, _ = sharding.split_host_fields(batch)
  assert set(device["features"]) == {"keypoint"}
  model.eval()
  # The inference path sees only features and masks: no labels, no decoder inputs.
  feats = {"keypoint": jnp.asarray(device["features"]["keypoint"])}
  masks = {"keypoint": jnp.asarray(device["feature_mask"]["keypoint"])}
  tokens, scores, enc, mask = nnx.jit(lambda m: task.translate(m, feats, masks))(model)
  assert tokens.shape == (8, config.eval.max_length) and np.all(np.asarray(tokens)[:, 0] == task.lang_id)
  assert np.all(np.isfinite(np.asarray(scores)))
  np.testing.assert_array_equal(np.asarray(mask).sum(-1), device["feature_lengths"]["keypoint"] + 2)
  hyps = [task.decode_tokens(np.asarray(t)) for t in tokens]
  scores = translation.translation_scores(hypotheses=hyps, references=[str(t) for t in batch["text"]])
  assert 0.0 <= scores["bleu4"] <= 100.0
  with pytest.raises(ValueError, match="model.streams"):
    slt_model.SLTConfig(streams=("rgb", "depth"))


def test_mbart_is_initialised_from_a_g2t_checkpoint(data_dir, tmp_path):
  from configs import g2t_synthetic  # pylint: disable=import-outside-toplevel
  from hypersign_jax.training import checkpointing  # pylint: disable=import-outside-toplevel
  g2t_cfg = g2t_synthetic.get_config("smoke")
  g2t_cfg.data.dir = str(tmp_path / "g2t_data")  # same corpus preset and seed -> same texts and vocabulary
  g2t_cfg.text.cache_dir = str(tmp_path / "spm")
  g2t_cfg.seed = 123
  setup = trainer.build(g2t_cfg)
  g2t_dir = str(tmp_path / "g2t_work")
  ckpts = checkpointing.Checkpoints(g2t_dir)
  ckpts.save(0, setup.state, {"best": 1.0}, is_best=True)
  ckpts.close()
  expected = nnx.to_pure_dict(setup.state["params"])["model"]

  config = _config(data_dir, tmp_path, init_from_g2t=g2t_dir)
  # Through the trainer's init (model built inside jax.jit, weights loaded eagerly after it).
  model = trainer.init_model(slt_task.SLTTask(config), 0)
  ours = nnx.to_pure_dict(nnx.state(model.mbart, nnx.Param))
  flat_e = dict(nnx.traversals.flatten_mapping(expected))
  flat_o = dict(nnx.traversals.flatten_mapping(ours))
  assert len(flat_o) == len(flat_e)
  for key, value in flat_o.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_e[key]), err_msg=str(key))

  config = _config(data_dir, tmp_path, init_from_g2t=str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match="init_from_g2t"):
    trainer.init_model(slt_task.SLTTask(config), 0)


def test_multi_process_batches_take_the_target_bucket_of_the_global_batch(data_dir, tmp_path):
  """With process_count > 1 the pipeline adds the whole global batch's texts; the token bucket must follow them so
  that every process builds the same shapes (a local-only choice would differ between processes)."""
  config = _config(data_dir, tmp_path)
  config.data.tgt_buckets = (8, 16, 24)
  task = slt_task.SLTTask(config)
  batch = next(iter(task.eval_batches("dev", 2)))
  raw = {k: v for k, v in batch.items() if k not in ("labels", "decoder_input_ids")}
  raw["text"] = np.array(["a ."] * len(raw["text"]), dtype=object)
  raw["id"] = np.asarray(batch["id"])
  local = task.encode_batch(dict(raw))
  long_text = " ".join(["wetter"] * 12) + " ."
  with_global = task.encode_batch(dict(raw, global_text=np.array(["a .", long_text], dtype=object)))
  assert local["labels"].shape[1] == 8
  assert with_global["labels"].shape[1] > 8
  np.testing.assert_array_equal(with_global["labels"][:, :8][:, :3], local["labels"][:, :3])
