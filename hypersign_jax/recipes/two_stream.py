"""The two-stream recipe, one command: corpus -> S2G-RGB -> S2G-keypoint -> extract -> G2T -> S2T -> summary.

HyperSign trains on features of two separately trained sign-to-gloss (S2G) recognisers (design/HYPERSIGN.md
§1.1) and initialises its translation network from a gloss-to-text (G2T) model; the originals leave the hand-offs
to the user across repositories. Here every stage is a ``main.py`` (or data tool) run in its own directory:

  W/data/corpus        prepared corpus (``data_pipelines.build``: synthetic preset, or an official layout)
  W/s2g_rgb            SlowFastSign CSLR on the frames (dev/test WER)
  W/s2g_keypoint       keypoint S2G on the COCO-WholeBody keypoints (dev/test WER)
  W/data/feat_rgb      ``--mode extract`` of s2g_rgb: per-clip (T', D) features, every split
  W/data/feat_keypoint ``--mode extract`` of s2g_keypoint
  W/data/features      both streams merged into one S2T dataset (``data_pipelines.merge_features``)
  W/g2t                gloss-to-text mBART (dev/test BLEU)
  W/s2t                HyperSign S2T on the merged features, initialised from W/g2t (BLEU-1..4, ROUGE-L)
  W/s2t_rgb, W/s2t_keypoint   (``compare_streams``) the same S2T with one stream only (fusion ablation)
  W/summary.md, W/summary.json

Stages are resumable (``recipes/stages.py``): a re-run skips the finished ones. Each stage waits only for the
stages it reads (S2G-RGB, S2G-keypoint and G2T need just the corpus; the extractions their S2G run; S2T the merged
features and G2T); ``max_parallel`` (config key) stages run at a time, and the stages named in
``low_priority_stages`` run beside them at idle CPU priority (``max_low_priority`` at a time). Configs:
``configs/recipe_synthetic.py`` (``make demo``) and ``configs/recipe_phoenix2014t.py`` (needs
``--config.corpus.root``). Run: ``python main.py --mode recipe --config configs/recipe_synthetic.py --workdir W``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from hypersign_jax.recipes import stages as stages_lib
from hypersign_jax.recipes import summary as summary_lib

MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "main.py")
STREAMS = ("rgb", "keypoint")


def _flags(overrides: Any) -> list[str]:
  """('a.b=value', ...) -> ['--config.a.b=value', ...] (values are the exact flag text)."""
  flags = []
  for item in overrides or ():
    if "=" not in item:
      raise ValueError(f"stage override {item!r}: expected 'key=value' (e.g. 'train.num_epochs=2')")
    flags.append(f"--config.{item}")
  return flags


def _final_metrics(directory: str) -> dict | None:
  path = os.path.join(directory, "final_metrics.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _dataset_info(directory: str) -> dict | None:
  path = os.path.join(directory, "dataset_info.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    info = json.load(f)
  splits = {name: (v.get("num_examples") if isinstance(v, dict) else v) for name, v in (info.get("splits") or {}).items()}
  return {"splits": splits, "vocabulary_size": info.get("vocabulary_size")}


def _train(name: str, stage_cfg, workdir: str, data_dir: str, description: str,
           extra: list[str] | None = None, after: tuple[str, ...] = ()) -> stages_lib.Stage:
  directory = os.path.join(workdir, name)
  command = stages_lib.python_command(
      MAIN, f"--config={stage_cfg.config}", f"--workdir={directory}", f"--config.data.dir={data_dir}",
      *(extra or []), *_flags(stage_cfg.get("overrides")))
  return stages_lib.Stage(name, command, directory, results=_final_metrics, description=description, after=after)


def _corpus_stage(c, corpus_dir: str) -> stages_lib.Stage:
  build_args = ["-m", "data_pipelines.build", f"--dataset={c.dataset}", f"--out={corpus_dir}", "--no-progress"]
  if c.dataset == "synthetic":
    build_args += [f"--preset={c.preset}", f"--seed={int(c.seed)}"]
    if int(c.get("resolution", 0) or 0):
      build_args.append(f"--resolution={int(c.resolution)}")
    if int(c.get("workers", 1) or 1) > 1:
      build_args.append(f"--workers={int(c.workers)}")
  else:
    if not c.get("root"):
      raise ValueError(f"config key 'corpus.root' is empty: the {c.dataset} recipe needs the dataset's root "
                       f"directory (--config.corpus.root=/path/to/{c.dataset}), or corpus.prebuilt")
    build_args.append(f"--root={os.path.abspath(c.root)}")
  build_args += list(c.get("extra_args", ()) or ())
  return stages_lib.Stage("corpus", stages_lib.python_command(*build_args), corpus_dir, results=_dataset_info,
                          description=f"build the {c.dataset} corpus", after=())


def build_stages(config, workdir: str) -> list[stages_lib.Stage]:
  """The recipe's stages for ``config`` (configs/recipe_*.py) under ``workdir``."""
  workdir = os.path.abspath(workdir)
  data = os.path.join(workdir, "data")
  c = config.corpus
  if c.get("prebuilt"):  # a prepared dataset directory made elsewhere (e.g. with keypoints imported)
    corpus_dir = os.path.abspath(c.prebuilt)
    if not os.path.isfile(os.path.join(corpus_dir, "dataset_info.json")):
      raise ValueError(f"config key 'corpus.prebuilt' = {c.prebuilt!r} is not a prepared dataset directory "
                       f"(no dataset_info.json); build it with python -m data_pipelines.build")
    out, corpus = [], ()
  else:
    corpus_dir = os.path.join(data, "corpus")
    out, corpus = [_corpus_stage(c, corpus_dir)], ("corpus",)
  no_build = ["--config.data.synthetic_preset="]  # the stage configs must read the recipe's corpus, never build
  st = config.stages
  out.append(_train("s2g_rgb", st.s2g_rgb, workdir, corpus_dir, "S2G-RGB: SlowFastSign CSLR on frames", no_build,
                    corpus))
  out.append(_train("s2g_keypoint", st.s2g_keypoint, workdir, corpus_dir, "S2G-keypoint: CTC on keypoints",
                    no_build, corpus))
  feat_dirs = {}
  for stream in STREAMS:
    s2g = st[f"s2g_{stream}"]
    feat_dirs[stream] = os.path.join(data, f"feat_{stream}")
    command = stages_lib.python_command(
        MAIN, "--mode=extract", f"--config={s2g.config}", f"--workdir={os.path.join(workdir, f's2g_{stream}')}",
        f"--config.data.dir={corpus_dir}", *no_build, f"--config.extract.out={feat_dirs[stream]}",
        f"--config.extract.stream={stream}", *_flags(s2g.get("overrides")))
    out.append(stages_lib.Stage(f"extract_{stream}", command, feat_dirs[stream], results=_dataset_info,
                                description=f"extract {stream} features (every split)", after=(f"s2g_{stream}",)))
  features_dir = os.path.join(data, "features")
  merge = stages_lib.python_command("-m", "data_pipelines.merge_features", f"--out={features_dir}",
                                    *[f"--stream={s}={feat_dirs[s]}" for s in STREAMS])
  out.append(stages_lib.Stage("merge_features", merge, features_dir, results=_dataset_info,
                              description="merge the two streams into the S2T dataset",
                              after=tuple(f"extract_{s}" for s in STREAMS)))
  out.append(_train("g2t", st.g2t, workdir, corpus_dir, "G2T: gloss-to-text mBART", no_build, corpus))
  s2t_extra = ["--config.data.synthetic_features_preset=", f"--config.model.init_from_g2t={os.path.join(workdir, 'g2t')}"]
  s2t_after = ("merge_features", "g2t")
  out.append(_train("s2t", st.s2t, workdir, features_dir, "S2T: HyperSign, both streams, from G2T", s2t_extra,
                    s2t_after))
  if config.get("compare_streams", False):
    for stream in STREAMS:
      out.append(_train(f"s2t_{stream}", st.s2t, workdir, features_dir, f"S2T ablation: {stream} stream only",
                        s2t_extra + [f"--config.model.streams=('{stream}',)"], s2t_after))
  low = tuple(config.get("low_priority_stages", ()) or ())
  unknown = sorted(set(low) - {s.name for s in out})
  if unknown:
    raise ValueError(f"config key 'low_priority_stages' names unknown stages {unknown}; stages: "
                     f"{[s.name for s in out]}")
  for stage in out:
    stage.low_priority = stage.name in low
  return out


def run(config, workdir: str, echo: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) the recipe; writes and prints the summary table; returns the summary dict."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "recipe_config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  start = time.time()
  records = stages_lib.run_stages(build_stages(config, workdir), workdir, echo=echo,
                                  max_parallel=int(config.get("max_parallel", 1)),
                                  max_low_priority=int(config.get("max_low_priority", 2)))
  wall = time.time() - start
  summary = summary_lib.summarise(records, wall_seconds=wall)
  table = summary_lib.markdown(summary, title=f"Recipe summary ({config.get('name', 'two-stream')})")
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(table)
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2, default=float)
  echo(table)
  return summary
