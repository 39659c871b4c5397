"""The generic trainer on the toy regression task: learning, exact resume, NaN handling, eval mode."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy_regression
from hypersign_jax.tasks import toy_regression as toy_task
from hypersign_jax.training import checkpointing, logging as train_logging, trainer


def small_config(**train):
  c = toy_regression.get_config("smoke")
  c.train.tensorboard = False
  c.train.log_every = 1
  c.train.eval_every_epochs = 0
  c.train.eval_every_steps = 0
  for k, v in train.items():
    setattr(c.train, k, v)
  return c


def train_losses(workdir):
  return [(e["step"], e["loss"]) for e in train_logging.read_metrics(workdir) if e["split"] == "train"]


def final_params(config, workdir):
  setup = trainer.build(config)
  state, _, _ = checkpointing.Checkpoints(workdir).restore("latest", setup.state)
  return jax.tree.map(np.asarray, state["params"])


def test_loss_decreases(tmp_path):
  c = small_config(num_steps=60, eval_every_steps=30)
  trainer.train_and_evaluate(c, str(tmp_path))
  losses = [l for _, l in train_losses(str(tmp_path))]
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
  dev = [e["mse"] for e in train_logging.read_metrics(str(tmp_path)) if e["split"] == "dev"]
  assert dev[-1] < dev[0]


def test_resume_is_exact(tmp_path):
  n = 12
  full, part = str(tmp_path / "full"), str(tmp_path / "part")
  trainer.train_and_evaluate(small_config(num_steps=2 * n), full)
  trainer.train_and_evaluate(small_config(num_steps=n), part)
  trainer.train_and_evaluate(small_config(num_steps=2 * n), part)  # resumes at step n
  a, b = train_losses(full), train_losses(part)
  assert [s for s, _ in b] == list(range(1, 2 * n + 1))
  assert a == b  # identical losses at every step (bitwise: same program, same data, same RNG)
  pa, pb = final_params(small_config(num_steps=2 * n), full), final_params(small_config(num_steps=2 * n), part)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(x, y)


def test_resume_restores_batchnorm_and_optimizer_state(tmp_path):
  c = small_config(num_steps=5)
  trainer.train_and_evaluate(c, str(tmp_path))
  setup = trainer.build(c)
  restored, meta, step = checkpointing.Checkpoints(str(tmp_path)).restore("latest", setup.state)
  assert step == 5 and int(restored["step"]) == 5
  assert "iterator" in meta
  init_mean = np.asarray(jax.tree.leaves(setup.state["model_state"])[0])
  assert not np.allclose(np.asarray(jax.tree.leaves(restored["model_state"])[0]), init_mean)


class NaNToy(toy_task.ToyRegression):
  """Every third step produces a NaN loss."""

  def loss_fn(self, model, batch):
    loss, metrics = super().loss_fn(model, batch)
    poison = jnp.where(batch["x"][0, 0] > 0.8, jnp.nan, 0.0)
    return loss + poison, metrics


def test_nan_steps_are_skipped_and_counted(tmp_path):
  c = small_config(num_steps=30, max_bad_steps=1000)
  trainer.train_and_evaluate(c, str(tmp_path), task=NaNToy(c))
  events = [e for e in train_logging.read_metrics(str(tmp_path)) if e["split"] == "train"]
  bad = events[-1]["bad_steps"]
  assert bad > 0
  nan_steps = [e["step"] for e in events if e["loss"] == "nan"]
  assert len(nan_steps) == bad
  state = trainer.build(c).state  # parameters never became NaN
  params = final_params(c, str(tmp_path))
  assert all(np.isfinite(p).all() for p in jax.tree.leaves(params))


def test_too_many_bad_steps_stop_training(tmp_path):
  c = small_config(num_steps=30, max_bad_steps=2)
  with pytest.raises(trainer.TrainingDiverged, match="train.max_bad_steps=2"):
    trainer.train_and_evaluate(c, str(tmp_path), task=NaNToy(c))


def test_eval_mode_matches_final_evaluation(tmp_path):
  c = small_config(num_steps=20, eval_every_steps=10)
  final = trainer.train_and_evaluate(c, str(tmp_path))
  again = trainer.evaluate_checkpoint(c, str(tmp_path))
  assert again["dev"]["mse"] == pytest.approx(final["dev"]["mse"], rel=1e-6)
  assert again["test"]["mse"] == pytest.approx(final["test"]["mse"], rel=1e-6)
  saved = json.load(open(os.path.join(tmp_path, "config.json")))
  assert saved["train"]["num_steps"] == 20 and saved["task"] == "toy_regression"
  with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
    trainer.evaluate_checkpoint(c, str(tmp_path), step=7)


def test_eval_mode_averages_the_last_kept_checkpoints(tmp_path):
  c = small_config(num_steps=20, eval_every_steps=10, checkpoint_every_steps=5, keep_checkpoints=3)
  trainer.train_and_evaluate(c, str(tmp_path))
  setup = trainer.build(c)
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=3)
  assert ckpts.kept_steps() == [10, 15, 20]
  eval_step = trainer._Jitted(trainer.make_eval_step(setup), setup, train=False)

  def dev_mse_of_mean(steps):  # the mean taken independently, in NumPy
    states = [ckpts.restore("latest", setup.state, step=s)[0] for s in steps]
    def mean(key):  # parameters and BatchNorm statistics
      return jax.tree.map(lambda *xs: jnp.asarray(np.mean(np.stack([np.asarray(x) for x in xs]), axis=0)),
                          *(st[key] for st in states))
    state = dict(states[-1], params=mean("params"), model_state=mean("model_state"))
    return trainer.evaluate(setup, eval_step, state, "dev", c.eval.batch_size, None)["mse"]

  got = trainer.evaluate_checkpoint(c, str(tmp_path), splits=["dev"], average_last=2)
  assert got["averaged_steps"] == [15, 20] and got["step"] == 20
  assert got["dev"]["mse"] == pytest.approx(dev_mse_of_mean([15, 20]), rel=1e-5)
  single = {s: trainer.evaluate_checkpoint(c, str(tmp_path), step=s, splits=["dev"])["dev"]["mse"] for s in (15, 20)}
  assert all(abs(got["dev"]["mse"] - v) > 1e-4 * v for v in single.values())  # not one of the two
  upto = trainer.evaluate_checkpoint(c, str(tmp_path), step=15, splits=["dev"], average_last=2)
  assert upto["averaged_steps"] == [10, 15]
  assert upto["dev"]["mse"] == pytest.approx(dev_mse_of_mean([10, 15]), rel=1e-5)
  with pytest.raises(FileNotFoundError, match=r"cannot average the last 4 checkpoints: 3 kept"):
    trainer.evaluate_checkpoint(c, str(tmp_path), average_last=4)
  with pytest.raises(FileNotFoundError, match=r"2 kept .* up to step 15"):
    trainer.evaluate_checkpoint(c, str(tmp_path), step=15, average_last=3)


def test_average_weights_keeps_the_last_states_other_leaves():
  states = [{"params": {"w": jnp.full((2,), v, jnp.bfloat16)}, "model_state": {"n": jnp.array(int(v)),
                                                                              "mean": jnp.array([v])},
             "step": jnp.array(int(v))} for v in (1.0, 2.0, 4.0)]
  out = checkpointing.average_weights(states)
  assert out["params"]["w"].dtype == jnp.bfloat16 and np.allclose(np.asarray(out["params"]["w"], np.float32), 7 / 3,
                                                                    rtol=1e-2)
  assert float(out["model_state"]["mean"][0]) == pytest.approx(7 / 3)
  assert int(out["model_state"]["n"]) == 4 and int(out["step"]) == 4
  with pytest.raises(ValueError, match="at least one"):
    checkpointing.average_weights([])


def test_best_checkpoint_is_kept_by_metric(tmp_path):
  c = small_config(num_steps=40, eval_every_steps=5, keep_checkpoints=1)
  trainer.train_and_evaluate(c, str(tmp_path))
  dev = {e["step"]: e["mse"] for e in train_logging.read_metrics(str(tmp_path)) if e["split"] == "dev"}
  ckpts = checkpointing.Checkpoints(str(tmp_path))
  assert ckpts.best_step() == min(dev, key=dev.get)
  assert ckpts.latest_step() == 40


def test_early_stop_at_target_and_on_patience(tmp_path):
  # Full run: the dev curve the two early-stopped runs must cut (the toy is deterministic).
  full = str(tmp_path / "full")
  trainer.train_and_evaluate(small_config(num_steps=60, eval_every_steps=5), full)
  dev = [(e["step"], e["mse"]) for e in train_logging.read_metrics(full) if e["split"] == "dev"]
  target = dev[len(dev) // 2][1]  # reached half-way
  first = next(s for s, m in dev if m <= target)
  at = str(tmp_path / "target")
  final = trainer.train_and_evaluate(small_config(num_steps=60, eval_every_steps=5, stop_at=target), at)
  steps = [s for s, _ in train_losses(at)]
  assert max(steps) == first < 60 and checkpointing.Checkpoints(at).best_step() == first
  assert final["dev"]["mse"] <= target
  # A re-run of a workdir that stopped early does not train on.
  trainer.train_and_evaluate(small_config(num_steps=60, eval_every_steps=5, stop_at=target), at)
  assert max(s for s, _ in train_losses(at)) == first
  # Patience: a made-up dev curve that stops improving after step 10 ends the run 2 evaluations later.
  meta = {"best": 0.5, "best_step": 10}
  tcfg = small_config(early_stop_evals=2).train
  assert trainer.early_stop_reason(tcfg, meta, 15, 5, "min") is None
  assert "2 evaluations" in trainer.early_stop_reason(tcfg, meta, 20, 5, "min")
  assert "stop_at=0.6" in trainer.early_stop_reason(small_config(stop_at=0.6).train, meta, 10, 5, "min")
  assert trainer.early_stop_reason(small_config(stop_at=0.6).train, meta, 10, 5, "max") is None
  with pytest.raises(ValueError, match="early_stop_evals"):
    trainer.early_stop_reason(small_config(early_stop_evals=-1).train, meta, 10, 5, "min")


def test_eval_from_step_and_reused_final_dev_evaluation(tmp_path, monkeypatch):
  calls = []
  real = trainer.evaluate

  def counting(setup, eval_step, state, split, *args):
    calls.append(split)
    return real(setup, eval_step, state, split, *args)

  monkeypatch.setattr(trainer, "evaluate", counting)
  c = small_config(num_steps=30, eval_every_steps=5, eval_from_step=20)
  final = trainer.train_and_evaluate(c, str(tmp_path))
  dev = {e["step"]: e["mse"] for e in train_logging.read_metrics(str(tmp_path)) if e["split"] == "dev"}
  assert sorted(dev) == [20, 25, 30]  # none before train.eval_from_step; the last step always
  best = checkpointing.Checkpoints(str(tmp_path)).best_step()
  assert best == min(dev, key=dev.get)
  # The final dev metrics are those of the best checkpoint, computed again only when it is not the last evaluated.
  assert calls.count("dev") == 3 + (best != 30) and calls.count("test") == 1
  assert final["dev"]["mse"] == dev[best]
  again = trainer.evaluate_checkpoint(c, str(tmp_path))
  assert again["dev"]["mse"] == pytest.approx(final["dev"]["mse"], rel=1e-6)
  with pytest.raises(ValueError, match="eval_from_step"):
    trainer.train_and_evaluate(small_config(num_steps=2, eval_from_step=-1), str(tmp_path / "bad"))
  with pytest.raises(ValueError, match="eval_from_epochs"):
    trainer.train_and_evaluate(small_config(num_steps=2, eval_from_epochs=-1.0), str(tmp_path / "bad2"))


def test_eval_from_epochs_counts_in_the_tasks_epochs(tmp_path):
  c = small_config(num_steps=30, eval_every_steps=4, eval_from_epochs=1.5)
  assert trainer.build(c).steps_per_epoch == 16  # the toy task: so epoch 1.5 is step 24
  trainer.train_and_evaluate(c, str(tmp_path))
  dev = sorted(e["step"] for e in train_logging.read_metrics(str(tmp_path)) if e["split"] == "dev")
  assert dev == [24, 28, 30]  # none before epoch 1.5; the last step always
  c = small_config(num_steps=30, eval_every_steps=4, eval_from_epochs=1.5, eval_from_step=8)
  trainer.train_and_evaluate(c, str(tmp_path / "steps"))
  dev = sorted(e["step"] for e in train_logging.read_metrics(str(tmp_path / "steps")) if e["split"] == "dev")
  assert dev == [8, 12, 16, 20, 24, 28, 30]  # train.eval_from_step, when set, wins

