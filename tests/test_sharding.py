"""Training on 8 simulated CPU devices (data=2, fsdp=4; steps compiled ahead) equals 1 device, and parameters
really are sharded."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hypersign_jax.training import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from configs import toy_regression
    from hypersign_jax.training import trainer, logging as tl, checkpointing
    data, fsdp, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    c = toy_regression.get_config("smoke")
    c.train.tensorboard = False
    c.train.log_every = 1
    c.train.num_steps = 12
    c.train.eval_every_epochs = 0
    c.mesh.data, c.mesh.fsdp, c.mesh.fsdp_min_size = data, fsdp, 1
    c.train.compile_ahead = int(sys.argv[4])  # > 0: steps compiled ahead for the sharded abstract state/batch
    final = trainer.train_and_evaluate(c, workdir)
    setup = trainer.build(c)
    state, _, _ = checkpointing.Checkpoints(workdir).restore("latest", setup.state)
    kernel = state["params"]["fc1"]["kernel"]
    out = {
        "devices": jax.device_count(),
        "losses": [e["loss"] for e in tl.read_metrics(workdir) if e["split"] == "train"],
        "params": {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v).tolist()
                   for path, v in jax.tree_util.tree_leaves_with_path(state["params"])},
        "kernel_spec": str(kernel.sharding.spec),
        "kernel_shard_shape": list(kernel.addressable_shards[0].data.shape),
        "kernel_shape": list(kernel.shape),
        "dev_mse": final["dev"]["mse"],
    }
    print("RESULT" + json.dumps(out))
""")


def run(data, fsdp, devices, workdir, compile_ahead=0):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=ROOT,
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(data), str(fsdp), str(workdir),
                         str(compile_ahead)], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
  return json.loads(line[len("RESULT"):])


def test_eight_devices_match_one(tmp_path):
  one = run(1, 1, 1, tmp_path / "one")
  eight = run(2, 4, 8, tmp_path / "eight", compile_ahead=4)
  assert one["devices"] == 1 and eight["devices"] == 8
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=2e-5, atol=1e-6)
  for name, value in one["params"].items():
    np.testing.assert_allclose(eight["params"][name], value, rtol=1e-4, atol=1e-5, err_msg=name)
  assert eight["dev_mse"] == pytest.approx(one["dev_mse"], rel=1e-4)
  # fc1 kernel (8, 64): its 64-wide axis is split over the 4 fsdp devices.
  assert "fsdp" in eight["kernel_spec"]
  assert eight["kernel_shard_shape"] == [8, 16] and eight["kernel_shape"] == [8, 64]
  assert one["kernel_shard_shape"] == [8, 64]


def test_fsdp_rule():
  assert sharding.fsdp_spec((8, 64), 4, 1) == sharding.P(None, "fsdp")
  assert sharding.fsdp_spec((64, 8), 4, 1) == sharding.P("fsdp", None)
  assert sharding.fsdp_spec((6, 10), 4, 1) == sharding.P()        # nothing divisible: replicated
  assert sharding.fsdp_spec((8, 64), 4, 10_000) == sharding.P()   # too small: replicated
  assert sharding.fsdp_spec((8, 64), 1, 1) == sharding.P()        # no fsdp axis


def test_mesh_errors():
  with pytest.raises(ValueError, match="mesh.data=3"):
    sharding.make_mesh(3, 1)
  with pytest.raises(ValueError, match="at most one"):
    sharding.make_mesh(-1, -1)


def test_batch_not_divisible_names_the_field():
  mesh = sharding.make_mesh(1, 1)
  out = sharding.make_global_batch({"x": np.zeros((3, 2), np.float32)}, mesh)
  assert out["x"].shape == (3, 2)


def test_nested_batches_split_and_shard():
  batch = {"features": {"rgb": np.ones((2, 3, 4), np.float32), "names": np.array(["a", "b"], object)},
           "id": ["x", "y"], "valid": np.ones(2, np.float32)}
  device, host = sharding.split_host_fields(batch)
  assert set(device) == {"features", "valid"} and set(device["features"]) == {"rgb"}
  assert host == {"features": {"names": batch["features"]["names"]}, "id": ["x", "y"]}
  mesh = sharding.make_mesh(1, 1)
  out = sharding.make_global_batch(device, mesh)
  assert out["features"]["rgb"].shape == (2, 3, 4)
  assert sharding.batch_signature(device) == (("['features']['rgb']", (2, 3, 4), "float32"),
                                              ("['valid']", (2,), "float32"))
