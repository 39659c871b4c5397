"""G2T: label-smoothed CE equals SLRT's XentLoss (PyTorch); the task trains through the real trainer and scores."""
import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import g2t_synthetic
from hypersign_jax.losses import xent
from hypersign_jax.metrics import translation
from hypersign_jax.training import trainer

PAD = 1


def torch_xent_loss(log_probs, targets, smoothing, pad):
  """The XentLoss formula of HYPERSIGN.md §5.3: KLDivLoss(sum) against the smoothed targets (or NLL, sum)."""
  v = log_probs.shape[-1]
  lp = log_probs.reshape(-1, v)
  t = targets.reshape(-1)
  if smoothing <= 0:
    return torch.nn.NLLLoss(ignore_index=pad, reduction="sum")(lp, t)
  q = torch.full_like(lp, smoothing / (v - 2))
  q.scatter_(1, t.unsqueeze(1), 1.0 - smoothing)
  q[:, pad] = 0
  q[t == pad] = 0
  return torch.nn.KLDivLoss(reduction="sum")(lp, q)


@pytest.mark.parametrize("smoothing", [0.2, 0.1, 0.0])
def test_label_smoothed_xent_equals_torch(smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 7, 23)).astype(np.float32) * 3
  targets = rng.integers(0, 23, size=(3, 7))
  targets[0, 5:] = PAD
  targets[2, 2:] = PAD
  targets[1, 0] = 0
  lt = torch.tensor(logits, requires_grad=True)
  ref = torch_xent_loss(torch.log_softmax(lt, -1), torch.tensor(targets), smoothing, PAD) / 3
  ref.backward()
  loss_fn = lambda x: xent.smoothed_xent_sum(x, jnp.asarray(targets), smoothing=smoothing, pad_id=PAD) / 3
  ours, grad = jax.value_and_grad(loss_fn)(jnp.asarray(logits))
  np.testing.assert_allclose(float(ours), ref.item(), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), lt.grad.numpy(), atol=1e-6)
  # bf16 logits are scored in float32 (the result is a float32 scalar)
  assert xent.smoothed_xent_sum(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(targets)).dtype == jnp.float32


def test_g2t_trains_and_scores_through_the_trainer(tmp_path):
  config = g2t_synthetic.get_config("smoke")
  config.data.dir = str(tmp_path / "data")  # built here (annotations only) because it is missing
  config.text.cache_dir = str(tmp_path / "spm")
  workdir = str(tmp_path / "work")
  final = trainer.train_and_evaluate(config, workdir)

  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  losses = [r["loss"] for r in rows if r["split"] == "train"]
  assert len(losses) == 4 and losses[-1] < 0.6 * losses[0]

  dev = final["dev"]
  with open(os.path.join(workdir, "g2t_dev.tsv"), encoding="utf-8") as f:
    table = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  assert len(table) == dev["num_samples"] == 8
  hyps, refs = [r["hypothesis"] for r in table], [r["reference"] for r in table]
  expected = translation.translation_scores(hypotheses=hyps, references=refs)
  for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"):
    assert dev[key] == pytest.approx(expected[key])
  assert dev["bleu1"] > 10.0 and dev["rouge_l"] > 10.0  # it learned something (untrained: 0)
  assert "tok:none" in dev["signature"]


def test_pretrained_hf_mbart_is_loaded_by_the_trainer(tmp_path):
  """`model.pretrained` (an HF mBART directory) through `trainer.build`: the model is initialised inside a jitted
  program, the weights are loaded eagerly afterwards (`task.load_weights`), so the train state holds exactly the
  HF matrices (a loader run inside the traced init would fail or be silently skipped)."""
  import transformers  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from hypersign_jax.tasks import base  # pylint: disable=import-outside-toplevel

  config = g2t_synthetic.get_config("smoke")
  config.data.dir = str(tmp_path / "data")
  config.text.cache_dir = str(tmp_path / "spm")
  task = base.get_task(config.task)(config)
  cfg = task.model_config()
  hf_cfg = transformers.MBartConfig(
      vocab_size=cfg.vocab_size, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
      decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.encoder_attention_heads,
      decoder_attention_heads=cfg.decoder_attention_heads, encoder_ffn_dim=cfg.encoder_ffn_dim,
      decoder_ffn_dim=cfg.decoder_ffn_dim, max_position_embeddings=cfg.max_position_embeddings,
      scale_embedding=cfg.scale_embedding, pad_token_id=PAD, bos_token_id=0, eos_token_id=2)
  torch.manual_seed(3)
  hf = transformers.MBartForConditionalGeneration(hf_cfg)
  with torch.no_grad():
    hf.model.shared.weight.normal_(0.0, 0.5)
  hf_dir = str(tmp_path / "hf")
  hf.save_pretrained(hf_dir)
  shared = hf.model.shared.weight.detach().numpy()

  config.model.pretrained = hf_dir
  setup = trainer.build(config, task)
  flat = {"/".join(map(str, k)): np.asarray(v)
          for k, v in nnx.traversals.flatten_mapping(nnx.to_pure_dict(setup.state["params"])).items()}
  embeddings = [v for k, v in flat.items() if v.shape == shared.shape and "shared" in k]
  assert len(embeddings) == 1, sorted(flat)
  np.testing.assert_array_equal(embeddings[0], shared)

  # The same weights as building the model eagerly and loading them directly.
  eager = task.build_model(nnx.Rngs(config.seed))
  task.load_weights(eager)
  eager_flat = {"/".join(map(str, k)): np.asarray(v) for k, v in
                nnx.traversals.flatten_mapping(nnx.to_pure_dict(nnx.state(eager, nnx.Param))).items()}
  assert eager_flat.keys() == flat.keys()
  for key, value in eager_flat.items():
    if "gloss_embedding" not in key:  # randomly initialised, not part of the HF directory
      np.testing.assert_array_equal(flat[key], value, err_msg=key)
