"""SLRT/MMTLB and HyperSign ``.ckpt`` files (``{'model_state': state_dict, ...}``) <-> our models.

Done: the MMTLB **G2T** checkpoint (``experiments/outputs/SingleStream/phoenix-2014t_g2t/ckpts/best.ckpt``, the one
HyperSign loads strictly into its TranslationNetwork; design/HYPERSIGN.md §5.1, §9) -> ``tasks.g2t.G2TModel``:

  model.<mBART path>          <- translation_network.model.<HF mBART key>     (the hf_mbart table, prefixed)
  gloss_embedding.embedding   <- translation_network.gloss_embedding.weight
  alias: translation_network.encoder.*  = translation_network.model.model.encoder.* (the network keeps a second
         reference to its encoder; checked identical, written back on the reverse)

The HyperSign **S2T** checkpoint (``HyperSignLanguageModel`` in mode ``hyper``, design/HYPERSIGN.md §9, §11;
``keys/hypersign_state_dict.txt``: 804 entries) -> ``models.slt.HyperSignSLT`` (``S2T_TABLE``):

  translation_network.model.<mBART path>   <- translation_network.model.<HF mBART key>  (hf_mbart table, prefixed;
                                              tied embed_tokens / lm_head are aliases of model.shared)
  recognition_network.visual_head{,_keypoint}.
    fc1 / gloss_output_layer .kernel/.bias <- .weight.T / .bias                          Linear
    bn1.norm.{scale,bias,mean,var}         <- bn1.norm.{weight,bias,running_mean,running_var}
    feedforward.pwff_layer.{0,3}.kernel    <- .weight (O, I, K) -> (K, I, O)             Conv1d
    feedforward.layer_norm / layer_norm    <- .weight -> scale, .bias
  vl_mapper.mapping.{0,2}.* (PHOENIX) or vl_mapper.mapping.kernel (CSL, no bias), vl_mapper.FusionNet.block.*
  translation_network.SST_network.{space_dict, logit_scale, {video,text}_query_model.q_map.{0,1,3,4}.*}
  translation_network.{num_updates, psc.step} are counters the original does not save (restart at 0, §11.1).

Aliases: ``translation_network.encoder.*`` (the network's second reference to its encoder) must equal
``translation_network.model.model.encoder.*`` and is not read twice. Skipped, each reported by key: ``*.pe.pe``
(sinusoidal table, recomputed), ``*.num_batches_tracked``, ``recognition_network.layer_norm.*`` (an unused
LayerNorm), ``SST_network.logit_scale_sd`` and ``SST_network.{video,text}_query_model2.*`` (never used in the
forward). The reverse (:func:`s2t_to_torch`) writes every name of the original state dict: aliases, counters = 0,
``pe.pe`` recomputed, and the dead tensors copied from a ``template`` state dict (the converted checkpoint, for a
bit-exact round trip) or filled with stand-ins of the right shapes (LayerNorm ones/zeros, ``logit_scale_sd`` =
log(1/0.07), ``*_query_model2`` = copies of the live query models), so a strict ``load_state_dict`` succeeds.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from checkpoints_conversion import engine, hf_mbart
from checkpoints_conversion.engine import CONV1D, LINEAR, rule

SOURCE_PREFIX = 'translation_network.model.'
HINT_GLOSSES = "the gloss vocabulary follows config key 'gloss.vocab' (the checkpoint's gloss2ids.pkl)"

G2T_TABLE = hf_mbart.TABLE.prefixed('model.', SOURCE_PREFIX, name='mmtlb_g2t') + engine.Table(
    'gloss', (rule(r'gloss_embedding\.embedding', 'translation_network.gloss_embedding.weight'),),
    aliases=(engine.alias(r'translation_network\.encoder\.(.+)', r'translation_network.model.model.encoder.\1',
                          r'translation_network\.model\.model\.encoder\.(.+)', r'translation_network.encoder.\1'),),
    hints=((r'gloss_embedding\..*|translation_network\.gloss_embedding\..*', HINT_GLOSSES),))


def extract_state_dict(obj: Any, source: str = 'checkpoint') -> dict:
  if isinstance(obj, Mapping) and 'model_state' in obj:
    obj = obj['model_state']
  if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
    keys = sorted(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
    raise engine.ConversionError(f"{source}: expected an SLRT/HyperSign checkpoint ({{'model_state': ...}}), "
                                 f"found {keys}")
  return dict(obj)


def convert_g2t(state_dict: Mapping[str, Any], model, *, ignore: Sequence[str] = ()) -> tuple[dict, engine.Report]:
  """MMTLB G2T ``model_state`` -> pure dict of every variable of ``model`` (a ``G2TModel``)."""
  return engine.convert(G2T_TABLE, extract_state_dict(state_dict), engine.model_variables(model), ignore=ignore)


def load_g2t(path: str, model, *, ignore: Sequence[str] = ()) -> engine.Report:
  sd = extract_state_dict(engine.read_torch(path), path)
  pure, report = engine.convert(G2T_TABLE, sd, engine.model_variables(model), ignore=ignore)
  engine.load_into_model(model, pure)
  return report


def g2t_to_torch(model_or_pure) -> dict[str, np.ndarray]:
  """Our G2T variables -> MMTLB ``model_state`` names (tied mBART names and the encoder alias included)."""
  pure = model_or_pure if isinstance(model_or_pure, Mapping) else engine.model_variables(model_or_pure)
  return engine.to_state_dict(G2T_TABLE, pure)


# ---------------------------------------------------------------------------------------------------------------
# HyperSign S2T
# ---------------------------------------------------------------------------------------------------------------
HINT_RECOGNITION = ("the recognition gloss count follows config key 'model.num_recognition_classes' (0 = data.dir's "
                    "gloss_vocab.json); HyperSign PHOENIX-2014T has 1094 (gloss2ids_old.pkl), CSL-Daily 2004")
HINT_HEAD = ("VisualHead geometry follows config keys 'model.head.hidden_size', 'model.head.ff_size', "
             "'model.head.ff_kernel_size' and the feature widths of data.dir")
HINT_MAPPER = ("config key 'model.mapper.type' must match the checkpoint: 'fuse_projection_share' has "
               "vl_mapper.mapping.{0,2}.*, 'embedding_fuse_share' has vl_mapper.mapping.weight")
HINT_SST = "SST geometry follows config keys 'model.sst.sd_num' and 'model.sst.sd_dim'"
HINT_STREAMS = "the checkpoint has both VisualHeads: config key 'model.streams' must be ('rgb', 'keypoint')"

DEAD_KEYS = (
    (r'recognition_network\.layer_norm\.(weight|bias)', 'unused LayerNorm of the recognition network (§11.6)'),
    (r'translation_network\.SST_network\.logit_scale_sd', 'dead SST parameter, never used in the forward (§11.5)'),
    (r'translation_network\.SST_network\.(video|text)_query_model2\..*',
     'dead duplicate SST query model, never used in the forward (§11.5)'),
)
S2T_SKIP = DEAD_KEYS + (
    (r'.*\.pe\.pe', 'sinusoidal position table (buffer), recomputed by the model'),
    (r'.*\.num_batches_tracked', 'BatchNorm batch counter, not used with momentum 0.1'),
)
_HEAD = r'recognition_network\.(visual_head(?:_keypoint)?)'
_BN = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}
ENCODER_ALIAS = engine.alias(r'translation_network\.encoder\.(.+)', r'translation_network.model.model.encoder.\1',
                             r'translation_network\.model\.model\.encoder\.(.+)', r'translation_network.encoder.\1')


def _counters(sd: dict) -> dict:
  return {k[:-len('running_mean')] + 'num_batches_tracked': np.zeros((), np.int64)
          for k in sd if k.endswith('.running_mean')}


_S2T_PARTS = hf_mbart.TABLE.prefixed(SOURCE_PREFIX, SOURCE_PREFIX) + engine.Table(
    'hypersign_heads_mapper_sst',
    rules=tuple(rule(rf'{_HEAD}\.bn1\.norm\.{ours}', rf'recognition_network.\1.bn1.norm.{theirs}')
                for ours, theirs in _BN.items()) + (
        rule(rf'{_HEAD}\.feedforward\.pwff_layer\.(\d+)\.kernel',
             r'recognition_network.\1.feedforward.pwff_layer.\2.weight', hook=CONV1D),
        rule(r'translation_network\.SST_network\.(space_dict|logit_scale)', r'translation_network.SST_network.\1'),
        rule(r'(recognition_network|vl_mapper|translation_network\.SST_network)\.(.+)\.kernel', r'\1.\2.weight',
             hook=LINEAR),
        rule(r'(recognition_network|vl_mapper|translation_network\.SST_network)\.(.+)\.scale', r'\1.\2.weight'),
        rule(r'(recognition_network|vl_mapper|translation_network\.SST_network)\.(.+)\.bias', r'\1.\2.bias')),
    aliases=(ENCODER_ALIAS,),
    skip=S2T_SKIP,
    keep_init=((r'translation_network\.(num_updates|psc\.step)',
                'training counter, not in the original checkpoint (restarts at 0 as in the original, §11.1)'),),
    hints=((rf'{_HEAD}\.gloss_output_layer\..*|vl_mapper\.mapping\.(kernel|weight)', HINT_RECOGNITION),
           (r'recognition_network\.visual_head_keypoint\..*', HINT_STREAMS),
           (rf'{_HEAD}\..*', HINT_HEAD),
           (r'vl_mapper\.mapping\..*', HINT_MAPPER),
           (r'translation_network\.SST_network\..*', HINT_SST)),
    extras=_counters)
S2T_TABLE = dataclasses.replace(_S2T_PARTS, name='hypersign_s2t')


def convert_s2t(state_dict: Mapping[str, Any], model, *, ignore: Sequence[str] = (), strict: bool = True
                ) -> tuple[dict, engine.Report]:
  """HyperSign S2T ``model_state`` (or the whole ``.ckpt`` dict) -> pure dict of every variable of ``model`` (a
  ``models.slt.HyperSignSLT``, abstract or concrete; concrete values are used for the two counters)."""
  expected = engine.model_variables(model)
  return engine.convert(S2T_TABLE, extract_state_dict(state_dict), expected, ignore=ignore,
                        init=_with_zero_counters(expected), strict=strict)


def _with_zero_counters(expected: Mapping) -> dict:
  """``expected`` with the counters (``keep_init`` targets) as zeros: they start at 0 after a conversion, as the
  original's do after loading, and an abstract model needs no concrete values for them."""
  flat = engine.flatten(expected)
  for path, leaf in flat.items():
    if engine._first(S2T_TABLE.keep_init, engine.dotted(path))[0] is not None:  # pylint: disable=protected-access
      flat[path] = np.zeros(leaf.shape, leaf.dtype)
  return engine.unflatten(flat)


def load_s2t(path: str, model, *, ignore: Sequence[str] = ()) -> engine.Report:
  """Reads a HyperSign ``.ckpt``, converts it and writes it into ``model``."""
  pure, report = convert_s2t(extract_state_dict(engine.read_torch(path), path), model, ignore=ignore)
  engine.load_into_model(model, pure)
  return report


def sinusoid_table(length: int, dim: int) -> np.ndarray:
  """(1, length, dim) float32 sin/cos position table (the original VisualHead's ``pe.pe`` buffer)."""
  pos = np.arange(length, dtype=np.float32)[:, None]
  div = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-np.log(10000.0) / dim))
  pe = np.zeros((length, dim), np.float32)
  pe[:, 0::2] = np.sin(pos * div)
  pe[:, 1::2] = np.cos(pos * div)
  return pe[None]


def _dead_tensors(sd: Mapping[str, np.ndarray], pe_length: int) -> dict[str, np.ndarray]:
  """Init values of the keys the original has and our model does not (see the module docstring)."""
  out: dict[str, np.ndarray] = {}
  widths = []
  for head in ('visual_head', 'visual_head_keypoint'):
    fc1 = sd.get(f'recognition_network.{head}.fc1.weight')
    if fc1 is not None:
      out[f'recognition_network.{head}.pe.pe'] = sinusoid_table(pe_length, fc1.shape[0])
      widths.append(fc1.shape[1])
  if widths:  # LayerNorm over the concatenated stream features (1664 = 2 x 832 on PHOENIX)
    out['recognition_network.layer_norm.weight'] = np.ones((sum(widths),), np.float32)
    out['recognition_network.layer_norm.bias'] = np.zeros((sum(widths),), np.float32)
  sst_prefix = 'translation_network.SST_network.'
  if sst_prefix + 'logit_scale' in sd:
    out[sst_prefix + 'logit_scale_sd'] = np.full((1,), np.log(1 / 0.07), np.float32)
  for kind in ('video', 'text'):
    src = f'{sst_prefix}{kind}_query_model.'
    for k, v in sd.items():
      if k.startswith(src):  # dead twin: same shapes; values of the live model (any value is equivalent)
        out[f'{sst_prefix}{kind}_query_model2.' + k[len(src):]] = v.copy()
  return out


def s2t_to_torch(model_or_pure, *, template: Mapping[str, Any] | None = None, pe_length: int = 5000
                 ) -> dict[str, np.ndarray]:
  """Our S2T variables -> the original ``model_state`` (all names: tied mBART names, the encoder alias,
  ``num_batches_tracked`` = 0). The keys our model does not hold (``pe.pe``, the dead modules) are copied from
  ``template`` (an original state dict or ``.ckpt`` dict) when given, else recomputed / initialised."""
  pure = model_or_pure if isinstance(model_or_pure, Mapping) else engine.model_variables(model_or_pure)
  sd = engine.to_state_dict(S2T_TABLE, pure)
  dead = _dead_tensors(sd, pe_length)
  if template is not None:
    tmpl = engine.to_numpy(extract_state_dict(template, 'template'))
    for key, value in tmpl.items():  # every skipped key: dead tensors, pe.pe, num_batches_tracked
      if engine._first(S2T_TABLE.skip, key)[0] is not None:  # pylint: disable=protected-access
        dead[key] = value
  sd.update(dead)
  return sd


def save_s2t(model, path: str, *, template: Mapping[str, Any] | None = None) -> None:
  """Writes ``{'model_state': ...}`` as the original's ``save_model`` does (weights only)."""
  engine.save_torch(s2t_to_torch(model, template=template), path, wrap='model_state')
