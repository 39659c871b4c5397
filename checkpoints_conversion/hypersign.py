"""SLRT/MMTLB and HyperSign ``.ckpt`` files (``{'model_state': state_dict, ...}``) <-> our models.

Done: the MMTLB **G2T** checkpoint (``experiments/outputs/SingleStream/phoenix-2014t_g2t/ckpts/best.ckpt``, the one
HyperSign loads strictly into its TranslationNetwork; design/HYPERSIGN.md §5.1, §9) -> ``tasks.g2t.G2TModel``:

  model.<mBART path>          <- translation_network.model.<HF mBART key>     (the hf_mbart table, prefixed)
  gloss_embedding.embedding   <- translation_network.gloss_embedding.weight
  alias: translation_network.encoder.*  = translation_network.model.model.encoder.* (the network keeps a second
         reference to its encoder; checked identical, written back on the reverse)

Not done yet: the full HyperSign **S2T** checkpoint (recognition_network visual heads, vl_mapper/FusionNet, SST,
PSC) -> ``models.slt.HyperSignSLT``; see the report in the session notes for the remaining table.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from checkpoints_conversion import engine, hf_mbart
from checkpoints_conversion.engine import rule

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
