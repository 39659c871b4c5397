"""Every config file has a `smoke` variant, names a registered task (recipes: stage configs that do), and rejects
unknown variants."""
import glob
import importlib
import os

import pytest

from hypersign_jax.tasks import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                 if not os.path.basename(p).startswith(("__", "common")))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_has_smoke_variant_and_registered_task(name):
  module = importlib.import_module(f"configs.{name}")
  full, smoke = module.get_config(None), module.get_config("smoke")
  assert smoke.task == full.task
  if full.task == "recipe":  # a multi-stage recipe: every stage names a loadable config of a registered task
    for config in (full, smoke):
      for stage in config.stages.values():
        path, _, variant = stage.config.partition(":")
        stage_module = importlib.import_module("configs." + os.path.basename(path)[:-3])
        stage_config = stage_module.get_config(variant or None)
        base.get_task(stage_config.task)
        for override in stage.overrides:  # every override names a key the stage config has
          node = stage_config
          for key in override.partition("=")[0].split("."):
            assert key in node, (name, stage.config, override)
            node = node[key]
    return
  base.get_task(full.task)
  assert smoke.train.num_steps > 0 or smoke.train.num_epochs <= full.train.num_epochs
  with pytest.raises(ValueError, match="variant"):
    module.get_config("no_such_variant")
