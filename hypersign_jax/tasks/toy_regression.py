"""A tiny regression task that exercises every part of the trainer in seconds.

y = tanh(x W1) W2 + noise, with x ~ N(0, I), learned by an MLP with BatchNorm (non-parameter state) and dropout
(RNG), read through a grain pipeline (checkpointable iterator). Used by the trainer tests and as the smallest
runnable job.
"""
from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hypersign_jax.tasks import base


class MLP(nnx.Module):
  """Linear (no bias) -> BatchNorm -> ReLU -> Dropout -> Linear."""

  def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(d_in, hidden, use_bias=False, rngs=rngs)  # a bias before BN gets only rounding noise
    self.bn = nnx.BatchNorm(hidden, momentum=0.9, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, d_out, rngs=rngs)

  def __call__(self, x):  # (B, d_in) -> (B, d_out)
    return self.fc2(self.drop(nnx.relu(self.bn(self.fc1(x)))))


def make_split(seed: int, n: int, d_in: int, d_out: int, noise: float) -> dict:
  teacher = np.random.default_rng(12345)  # the same function for every split
  w1 = teacher.normal(size=(d_in, 16)) / np.sqrt(d_in)
  w2 = teacher.normal(size=(16, d_out))
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d_in)).astype(np.float32)
  y = (np.tanh(x @ w1) @ w2 + noise * rng.normal(size=(n, d_out))).astype(np.float32)
  return {"x": x, "y": y}


@base.register("toy_regression")
class ToyRegression(base.Task):
  best_metric = "mse"
  best_mode = "min"

  def __init__(self, config):
    super().__init__(config)
    d = config.data
    self._splits = {name: make_split(seed, n, d.d_in, d.d_out, d.noise)
                    for name, seed, n in (("train", 1, d.train_size), ("dev", 2, d.eval_size),
                                          ("test", 3, d.eval_size))}

  def build_model(self, rngs):
    m = self.config.model
    return MLP(self.config.data.d_in, m.hidden, self.config.data.d_out, m.dropout, rngs)

  def train_size(self):
    return len(self._splits["train"]["x"])

  def train_iterator(self, seed, batch_size, process_index=0, process_count=1):
    data = self._splits["train"]
    ds = grain.MapDataset.range(len(data["x"])).seed(seed).shuffle().repeat()
    ds = ds[process_index::process_count]
    ds = ds.map(lambda i: {"x": data["x"][i], "y": data["y"][i]})
    return iter(ds.batch(batch_size, drop_remainder=True).to_iter_dataset())

  def eval_batches(self, split, batch_size):
    data = self._splits[split]
    n = len(data["x"])
    for start in range(0, n, batch_size):
      idx = np.arange(start, start + batch_size)
      valid = idx < n
      idx = np.minimum(idx, n - 1)
      yield {"x": data["x"][idx], "y": data["y"][idx], "valid": valid.astype(np.float32)}

  def loss_fn(self, model, batch):
    pred = model(batch["x"])
    mse = jnp.mean(jnp.square(pred.astype(jnp.float32) - batch["y"]))
    return mse, {"mse": mse}

  def eval_fn(self, model, batch):
    pred = model(batch["x"])
    return {"sq_err": jnp.sum(jnp.square(pred - batch["y"]), axis=-1)}

  def compute_metrics(self, split, batches, outputs, workdir):
    err = np.concatenate([o["sq_err"] for o in outputs])
    valid = np.concatenate([b["valid"] for b in batches]).astype(bool)
    return {"mse": float(err[valid].mean() / self.config.data.d_out), "num_samples": int(valid.sum())}
