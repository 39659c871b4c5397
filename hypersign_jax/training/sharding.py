"""Device meshes, the FSDP parameter-sharding rule, and host batches -> sharded global arrays.

One mesh with axes ('data', 'fsdp') serves every configuration: 1 CPU, N simulated CPU devices, one GPU, or a
multi-host pod. Batches are split over both axes (every device holds a different slice of the batch); parameters
(and the optimizer state, which has the same shapes) are split over 'fsdp' by a shape rule, big_vision style: the
largest dimension divisible by the 'fsdp' size is sharded, small arrays are replicated. With fsdp = 1 everything is
replicated, i.e. plain data parallelism.

Activations: models call ``constrain_batch`` on their big intermediate tensors (SlowFast stage outputs, mBART layer
outputs) so that XLA keeps them split over the batch axes and gathers the FSDP-sharded parameters instead; the
trainer traces its steps under ``jax.set_mesh(mesh)``, elsewhere the hint is a no-op.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")  # the leading batch dimension is split over both mesh axes


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> jax.sharding.Mesh:
  """A ('data', 'fsdp') mesh over all (or the given) devices; -1 on one axis means "the remaining devices"."""
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  if data == -1 and fsdp == -1:
    raise ValueError("mesh: at most one of mesh.data / mesh.fsdp may be -1")
  if data == -1:
    if n % fsdp:
      raise ValueError(f"mesh: mesh.fsdp={fsdp} does not divide the {n} available devices")
    data = n // fsdp
  elif fsdp == -1:
    if n % data:
      raise ValueError(f"mesh: mesh.data={data} does not divide the {n} available devices")
    fsdp = n // data
  if data * fsdp != n:
    raise ValueError(f"mesh: mesh.data={data} x mesh.fsdp={fsdp} = {data * fsdp} devices, but {n} are available")
  return jax.make_mesh((data, fsdp), MESH_AXES, axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int) -> P:
  """PartitionSpec for one parameter: shard its largest 'fsdp'-divisible dimension, or replicate."""
  if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: (-shape[a], a)):
    if shape[axis] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[axis] = "fsdp"
      return P(*spec)
  return P()


def param_shardings(tree: Any, mesh: jax.sharding.Mesh, min_size: int = 2**12) -> Any:
  """NamedShardings for a pytree of arrays (parameters or optimizer state) by the FSDP shape rule."""
  fsdp_size = mesh.shape["fsdp"]

  def one(x):
    shape = getattr(x, "shape", ())
    return NamedSharding(mesh, fsdp_spec(tuple(shape), fsdp_size, min_size))

  return jax.tree.map(one, tree)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int = 1) -> NamedSharding:
  """Sharding of a batched array: leading dimension over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def num_batch_shards(mesh: jax.sharding.Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def constrain_batch(x: jax.Array) -> jax.Array:
  """Activation sharding hint for models: keep the leading (batch) axis of ``x`` split over the batch axes.

  With FSDP the parameters are split over 'fsdp' along a feature axis; without a hint XLA's propagation may give
  an activation that parameter sharding (splitting features, replicating the batch) instead of gathering the
  parameter. The trainer traces its steps under ``jax.set_mesh(mesh)``; outside such a context (single-device
  use, tests, benchmarks), or when the batch is not divisible by the number of batch shards (e.g. the (2B, 2B)
  contrastive logits of a tiny batch), this returns ``x`` unchanged.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not all(a in mesh.axis_names for a in BATCH_AXES) or getattr(x, "ndim", 0) < 1:
    return x
  shards = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
  if shards <= 1 or x.shape[0] % shards:
    return x
  return jax.lax.with_sharding_constraint(x, P(BATCH_AXES, *([None] * (x.ndim - 1))))


def constrain_batch_tree(tree: Any) -> Any:
  """``constrain_batch`` on every array leaf of a pytree."""
  return jax.tree.map(constrain_batch, tree)


def split_host_fields(batch: dict) -> tuple[dict, dict]:
  """Splits a (possibly nested) host batch into numeric arrays (sent to devices) and everything else (ids, texts:
  host only). Nested dicts (e.g. per-stream features) are split recursively."""
  device, host = {}, {}
  for key, value in batch.items():
    if isinstance(value, dict):
      d, h = split_host_fields(value)
      if d:
        device[key] = d
      if h:
        host[key] = h
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
      device[key] = value
    else:
      host[key] = value
  return device, host


def make_global_batch(batch: dict, mesh: jax.sharding.Mesh, process_local: bool = True) -> dict:
  """NumPy batch -> global jax.Arrays sharded over the batch axes.

  ``process_local=True`` (training): ``batch`` holds this process's rows only, which fill the rows of the global
  batch held by this process's devices (with ``make_mesh`` meshes: one block per process, in process order, so
  the global batch is the concatenation of the processes' batches).
  ``process_local=False`` (evaluation): ``batch`` is the whole global batch, identical on every process; each
  device takes its own rows of it.
  """
  shards = num_batch_shards(mesh)

  def one(path, value):
    global_rows = value.shape[0] * (jax.process_count() if process_local else 1)
    if global_rows % shards:
      raise ValueError(
          f"batch field {jax.tree_util.keystr(path)}: global batch size {global_rows} is not divisible by the "
          f"{shards} batch shards of the mesh {dict(mesh.shape)}; change the batch size or mesh.data/mesh.fsdp")
    sharding = batch_sharding(mesh, value.ndim)
    return jax.make_array_from_process_local_data(sharding, value, None if process_local else value.shape)

  return jax.tree_util.tree_map_with_path(one, batch)


def batch_shardings(batch: dict, mesh: jax.sharding.Mesh) -> dict:
  return jax.tree.map(lambda value: batch_sharding(mesh, np.ndim(value)), batch)


def batch_signature(batch: dict) -> tuple:
  """Hashable (path, shape, dtype) signature of a batch: one compiled step per signature."""
  return tuple((jax.tree_util.keystr(path), tuple(v.shape), str(v.dtype))
               for path, v in jax.tree_util.tree_leaves_with_path(batch))
