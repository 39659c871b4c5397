"""main.py: --help, one-line errors for bad config keys/types/files/modes, and a smoke run with overrides."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=300):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def test_help_documents_the_flags():
  proc = run("--help")
  assert proc.returncode == 0
  for flag in ("--config", "--workdir", "--mode"):
    assert flag in proc.stdout


def test_unknown_config_key_is_a_one_line_error(tmp_path):
  proc = run("--config", "configs/toy_regression.py:smoke", "--workdir", str(tmp_path),
             "--config.train.batch_sise=4")
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0, proc.stderr
  assert "train.batch_sise" in proc.stderr and "train.batch_size" in proc.stderr


def test_wrong_type_names_the_key(tmp_path):
  proc = run("--config", "configs/toy_regression.py:smoke", "--workdir", str(tmp_path),
             "--config.optimizer.lr=fast")
  assert proc.returncode != 0
  assert "optimizer.lr" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_config_file_and_bad_mode(tmp_path):
  proc = run("--config", "configs/nope.py", "--workdir", str(tmp_path))
  assert proc.returncode == 2 and "configs/nope.py" in proc.stderr and "Traceback" not in proc.stderr
  proc = run("--config", "configs/toy_regression.py", "--workdir", str(tmp_path), "--mode", "dance")
  assert proc.returncode != 0 and "dance" in proc.stderr and "Traceback" not in proc.stderr
  proc = run("--config", "configs/toy_regression.py:huge", "--workdir", str(tmp_path))
  assert proc.returncode != 0 and "huge" in proc.stderr and "Traceback" not in proc.stderr


def test_train_then_eval_with_override(tmp_path):
  work = str(tmp_path / "w")
  proc = run("--config", "configs/toy_regression.py:smoke", "--workdir", work, "--config.train.num_steps=6",
             "--config.train.log_every=3")
  assert proc.returncode == 0, proc.stderr[-2000:]
  cfg = json.load(open(os.path.join(work, "config.json")))
  assert cfg["train"]["num_steps"] == 6 and cfg["train"]["log_every"] == 3
  events = [json.loads(l) for l in open(os.path.join(work, "metrics.jsonl"))]
  assert [e["step"] for e in events if e["split"] == "train"] == [3, 6]
  proc = run("--config", "configs/toy_regression.py:smoke", "--workdir", work, "--mode", "eval")
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert result["step"] == 6 and result["dev"]["num_samples"] == 128
