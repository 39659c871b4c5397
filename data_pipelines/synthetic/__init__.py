"""The built-in synthetic signing corpus (procedural signer, rule-based translation, rendered frames).

Public API (``corpus``): ``PRESETS``, ``SPLITS``, ``generate_split``, ``gloss_vocabulary``, ``corpus_statistics``.
"""
from data_pipelines.synthetic.corpus import PRESETS
from data_pipelines.synthetic.corpus import SPLITS
from data_pipelines.synthetic.corpus import Preset
from data_pipelines.synthetic.corpus import corpus_statistics
from data_pipelines.synthetic.corpus import generate_split
from data_pipelines.synthetic.corpus import gloss_vocabulary

__all__ = ["PRESETS", "SPLITS", "Preset", "corpus_statistics", "generate_split", "gloss_vocabulary"]
