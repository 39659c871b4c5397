"""SlowFastSign training checkpoints (``.pt``) <-> ``hypersign_jax.models.cslr.SlowFastSign``.

Source format (design/SLOWFASTSIGN.md §6 "SlowFastSign training checkpoints", "SLRModel state_dict"):
``torch.save({'epoch', 'model_state_dict', 'optimizer_state_dict', ...})``; keys may carry a ``module.`` prefix
(DataParallel, stripped like the original's loader); ``conv1d.fc.{i}.weight`` and ``classifier.{i}.weight`` are the
same tensor (``share_classifier=1``); index 0 = main path, 1 = slow, 2 = fast (PFE, present even though only used
in training). Only ``model_state_dict`` is read: the optimizer state does not carry over (our optimizer restarts).

The table (target <- source, hook):

  conv2d.<m>.kernel                         <- conv2d.<m>.weight                         Conv3d (O,I,T,H,W)->(T,H,W,I,O)
  conv2d.<m>.{scale,bias,mean,var}          <- conv2d.<m>.{weight,bias,running_mean,running_var}   BatchNorm3d
  conv2d.s{k}_fuse.weight_{s,f}             <- same key                                  BFF scalars (1,)
  <p>_temporal_conv.convs.{j}.{kernel,bias} <- conv1d.<p>_temporal_conv.{idx(K_j)}.{weight,bias}   Conv1d (O,I,K)->(K,I,O)
  <p>_temporal_conv.bns.{j}.*               <- conv1d.<p>_temporal_conv.{idx(K_j)+1}.*    BatchNorm1d
  temporal_model.{i}.layers.{l}.w_ih        <- temporal_model.{i}.rnn.weight_ih_l{l}[, _reverse]   stack of .T
  temporal_model.{i}.layers.{l}.w_hh        <- ...weight_hh_l{l}[, _reverse]                       stack of .T
  temporal_model.{i}.layers.{l}.b_{ih,hh}   <- ...bias_{ih,hh}_l{l}[, _reverse]                    stack
  classifier.{i}.weight                     <- classifier.{i}.weight (alias conv1d.fc.{i}.weight)  NormLinear (in,C)
  conv_classifier.{i}.weight                <- conv1d.fc.{i}.weight                      (share_classifier=False only)

``idx`` is the position of the j-th ``K`` layer in the original's ``nn.Sequential`` (a K adds conv, BN, ReLU; a P
adds one pool): 0 and 4 for K5-P2-K5-P2. ``num_batches_tracked`` is skipped (a counter; BN uses momentum 0.1) and
written back as 0.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from checkpoints_conversion import engine
from checkpoints_conversion.engine import CONV1D, CONV3D, STACK, STACK_T, rule

BRANCHES = ('main', 'slow', 'fast')
BN_LEAVES = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}

HINT_CLASSES = ("the class count comes from the gloss vocabulary of config key 'data.dir' (gloss_vocab.json): "
                "point it at the dataset the checkpoint was trained on")
HINT_HIDDEN = "temporal widths follow config key 'model.hidden_size' (1024 in SlowFastSign)"
HINT_BACKBONE = "backbone geometry follows config keys 'model.backbone' / 'model.backbone_overrides'"
HINT_PFE = "the checkpoint has the PFE paths (temporal_model.1/2): set config key 'model.pfe' to True"
HINT_SHARE = "config key 'model.share_classifier' must match the checkpoint (conv1d.fc.i is classifier.i when True)"


def conv_indices(spec: Sequence[str] = ('K5', 'P2', 'K5', 'P2')) -> list[int]:
  """Positions of the K layers in the original's TemporalConv ``nn.Sequential``."""
  from hypersign_jax.models import temporal_conv  # pylint: disable=import-outside-toplevel
  idx, out = 0, []
  for kind, _ in temporal_conv.parse_spec(spec):
    if kind == 'K':
      out.append(idx)
      idx += 3
    else:
      idx += 1
  return out


def backbone_rules(source_prefix: str = 'conv2d.', target_prefix: str = 'conv2d.') -> tuple[engine.Rule, ...]:
  """The SlowFast backbone: one rule per leaf kind (names are the original's, see models/slowfast.py)."""
  tp, sp = re.escape(target_prefix), source_prefix
  rules = [rule(tp + r'(.+)\.kernel', sp + r'\1.weight', hook=CONV3D),
           rule(tp + r'(.+)\.(weight_s|weight_f)', sp + r'\1.\2')]
  rules += [rule(tp + rf'(.+)\.{ours}', sp + rf'\1.{theirs}') for ours, theirs in BN_LEAVES.items()]
  return tuple(rules)


def _counters(sd: dict) -> dict:
  """``num_batches_tracked`` (int64 0) next to every BatchNorm's running_mean."""
  return {k[:-len('running_mean')] + 'num_batches_tracked': np.zeros((), np.int64)
          for k in sd if k.endswith('.running_mean')}


def table(spec: Sequence[str] = ('K5', 'P2', 'K5', 'P2'), share_classifier: bool = True) -> engine.Table:
  """The SLRModel table for a temporal conv spec and classifier sharing."""
  idx = conv_indices(spec)

  def conv_key(leaf: str, offset: int = 0):
    return lambda m: f'conv1d.{m.group(1)}_temporal_conv.{idx[int(m.group(2))] + offset}.{leaf}'

  rules = list(backbone_rules())
  rules += [rule(r'(main|slow|fast)_temporal_conv\.convs\.(\d+)\.kernel', conv_key('weight'), hook=CONV1D),
            rule(r'(main|slow|fast)_temporal_conv\.convs\.(\d+)\.bias', conv_key('bias'))]
  rules += [rule(rf'(main|slow|fast)_temporal_conv\.bns\.(\d+)\.{ours}', conv_key(theirs, 1))
            for ours, theirs in BN_LEAVES.items()]
  for ours, theirs, hook in (('w_ih', 'weight_ih', STACK_T), ('w_hh', 'weight_hh', STACK_T),
                             ('b_ih', 'bias_ih', STACK), ('b_hh', 'bias_hh', STACK)):
    rules.append(rule(rf'temporal_model\.(\d+)\.layers\.(\d+)\.{ours}', rf'temporal_model.\1.rnn.{theirs}_l\2',
                      rf'temporal_model.\1.rnn.{theirs}_l\2_reverse', hook=hook))
  rules.append(rule(r'classifier\.(\d+)\.weight', r'classifier.\1.weight'))
  aliases = ()
  if share_classifier:
    aliases = (engine.alias(r'conv1d\.fc\.(\d+)\.weight', r'classifier.\1.weight', r'classifier\.(\d+)\.weight',
                            r'conv1d.fc.\1.weight'),)
  else:
    rules.append(rule(r'conv_classifier\.(\d+)\.weight', r'conv1d.fc.\1.weight'))
  return engine.Table(
      'slowfastsign', tuple(rules), aliases=aliases,
      skip=((r'.*\.num_batches_tracked', 'BatchNorm batch counter, not used with momentum 0.1'),),
      hints=((r'(conv_)?classifier\..*|conv1d\.fc\..*', HINT_CLASSES),
             (r'temporal_model\.[12]\..*|(slow|fast)_temporal_conv\..*|conv1d\.(slow|fast)_temporal_conv\..*',
              HINT_PFE),
             (r'.*temporal_conv\..*|temporal_model\..*', HINT_HIDDEN),
             (r'conv2d\..*', HINT_BACKBONE)),
      extras=_counters)


def table_for(model) -> engine.Table:
  """The table matching a built ``cslr.SlowFastSign`` (its conv spec and classifier sharing)."""
  cfg = model.config
  return table(cfg.conv_spec, cfg.share_classifier)


def extract_state_dict(obj: Any, source: str = 'checkpoint') -> dict:
  """A loaded ``.pt`` object -> its model state dict without the DataParallel ``module.`` prefix."""
  if isinstance(obj, Mapping) and 'model_state_dict' in obj:
    obj = obj['model_state_dict']
  if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
    keys = sorted(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
    raise engine.ConversionError(f"{source}: expected a SlowFastSign checkpoint ({{'model_state_dict': ...}} or a "
                                 f"state dict), found {keys}")
  return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in obj.items()}


def convert(state_dict: Mapping[str, Any], model, *, ignore: Sequence[str] = (), strict: bool = True
            ) -> tuple[dict, engine.Report]:
  """SLRModel state dict -> pure dict of every variable of ``model`` (a ``cslr.SlowFastSign``, abstract or not)."""
  return engine.convert(table_for(model), extract_state_dict(state_dict), engine.model_variables(model),
                        ignore=ignore, strict=strict)


def load(path: str, model, *, ignore: Sequence[str] = ()) -> engine.Report:
  """Reads a ``.pt`` checkpoint, converts it and writes it into ``model``."""
  sd = extract_state_dict(engine.read_torch(path), path)
  pure, report = engine.convert(table_for(model), sd, engine.model_variables(model), ignore=ignore)
  engine.load_into_model(model, pure)
  return report


def to_torch(model_or_pure, model=None) -> dict[str, np.ndarray]:
  """Our variables -> the SLRModel state dict (both names of shared classifiers, ``num_batches_tracked`` = 0)."""
  if model is None:
    model = model_or_pure
    pure = engine.model_variables(model)
  else:
    pure = model_or_pure
  return engine.to_state_dict(table_for(model), pure)


def save(model, path: str) -> None:
  """Writes ``{'model_state_dict': ...}`` as the original's ``save_model`` does (weights only)."""
  engine.save_torch(to_torch(model), path, wrap='model_state_dict')
