"""PySlowFast Caffe2 ``.pkl`` (``SLOWFAST_64x2_R101_50_50.pkl``) -> our SlowFast backbone, with SlowFastSign's
loading surgery (design/SLOWFASTSIGN.md §6 "PySlowFast pretrained .pkl").

The file is a latin-1 pickle of ``{'blobs': {caffe2 name: ndarray}, ...}``; it is read with a restricted unpickler
that only rebuilds NumPy arrays and plain containers. Each blob name is renamed to the SlowFastSign (PyTorch) key by
an ordered regex list (``RENAMES``), then fitted to the model's tensor exactly as SlowFastSign's loader does, and
every step is reported by key:

* a blob with fewer dimensions is reshaped with trailing 1s;
* a 5-D blob with temporal size > 1 going into a kernel of temporal size 1 keeps the first temporal slice;
* a 1-D blob whose size divides the model's is tiled (the fuse BN: PySlowFast's 2x fast channels -> BFF's
  beta_inv x fast channels, x4 at R101);
* input channels (dim 1) larger in the blob are sliced to the first ones (the slow first block of s2..s5 after
  FuseFastToSlow's concatenation, 80 -> 64 ... at R101); smaller ones are padded with the model's init values;
* output channels (dim 0) different with equal input channels: not loaded, the model keeps its init
  (``s{k}_fuse.conv_f2s``; SlowFastSign does this silently, here it is reported);
* ``pred_*`` (classifier head, warned by the original), ``nonlocal_conv4_*`` (non-local blocks SlowFastSign
  removed) and solver blobs (``momentum``, ``lr``, ``model_iter``) are skipped and reported;
* model parts the blobs cannot have are left at init: BFF's ``conv_s2f``, ``bn2``, ``weight_s``, ``weight_f``
  (and, for the full CSLR model, the whole temporal part).

Any other difference (an unknown blob, another shape mismatch, a backbone tensor without a blob) is an error
naming the keys, unless ignored. The model must be concrete (init values are part of the result). The reverse
direction writes the backbone as a SlowFastSign state dict (``conv2d.*``), not back to Caffe2 (the surgery loses
information).
"""
from __future__ import annotations

import io
import os
import pickle
import re
from typing import Any, Mapping, Sequence

import numpy as np

from checkpoints_conversion import engine
from checkpoints_conversion import slowfastsign

_BN = {'s': 'weight', 'b': 'bias', 'rm': 'running_mean', 'riv': 'running_var'}
_P = lambda t: '1' if t else '0'  # noqa: E731  't_' prefix = fast pathway

# Ordered (caffe2 regex, torch-name function of the match); names relative to the backbone (no 'conv2d.').
RENAMES: tuple[tuple[str, Any], ...] = (
    (r't_pool1_subsample_w', lambda m: 's1_fuse.conv_f2s.weight'),
    (r't_pool1_subsample_bn_(s|b|rm|riv)', lambda m: f's1_fuse.bn.{_BN[m[1]]}'),
    (r't_res(\d)_\d+_branch2c_bn_subsample_w', lambda m: f's{m[1]}_fuse.conv_f2s.weight'),
    (r't_res(\d)_\d+_branch2c_bn_subsample_bn_(s|b|rm|riv)', lambda m: f's{m[1]}_fuse.bn.{_BN[m[2]]}'),
    (r'(t_)?conv1_w', lambda m: f's1.pathway{_P(m[1])}_stem.conv.weight'),
    (r'(t_)?res_conv1_bn_(s|b|rm|riv)', lambda m: f's1.pathway{_P(m[1])}_stem.bn.{_BN[m[2]]}'),
    (r'(t_)?res(\d)_(\d+)_branch2([abc])_w',
     lambda m: f's{m[2]}.pathway{_P(m[1])}_res{m[3]}.branch2.{m[4]}.weight'),
    (r'(t_)?res(\d)_(\d+)_branch2([abc])_bn_(s|b|rm|riv)',
     lambda m: f's{m[2]}.pathway{_P(m[1])}_res{m[3]}.branch2.{m[4]}_bn.{_BN[m[5]]}'),
    (r'(t_)?res(\d)_(\d+)_branch1_w', lambda m: f's{m[2]}.pathway{_P(m[1])}_res{m[3]}.branch1.weight'),
    (r'(t_)?res(\d)_(\d+)_branch1_bn_(s|b|rm|riv)',
     lambda m: f's{m[2]}.pathway{_P(m[1])}_res{m[3]}.branch1_bn.{_BN[m[4]]}'),
)
SKIP = (
    (r'pred_.*', 'classification head of the Kinetics model; not in SlowFastSign (the original warns)'),
    (r'nonlocal_conv4_.*', 'non-local block; SlowFastSign removes them'),
    (r'.*(momentum|lr|model_iter).*', 'solver state'),
)
NEW_BFF = (r'(conv2d\.)?s\d_fuse\.(conv_s2f|bn2|weight_s|weight_f)(\..*)?',
           'new in BFF (FuseBiAdd): not in the PySlowFast model, left at init')
TEMPORAL = (r'(main|slow|fast)_temporal_conv\..*|temporal_model\..*|(conv_)?classifier\..*',
            'temporal part of SlowFastSign: not in a backbone checkpoint, left at init')


def rename(name: str) -> str | None:
  for pattern, fn in RENAMES:
    m = re.fullmatch(pattern, name)
    if m:
      return fn(m)
  return None


class _ArrayUnpickler(pickle.Unpickler):
  """Rebuilds NumPy arrays and builtin containers only (no arbitrary code from the file)."""
  ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
             ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'), ('numpy', 'ndarray'),
             ('numpy', 'dtype'), ('_codecs', 'encode'), ('collections', 'OrderedDict'), ('builtins', 'set'), ('builtins', 'frozenset')}

  def find_class(self, module, name):
    if (module, name) in self.ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'refusing to load {module}.{name} (only NumPy arrays are expected)')


def read_pkl(path: str) -> dict[str, np.ndarray]:
  """The ``blobs`` dict of a Caffe2 checkpoint; one-line errors for anything else."""
  if not os.path.isfile(path):
    raise engine.ConversionError(f'{path}: no such file')
  with open(path, 'rb') as f:
    data = f.read()
  try:
    ckpt = _ArrayUnpickler(io.BytesIO(data), encoding='latin1').load()
  except Exception as e:  # pylint: disable=broad-except  # EOF, bad opcodes, refused classes ...
    raise engine.ConversionError(f'{path}: not a readable Caffe2 pickle (truncated or another file type?): '
                                 f'{type(e).__name__}: {e}') from e
  if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get('blobs'), Mapping):
    found = sorted(ckpt)[:5] if isinstance(ckpt, Mapping) else type(ckpt).__name__
    raise engine.ConversionError(f"{path}: expected a PySlowFast Caffe2 checkpoint with a 'blobs' dict, found {found}")
  return {str(k): np.asarray(v) for k, v in ckpt['blobs'].items()}


def _prefix(model) -> str:
  return 'conv2d.' if hasattr(model, 'conv2d') else ''


def _table(model) -> engine.Table:
  prefix = _prefix(model)
  keep = (NEW_BFF,) + ((TEMPORAL,) if prefix else ())
  return engine.Table('pyslowfast', slowfastsign.backbone_rules('conv2d.', prefix), keep_init=keep,
                      hints=((r'.*', slowfastsign.HINT_BACKBONE),))


def _torch_view(table: engine.Table, pure: Mapping) -> dict[str, np.ndarray]:
  """Our variables in the backbone's PyTorch names and layouts (values or shapes via zero-stride views)."""
  out = {}
  for path, v in engine.flatten(pure).items():
    item, m = engine._first(table.rules, engine.dotted(path))  # pylint: disable=protected-access
    if item is None:
      continue
    arr = np.asarray(v) if hasattr(v, '__array__') else np.broadcast_to(np.zeros((), np.float32), v.shape)
    for s, a in zip(item.sources, item.hook.backward(arr)):
      out[engine._expand(s, m)] = a  # pylint: disable=protected-access
  return out


def surgery(blobs: Mapping[str, np.ndarray], model_tensors: Mapping[str, np.ndarray], report: engine.Report,
            ignore: Sequence[str] = ()) -> dict[str, np.ndarray]:
  """Renames and fits every blob to the model's PyTorch-layout tensors (``model_tensors``: init values, keys
  ``conv2d.*``); returns the state dict to load, recording each adaptation / skip / error in ``report``."""
  sd: dict[str, np.ndarray] = {}
  for name, blob in blobs.items():
    key = rename(name)
    key = None if key is None else 'conv2d.' + key
    if key is None or key not in model_tensors:
      skip = next((why for pat, why in SKIP if re.fullmatch(pat, name)), None)
      if skip is not None:
        report.skipped[name] = skip
      elif engine._matches(name, ignore):  # pylint: disable=protected-access
        report.ignored[name] = 'ignored (--ignore)'
      else:
        report.unexpected[name] = (f'renamed to {key}, which the model does not have' if key else
                                   'no PySlowFast name rule') + f' (shape {blob.shape})'
      continue
    init = np.asarray(model_tensors[key])
    want, c, steps = init.shape, np.asarray(blob, np.float32), []
    if c.ndim < len(want):
      c = c.reshape(c.shape + (1,) * (len(want) - c.ndim))
      steps.append(f'reshaped {blob.shape} -> {c.shape}')
    if c.ndim == 5 and len(want) == 5 and want[2] == 1 and c.shape[2] > 1:
      steps.append(f'kept temporal slice 0 of {c.shape[2]}')
      c = c[:, :, :1]
    if c.shape != want:
      if c.ndim == 1 and len(want) == 1 and want[0] % c.shape[0] == 0:
        steps.append(f'tiled x{want[0] // c.shape[0]} ({c.shape[0]} -> {want[0]})')
        c = np.tile(c, want[0] // c.shape[0])
      elif c.ndim >= 2 and c.shape[0] == want[0] and c.shape[2:] == want[2:] and c.shape[1] != want[1]:
        if c.shape[1] > want[1]:
          steps.append(f'input channels sliced {c.shape[1]} -> first {want[1]}')
          c = c[:, :want[1]]
        else:
          steps.append(f'input channels padded {c.shape[1]} -> {want[1]} with init values')
          c = np.concatenate([c, init[:, c.shape[1]:]], axis=1)
      elif c.ndim >= 2 and c.shape[0] != want[0] and c.shape[1:] == want[1:]:
        report.kept_init[key] = (f'from {name}: output channels {c.shape[0]} vs {want[0]}; not loaded, left at init '
                                 '(as SlowFastSign)')
        sd[key] = init.copy()
        continue
      else:
        if engine._matches(key, ignore) or engine._matches(name, ignore):  # pylint: disable=protected-access
          report.ignored[key] = f'from {name}: shape {blob.shape} vs {want}, ignored, left at init'
          sd[key] = init.copy()
        else:
          report.mismatched[key] = f'from {name}: blob {blob.shape} cannot be fitted to {want}'
        continue
    sd[key] = np.ascontiguousarray(c, np.float32)
    if steps:
      report.adapted[key] = f'from {name}: ' + '; '.join(steps)
  return sd


def convert(blobs: Mapping[str, np.ndarray], model, *, ignore: Sequence[str] = ()) -> tuple[dict, engine.Report]:
  """Caffe2 blobs -> pure dict of every variable of ``model`` (a concrete ``slowfast.SlowFast`` or
  ``cslr.SlowFastSign``)."""
  table = _table(model)
  variables = engine.model_variables(model)
  if any(not hasattr(v, '__array__') for v in engine.flatten(variables).values()):
    raise engine.ConversionError('pyslowfast: the model must be concrete (parts are left at their init values)')
  report = engine.Report('pyslowfast')
  sd = surgery(blobs, _torch_view(table, variables), report, ignore)
  kept = {k for k in report.kept_init if k in sd}
  # Init-valued tensors go through the table like the rest (exact copies of the init); drop them from 'mapped'.
  pure, report = engine.convert(table, sd, variables, ignore=ignore, init=variables, report=report)
  for tgt, (srcs, _) in list(report.mapped.items()):
    if srcs[0] in kept:
      del report.mapped[tgt]
  return pure, report


def load(path: str, model, *, ignore: Sequence[str] = ()) -> engine.Report:
  pure, report = convert(read_pkl(path), model, ignore=ignore)
  engine.load_into_model(model, pure)
  return report


def to_torch(model) -> dict[str, np.ndarray]:
  """The backbone as a SlowFastSign state dict (``conv2d.*`` keys, ``num_batches_tracked`` = 0)."""
  table = _table(model)
  sd = _torch_view(table, engine.model_variables(model))
  sd.update(slowfastsign._counters(sd))  # pylint: disable=protected-access
  return sd
