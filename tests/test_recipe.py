"""The recipe runner: finished stages are skipped on re-run, changed stages (and what follows) re-run, a failing
stage stops the recipe; the two-stream recipe wires the stages' directories and flags together."""
import json
import os
import sys
import time

import pytest

from configs import recipe_phoenix2014t, recipe_synthetic
from hypersign_jax.recipes import stages as stages_lib
from hypersign_jax.recipes import summary as summary_lib
from hypersign_jax.recipes import two_stream


def _counting_stage(tmp_path, name, payload="x", fail=False, after=None, sleep=0.0):
  """A stage that appends one line to <tmp>/<name>.count each time it actually runs (after sleeping)."""
  counter = tmp_path / f"{name}.count"
  code = (f"import sys, time; time.sleep({sleep}); open({str(counter)!r}, 'a').write('run\\n'); "
          f"print('{name} {payload}'); sys.exit({3 if fail else 0})")
  return stages_lib.Stage(name, [sys.executable, "-c", code], str(tmp_path / name),
                          results=lambda d, n=name: {"stage": n, "payload": payload}, description=f"stage {name}",
                          after=after)


def _runs(tmp_path, name):
  path = tmp_path / f"{name}.count"
  return len(path.read_text().splitlines()) if path.exists() else 0


def test_rerun_skips_finished_stages(tmp_path):
  stages = [_counting_stage(tmp_path, n) for n in ("a", "b", "c")]
  first = stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None)
  assert [r["status"] for r in first] == ["done"] * 3
  assert [_runs(tmp_path, n) for n in "abc"] == [1, 1, 1]
  second = stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None)
  assert [r["status"] for r in second] == ["skipped"] * 3
  assert [_runs(tmp_path, n) for n in "abc"] == [1, 1, 1]  # nothing ran again
  assert second[1]["results"] == {"stage": "b", "payload": "x"}  # results come back from the markers
  assert second[0]["seconds"] == pytest.approx(first[0]["seconds"])
  assert "b x" in (tmp_path / "logs" / "b.log").read_text()


def test_changed_stage_and_downstream_rerun(tmp_path):
  stages_lib.run_stages([_counting_stage(tmp_path, n) for n in "abc"], str(tmp_path), echo=lambda s: None)
  changed = [_counting_stage(tmp_path, "a"), _counting_stage(tmp_path, "b", payload="y"), _counting_stage(tmp_path, "c")]
  records = stages_lib.run_stages(changed, str(tmp_path), echo=lambda s: None)
  assert [r["status"] for r in records] == ["skipped", "done", "done"]
  assert [_runs(tmp_path, n) for n in "abc"] == [1, 2, 2]


def test_failure_stops_and_resume_continues_at_the_failed_stage(tmp_path):
  broken = [_counting_stage(tmp_path, "a"), _counting_stage(tmp_path, "b", fail=True), _counting_stage(tmp_path, "c")]
  with pytest.raises(stages_lib.StageFailed, match="stage 'b' failed with exit code 3"):
    stages_lib.run_stages(broken, str(tmp_path), echo=lambda s: None)
  assert [_runs(tmp_path, n) for n in "abc"] == [1, 1, 0]
  assert not (tmp_path / "b" / stages_lib.DONE_FILE).exists()
  fixed = [_counting_stage(tmp_path, n) for n in "abc"]
  records = stages_lib.run_stages(fixed, str(tmp_path), echo=lambda s: None)
  assert [r["status"] for r in records] == ["skipped", "done", "done"]
  assert [_runs(tmp_path, n) for n in "abc"] == [1, 2, 1]


def test_independent_stages_run_side_by_side_and_dependents_wait(tmp_path):
  # a and b read nothing from each other; c reads both; d reads only b (a is slow)
  stages = [_counting_stage(tmp_path, "a", after=(), sleep=3.0), _counting_stage(tmp_path, "b", after=(), sleep=1.0),
            _counting_stage(tmp_path, "c", after=("a", "b")), _counting_stage(tmp_path, "d", after=("b",))]
  records = {r["name"]: r for r in stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None,
                                                           max_parallel=2)}
  assert all(r["status"] == "done" for r in records.values())
  a, b, c, d = (records[n] for n in "abcd")
  assert b["started"] < a["ended"] and a["started"] < b["ended"]  # a and b overlapped
  assert c["started"] >= max(a["ended"], b["ended"]) - 0.05      # c waited for both
  assert d["started"] < a["ended"]                               # d did not wait for a
  summary = summary_lib.summarise(list(records.values()), wall_seconds=5.0)
  assert "(at " in summary_lib.markdown(summary) and "wall time of this run" in summary_lib.markdown(summary)
  # changing b re-runs b and what reads it (c, d), not a
  changed = [stages[0], _counting_stage(tmp_path, "b", payload="y", after=()), stages[2], stages[3]]
  again = stages_lib.run_stages(changed, str(tmp_path), echo=lambda s: None, max_parallel=2)
  assert [r["status"] for r in again] == ["skipped", "done", "done", "done"]
  assert [_runs(tmp_path, n) for n in "abcd"] == [1, 2, 2, 2]


def test_a_failing_stage_stops_the_stages_running_beside_it(tmp_path):
  stages = [_counting_stage(tmp_path, "slow", after=(), sleep=60.0),
            _counting_stage(tmp_path, "bad", after=(), fail=True, sleep=0.5),
            _counting_stage(tmp_path, "next", after=("bad",))]
  start = time.time()
  with pytest.raises(stages_lib.StageFailed, match="stage 'bad' failed with exit code 3"):
    stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None, max_parallel=2)
  assert time.time() - start < 30.0  # 'slow' was killed, not waited for
  assert [_runs(tmp_path, n) for n in ("slow", "bad", "next")] == [0, 1, 0]
  assert not (tmp_path / "slow" / stages_lib.DONE_FILE).exists()


def _priority_stage(tmp_path, name, sleep, after=None, low=False):
  """A stage that records its start/end times and whether it runs below normal CPU priority."""
  out = tmp_path / f"{name}.json"
  code = ("import json, os, sys, time; t0 = time.time(); "
          "idle = hasattr(os, 'SCHED_IDLE') and os.sched_getscheduler(0) == os.SCHED_IDLE; "
          f"time.sleep({sleep}); json.dump({{'low': idle or os.nice(0) > 0, 'start': t0, 'end': time.time()}}, "
          f"open({str(out)!r}, 'w'))")
  return stages_lib.Stage(name, [sys.executable, "-c", code], str(tmp_path / name), description=name, after=after,
                          low_priority=low)


def test_low_priority_stages_run_beside_the_sequence_at_idle_priority(tmp_path):
  # a -> b is the sequence (max_parallel=1); bg reads nothing and runs beside it at low priority; after_bg reads bg
  stages = [_priority_stage(tmp_path, "a", 1.5), _priority_stage(tmp_path, "bg", 1.0, after=(), low=True),
            _priority_stage(tmp_path, "b", 0.5, after=("a",)),
            _priority_stage(tmp_path, "after_bg", 0.1, after=("bg",))]
  records = {r["name"]: r for r in stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None)}
  seen = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "bg", "b", "after_bg")}
  assert [seen[n]["low"] for n in ("a", "bg", "b", "after_bg")] == [False, True, False, False]
  assert seen["bg"]["start"] < seen["a"]["end"] and seen["a"]["start"] < seen["bg"]["end"]  # beside a
  assert seen["b"]["start"] >= seen["a"]["end"] and seen["after_bg"]["start"] >= seen["bg"]["end"]
  assert records["bg"]["low_priority"] and not records["a"]["low_priority"]
  assert "(low priority, beside others)" in summary_lib.markdown(summary_lib.summarise(list(records.values())))
  # a low-priority flag is not part of the stage's identity: the re-run skips every stage
  stages[0].low_priority = True
  again = stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None)
  assert [r["status"] for r in again] == ["skipped"] * 4
  with pytest.raises(ValueError, match="max_low_priority"):
    stages_lib.run_stages(stages, str(tmp_path), echo=lambda s: None, max_low_priority=0)


def test_stage_inputs_must_be_listed_before(tmp_path):
  with pytest.raises(ValueError, match="not stages listed before it"):
    stages_lib.run_stages([_counting_stage(tmp_path, "a", after=("b",)), _counting_stage(tmp_path, "b")],
                          str(tmp_path), echo=lambda s: None)
  with pytest.raises(ValueError, match="max_parallel"):
    stages_lib.run_stages([_counting_stage(tmp_path, "a")], str(tmp_path), echo=lambda s: None, max_parallel=0)


def test_duplicate_stage_names_rejected(tmp_path):
  with pytest.raises(ValueError, match="unique"):
    stages_lib.run_stages([_counting_stage(tmp_path, "a")] * 2, str(tmp_path), echo=lambda s: None)


def test_two_stream_stage_graph(tmp_path):
  config = recipe_synthetic.get_config("smoke")
  config.compare_streams = True
  config.stages.s2t.overrides = ("train.num_steps=7",)
  stages = two_stream.build_stages(config, str(tmp_path))
  names = [s.name for s in stages]
  assert names == ["corpus", "s2g_rgb", "s2g_keypoint", "extract_rgb", "extract_keypoint", "merge_features", "g2t",
                   "s2t", "s2t_rgb", "s2t_keypoint"]
  by_name = {s.name: s for s in stages}
  corpus = str(tmp_path / "data" / "corpus")
  assert f"--out={corpus}" in by_name["corpus"].command and "--preset=smoke" in by_name["corpus"].command
  for name in ("s2g_rgb", "s2g_keypoint", "g2t"):
    assert f"--config.data.dir={corpus}" in by_name[name].command
  assert f"--workdir={tmp_path / 's2g_rgb'}" in by_name["extract_rgb"].command
  assert "--mode=extract" in by_name["extract_keypoint"].command
  features = str(tmp_path / "data" / "features")
  s2t = by_name["s2t"].command
  assert f"--config.data.dir={features}" in s2t and "--config.train.num_steps=7" in s2t
  assert f"--config.model.init_from_g2t={tmp_path / 'g2t'}" in s2t
  assert "--config.model.streams=('rgb',)" in by_name["s2t_rgb"].command
  inputs = {s.name: tuple(s.after) for s in stages}  # what each stage waits for
  assert inputs == {"corpus": (), "s2g_rgb": ("corpus",), "s2g_keypoint": ("corpus",),
                    "extract_rgb": ("s2g_rgb",), "extract_keypoint": ("s2g_keypoint",),
                    "merge_features": ("extract_rgb", "extract_keypoint"), "g2t": ("corpus",),
                    "s2t": ("merge_features", "g2t"), "s2t_rgb": ("merge_features", "g2t"),
                    "s2t_keypoint": ("merge_features", "g2t")}
  assert not any(s.low_priority for s in stages)  # the smoke recipe runs in sequence
  default = {s.name: s.low_priority for s in two_stream.build_stages(recipe_synthetic.get_config(), str(tmp_path))}
  assert [n for n, low in default.items() if low] == ["s2g_keypoint", "extract_keypoint", "g2t"]
  for stage in stages:  # every referenced stage config exists
    for arg in stage.command:
      if arg.startswith("--config="):
        assert os.path.isfile(arg.split("=", 1)[1].split(":")[0]), arg


def test_recipe_config_errors(tmp_path):
  config = recipe_phoenix2014t.get_config()
  with pytest.raises(ValueError, match="corpus.root"):
    two_stream.build_stages(config, str(tmp_path))
  config.corpus.prebuilt = str(tmp_path / "nothing")
  with pytest.raises(ValueError, match="not a prepared dataset"):
    two_stream.build_stages(config, str(tmp_path))
  config = recipe_synthetic.get_config("smoke")
  config.stages.g2t.overrides = ("train.num_steps",)
  with pytest.raises(ValueError, match="key=value"):
    two_stream.build_stages(config, str(tmp_path))
  config = recipe_synthetic.get_config("smoke")
  config.low_priority_stages = ("g2t", "s2g_kepyoint")
  with pytest.raises(ValueError, match=r"unknown stages \['s2g_kepyoint'\]"):
    two_stream.build_stages(config, str(tmp_path))


def test_summary_table():
  records = [
      {"name": "corpus", "status": "done", "seconds": 3.0, "results": {"splits": {"train": 24, "dev": 8}}},
      {"name": "s2g_rgb", "status": "skipped", "seconds": 50.0,
       "results": {"dev": {"wer": 8.5, "sub": 1.0, "del": 6.0, "ins": 1.5}, "test": {"wer": 9.25}}},
      {"name": "s2t", "status": "done", "seconds": 20.0,
       "results": {"dev": {"bleu1": 70.0, "bleu2": 60.0, "bleu3": 55.0, "bleu4": 51.25, "rouge_l": 72.0}}},
  ]
  summary = summary_lib.summarise(records)
  assert summary["total_seconds"] == pytest.approx(73.0)
  table = summary_lib.markdown(summary)
  assert "| corpus | 3 | train 24, dev 8 |" in table
  assert "WER 8.50 (S 1.00 / D 6.00 / I 1.50)" in table and "WER 9.25" in table
  assert "BLEU-1..4 70.00 / 60.00 / 55.00 / 51.25, ROUGE-L 72.00" in table
  assert "50 (earlier run)" in table
  json.dumps(summary)


def test_smoke_recipe_runs_every_real_stage_end_to_end(tmp_path):
  """`python main.py --mode recipe --config configs/recipe_synthetic.py:smoke`: every real stage (corpus, both S2G
  trainings, both extractions, merge, G2T, S2T initialised from the G2T checkpoint) runs as its own process and
  reports results; a re-run skips them all. (~1 min on 2 CPU cores.)"""
  import subprocess  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tmp_path / "recipe"
  cmd = [sys.executable, os.path.join(root, "main.py"), "--mode", "recipe", "--config",
         os.path.join(root, "configs", "recipe_synthetic.py") + ":smoke", "--workdir", str(workdir)]
  env = dict(os.environ, PYTHONPATH=root)
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  by_name = {s["stage"]: s for s in summary["stages"]}
  assert list(by_name) == ["corpus", "s2g_rgb", "s2g_keypoint", "extract_rgb", "extract_keypoint",
                           "merge_features", "g2t", "s2t"]
  assert all(s["status"] == "done" for s in summary["stages"])
  assert by_name["corpus"]["results"]["splits"] == {"train": 24, "dev": 8, "test": 8}
  assert by_name["merge_features"]["results"]["splits"] == {"train": 24, "dev": 8, "test": 8}
  for name in ("s2g_rgb", "s2g_keypoint"):
    assert 0.0 <= by_name[name]["results"]["dev"]["wer"] <= 200.0
  for name in ("g2t", "s2t"):
    assert 0.0 <= by_name[name]["results"]["dev"]["bleu4"] <= 100.0
  s2t_log = (workdir / "logs" / "s2t.log").read_text()
  assert f"--config.model.init_from_g2t={workdir / 'g2t'}" in s2t_log.splitlines()[1]  # the stage's command
  assert (workdir / "summary.md").read_text().count("|") > 20

  again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("skipped") == 8
