"""Parameter count of the paper's SlowFastSign model (R101 + BFF, PFE, hidden 1024) on PHOENIX-2014 (C = 1296)
equals the original's, per module and in total (SLOWFASTSIGN.md §7 "Parameters (measured)").

Counted the way §7 counts: trainable parameters only (``nnx.Param``; the original's ``requires_grad`` tensors).
BatchNorm running mean/var (``nnx.BatchStat`` here, buffers there) and ``num_batches_tracked`` are not parameters
and are not counted. The "inference path" is the backbone + main TemporalConv + BiLSTM 0 + classifier 0 (with
``share_classifier`` the main conv head *is* classifier 0, so it is not counted twice); the PFE group is the slow
and fast TemporalConvs, BiLSTMs 1-2 and classifiers 1-2.

The model is built with ``nnx.eval_shape`` from the model settings of ``configs/slowfastsign_phoenix2014.py``
through the task's own ``model_config`` (no weights are allocated, nothing is computed).
"""
import math
import types

import pytest
from flax import nnx

from configs import slowfastsign_phoenix2014
from hypersign_jax.models import cslr as cslr_model
from hypersign_jax.tasks import base
from hypersign_jax.tasks import cslr as cslr_task

PHOENIX2014_CLASSES = 1296  # 1295 glosses + blank (gloss_dict.npy)

# SLOWFASTSIGN.md §7, measured on the original with C = 1296.
EXPECTED = {
    "conv2d": 52_482_688,
    "main_temporal_conv": 17_045_504,
    "slow_temporal_conv": 15_734_784,
    "fast_temporal_conv": 6_559_744,
    "temporal_model.0": 12_599_296,
    "temporal_model.1": 12_599_296,
    "temporal_model.2": 12_599_296,
    "classifier.0": 1024 * PHOENIX2014_CLASSES,
    "classifier.1": 1024 * PHOENIX2014_CLASSES,
    "classifier.2": 1024 * PHOENIX2014_CLASSES,
}
EXPECTED_BACKBONE = {"slow pathway": 50_626_624, "fast pathway": 816_616, "BFF": 1_039_448}
EXPECTED_TOTAL = 133_601_920
EXPECTED_PFE = 50_147_328
EXPECTED_INFERENCE = 83_454_592
INFERENCE_MODULES = ("conv2d", "main_temporal_conv", "temporal_model.0", "classifier.0")


class _NoDataTask(cslr_task.CSLRTask):
  """The cslr task's model construction without a prepared dataset: only the class count comes from the data."""

  def __init__(self, config, num_classes):  # pylint: disable=super-init-not-called
    base.Task.__init__(self, config)
    self.vocab = types.SimpleNamespace(num_classes=num_classes)


def _group(path) -> str:
  """Module of a parameter path as the §7 table names it ('temporal_model.0', 'conv2d', ...)."""
  head = str(path[0])
  return f"{head}.{path[1]}" if head in ("temporal_model", "classifier", "conv_classifier") else head


def _backbone_part(path) -> str:
  """conv2d/<stage>/<block>/...: BFF = the s{k}_fuse modules; else pathway0_* slow, pathway1_* fast."""
  if str(path[1]).endswith("_fuse"):
    return "BFF"
  return "slow pathway" if str(path[2]).startswith("pathway0") else "fast pathway"


@pytest.fixture(scope="module")
def counts():
  config = slowfastsign_phoenix2014.get_config()
  task = _NoDataTask(config, PHOENIX2014_CLASSES)
  model_cfg = task.model_config()
  assert model_cfg.pfe and model_cfg.share_classifier and model_cfg.hidden_size == 1024
  assert task.config.model.backbone == "r101"
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  by_module, by_backbone_part = {}, {}
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    size = math.prod(var.get_value().shape)
    group = _group(path)
    by_module[group] = by_module.get(group, 0) + size
    if group == "conv2d":
      part = _backbone_part(path)
      by_backbone_part[part] = by_backbone_part.get(part, 0) + size
  return by_module, by_backbone_part


def test_every_module_equals_the_original(counts):
  by_module, _ = counts
  diff = {k: by_module.get(k, 0) - EXPECTED.get(k, 0) for k in set(by_module) | set(EXPECTED)
          if by_module.get(k, 0) != EXPECTED.get(k, 0)}
  assert not diff, f"modules whose parameter count differs from SLOWFASTSIGN.md §7 (ours - original): {diff}"


def test_backbone_pathways_and_bff_equal_the_original(counts):
  _, parts = counts
  assert parts == EXPECTED_BACKBONE


def test_total_pfe_and_inference_path_equal_the_original(counts):
  by_module, _ = counts
  total = sum(by_module.values())
  inference = sum(by_module[k] for k in INFERENCE_MODULES)
  assert total == EXPECTED_TOTAL
  assert inference == EXPECTED_INFERENCE
  assert total - inference == EXPECTED_PFE
