"""Device meshes, the FSDP parameter-sharding rule, and host batches -> sharded global arrays.

One mesh with axes ('data', 'fsdp') serves every configuration: 1 CPU, N simulated CPU devices, one GPU, or a
multi-host pod. Batches are split over both axes (every device holds a different slice of the batch); parameters
(and the optimizer state, which has the same shapes) are split over 'fsdp' by a shape rule, big_vision style: the
largest dimension divisible by the 'fsdp' size is sharded, small arrays are replicated. With fsdp = 1 everything is
replicated, i.e. plain data parallelism.
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


def make_global_batch(batch: dict, mesh: jax.sharding.Mesh) -> dict:
  """Process-local NumPy batch (this host's rows) -> global jax.Arrays sharded over the batch axes."""
  shards = num_batch_shards(mesh)

  def one(path, value):
    global_rows = value.shape[0] * jax.process_count()
    if global_rows % shards:
      raise ValueError(
          f"batch field {jax.tree_util.keystr(path)}: global batch size {global_rows} is not divisible by the "
          f"{shards} batch shards of the mesh {dict(mesh.shape)}; change the batch size or mesh.data/mesh.fsdp")
    return jax.make_array_from_process_local_data(batch_sharding(mesh, value.ndim), value)

  return jax.tree_util.tree_map_with_path(one, batch)


def batch_shardings(batch: dict, mesh: jax.sharding.Mesh) -> dict:
  return jax.tree.map(lambda value: batch_sharding(mesh, np.ndim(value)), batch)


def batch_signature(batch: dict) -> tuple:
  """Hashable (path, shape, dtype) signature of a batch: one compiled step per signature."""
  return tuple((jax.tree_util.keystr(path), tuple(v.shape), str(v.dtype))
               for path, v in jax.tree_util.tree_leaves_with_path(batch))
