"""`python -m data_pipelines.build`: ArrayRecord round trip, vocabulary, STM, dataset_info, CLI errors."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import array_record_io
from data_pipelines import build
from data_pipelines import corpus_csv
from data_pipelines import readers
from data_pipelines.synthetic import corpus as synthetic_corpus
from data_pipelines.vocab import GlossVocab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = {  # split -> [(name, signer, orth, translation, num frames)]
    "train": [("t-1", "Signer08", "JETZT WETTER  MORGEN", "und nun das wetter", 3),
              ("t-2", "Signer01", "REGEN poss-SEIN", "es regnet", 4)],
    "dev": [("d-1", "Signer04", "DRUCK TIEF", "tiefer luftdruck", 2)],
    "test": [("x-1", "Signer01", "REGEN WETTER", "regen", 5)],
}


def png(value: int) -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", (5, 6), (value, 0, 255 - value)).save(buf, format="PNG")
  return buf.getvalue()


def make_tree(base, frames=True) -> str:
  """A PHOENIX-2014-T tree (official layout) under base; returns its root."""
  root = os.path.join(base, "PHOENIX-2014-T")
  for split, rows in ROWS.items():
    lines = ["name|video|start|end|speaker|orth|translation"]
    for k, (name, signer, orth, text, n) in enumerate(rows):
      lines.append(f"{name}|{name}/*.png|-1|-1|{signer}|{orth}|{text}")
      if frames:
        folder = os.path.join(root, "features", "fullFrame-210x260px", split, name)
        os.makedirs(folder)
        for i in range(n):
          with open(os.path.join(folder, f"images{i + 1:04d}.png"), "wb") as f:
            f.write(png(10 * k + i))
    path = os.path.join(root, "annotations", "manual", f"PHOENIX-2014-T.{split}.corpus.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
  return root


def run_cli(capsys, *args):
  rc = build.main(["--no-progress", *args])
  out, err = capsys.readouterr()
  return rc, out, err


def test_round_trip_vocab_stm_and_info(tmp_path):
  root = make_tree(tmp_path)
  out = str(tmp_path / "out")
  info = build.build_dataset("phoenix2014t", root, out, num_shards=2)
  expected = {s: list(readers.get_reader("phoenix2014t", root).read(s)) for s in ROWS}

  # Records read back from the shards equal the reader's output (frames byte for byte).
  assert sorted(p for p in os.listdir(out) if p.startswith("train.array_record")) == [
      "train.array_record-00000-of-00002", "train.array_record-00001-of-00002"]
  for split, records in expected.items():
    source = array_record_io.RecordSource(out, split)
    assert [source[i] for i in range(len(source))] == records

  vocab = GlossVocab.load_json(os.path.join(out, "gloss_vocab.json"))
  assert vocab == GlossVocab.from_records(r for rs in expected.values() for r in rs)
  assert vocab.glosses[-1] == "poss-SEIN" and vocab.counts["REGEN"] == 2 and vocab.num_classes == 8

  with open(os.path.join(out, "train.stm"), encoding="utf-8") as f:
    assert f.read() == ("t-1 1 Signer08 0.0 1.79769e+308 JETZT WETTER MORGEN\n"
                        "t-2 1 Signer01 0.0 1.79769e+308 REGEN poss-SEIN\n")

  with open(os.path.join(out, "dataset_info.json"), encoding="utf-8") as f:
    on_disk = json.load(f)
  assert on_disk == info
  assert info["name"] == "phoenix2014t" and info["vocab_size"] == 7
  assert {s: v["num_examples"] for s, v in info["splits"].items()} == {"train": 2, "dev": 1, "test": 1}
  assert info["splits"]["train"]["num_frames"] == {"min": 3, "median": 3.5, "max": 4, "mean": 3.5}
  assert info["splits"]["train"]["frame_sizes"] == {"6x5": 2}


def test_cli_summary_and_annotations_only(tmp_path, capsys):
  root = make_tree(tmp_path, frames=False)
  rc, out, err = run_cli(capsys, "--dataset", "phoenix2014t", "--root", root, "--out", str(tmp_path / "o"),
                         "--annotations-only", "--splits", "train", "dev")
  assert rc == 0, err
  lines = out.splitlines()
  assert lines[2].split() == ["train", "2", "0", "n/a"] and lines[3].split() == ["dev", "1", "0", "n/a"]
  # The vocabulary still counts all splits (test included) although only train and dev were built.
  assert "7 glosses (num_classes 8" in out and "train+dev+test" in out
  assert not os.path.exists(tmp_path / "o" / "test.stm")
  source = array_record_io.RecordSource(str(tmp_path / "o"), "dev")
  assert source[0] == {"id": "d-1", "split": "dev", "signer": "Signer04", "gloss": "DRUCK TIEF",
                       "text": "tiefer luftdruck", "dataset": "phoenix2014t"}


def one_line_error(rc, err) -> str:
  assert rc == 2
  assert err.count("\n") == 1 and "Traceback" not in err
  return err


def test_cli_missing_root_and_split(tmp_path, capsys):
  rc, _, err = run_cli(capsys, "--dataset", "phoenix2014t", "--root", str(tmp_path / "missing"),
                       "--out", str(tmp_path / "o"))
  err = one_line_error(rc, err)
  assert str(tmp_path / "missing") in err and "expected layout: PHOENIX-2014-T/annotations/manual" in err

  root = make_tree(tmp_path, frames=False)
  os.remove(os.path.join(root, "annotations", "manual", "PHOENIX-2014-T.test.corpus.csv"))
  rc, _, err = run_cli(capsys, "--dataset", "phoenix2014t", "--root", root, "--out", str(tmp_path / "o"),
                       "--annotations-only", "--splits", "test")
  err = one_line_error(rc, err)
  assert "PHOENIX-2014-T.test.corpus.csv" in err and "expected layout" in err


def test_cli_unknown_glosses_in_given_vocab_are_listed(tmp_path, capsys):
  root = make_tree(tmp_path, frames=False)
  GlossVocab.from_gloss_strings(["JETZT WETTER MORGEN REGEN"]).save_json(tmp_path / "v.json")
  rc, _, err = run_cli(capsys, "--dataset", "phoenix2014t", "--root", root, "--out", str(tmp_path / "o"),
                       "--annotations-only", "--vocab", str(tmp_path / "v.json"))
  err = one_line_error(rc, err)
  assert "poss-SEIN" in err and "'t-2'" in err and "split 'train'" in err


def test_cli_bad_frame_fails_or_is_skipped_and_counted(tmp_path, capsys):
  root = make_tree(tmp_path)
  bad = os.path.join(root, "features", "fullFrame-210x260px", "train", "t-2", "images0003.png")
  with open(bad, "wb") as f:
    f.write(b"not a png")
  args = ["--dataset", "phoenix2014t", "--root", root, "--out", str(tmp_path / "o")]
  rc, _, err = run_cli(capsys, *args)
  err = one_line_error(rc, err)
  assert "'t-2'" in err and "images0003.png" in err

  rc, out, err = run_cli(capsys, *args, "--skip-bad-frames")
  assert rc == 0, err
  assert out.splitlines()[2].split() == ["train", "1", "1", "3/3/3"]
  assert "skipped 1 sample(s)" in out and "images0003.png" in out
  with open(tmp_path / "o" / "dataset_info.json", encoding="utf-8") as f:
    info = json.load(f)
  assert info["splits"]["train"]["num_skipped"] == 1
  assert [(s["split"], s["id"]) for s in info["skipped"]] == [("train", "t-2")]


def test_cli_usage_error_is_one_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    build.main(["--dataset", "imagenet", "--out", "x"])
  assert exit_info.value.code == 2
  err = one_line_error(2, capsys.readouterr().err)
  assert "invalid choice: 'imagenet'" in err


def test_module_cli_exit_code_and_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "data_pipelines.build", "--dataset", "csl_daily", "--root",
                         str(tmp_path), "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
  assert "split_1.txt" in proc.stderr and "expected layout" in proc.stderr


def test_slowfastsign_gloss_dict_is_the_vocabulary(tmp_path):
  root = make_tree(tmp_path)
  pre = tmp_path / "pre"
  pre.mkdir()
  for split, rows in ROWS.items():
    np.save(pre / f"{split}_info.npy",
            {"prefix": "/elsewhere", **{i: {"fileid": n, "folder": f"{split}/{n}/*.png", "signer": s, "label": o,
                                            "num_frames": k, "original_info": f"{n}|{n}/*.png|-1|-1|{s}|{o}|{t}"}
                                        for i, (n, s, o, t, k) in enumerate(rows)}})
  glosses = ["DRUCK", "JETZT", "MORGEN", "REGEN", "TIEF", "WETTER", "poss-SEIN"]
  np.save(pre / "gloss_dict.npy", {g: [i + 1, 1] for i, g in enumerate(glosses)})
  out = str(tmp_path / "o")
  info = build.build_dataset("slowfastsign", str(pre), out, splits=["dev"], dataset_name="phoenix2014t",
                             frame_root=os.path.join(root, "features", "fullFrame-210x260px"))
  assert info["vocab_source"].endswith("gloss_dict.npy")
  assert GlossVocab.load_json(os.path.join(out, "gloss_vocab.json")).glosses == glosses
  (record,) = [array_record_io.RecordSource(out, "dev")[0]]
  (expected,) = list(readers.get_reader("phoenix2014t", root).read("dev"))
  assert record == expected  # same sample through either layout


def test_synthetic_build_writes_corpus_csv_readable_as_phoenix2014t(tmp_path, capsys):
  out = tmp_path / "synth"
  rc, stdout, err = run_cli(capsys, "--dataset", "synthetic", "--preset", "smoke", "--out", str(out),
                            "--splits", "dev")
  assert rc == 0, err
  source = array_record_io.RecordSource(str(out), "dev")
  records = [source[i] for i in range(len(source))]
  generated = list(synthetic_corpus.generate_split("smoke", "dev", seed=0))
  assert len(records) == 8 and records[0]["frames"] == generated[0]["frames"]
  for got, want in zip(records, generated):
    assert {k: v for k, v in got.items() if k != "keypoints"} == {k: v for k, v in want.items() if k != "keypoints"}
    np.testing.assert_array_equal(got["keypoints"], want["keypoints"])
  # The PHOENIX-2014-T-style corpus file reads back through the official-layout reader.
  tree = tmp_path / "tree" / "annotations" / "manual"
  tree.mkdir(parents=True)
  os.rename(out / "corpus" / "synthetic.dev.corpus.csv", tree / "PHOENIX-2014-T.dev.corpus.csv")
  back = list(readers.get_reader("phoenix2014t", str(tmp_path / "tree"), annotations_only=True).read("dev"))
  assert [(r["id"], r["signer"], r["gloss"], r["text"]) for r in back] == [
      (r["id"], r["signer"], r["gloss"], r["text"]) for r in records]
  with open(out / "dev.stm", encoding="utf-8") as f:
    assert len(f.read().splitlines()) == 8


def test_corpus_csv_rejects_separator_in_fields(tmp_path):
  with pytest.raises(ValueError, match=r"'s1'.*'\|'"):
    corpus_csv.write_corpus_csv(tmp_path / "c.csv", [{"id": "s1", "gloss": "A", "text": "a|b"}])
