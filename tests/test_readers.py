"""Dataset readers on small fixture trees in the official layouts, and the gloss vocabulary."""
from __future__ import annotations

import gzip
import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from data_pipelines import readers
from data_pipelines.readers import phoenix2014 as phoenix2014_lib
from data_pipelines.vocab import GlossVocab, UnknownGlossError

P14T_HEADER = "name|video|start|end|speaker|orth|translation"


def image_bytes(value: int, size=(6, 5), fmt="PNG") -> bytes:
  """A tiny (height, width) = size image whose pixels all equal ``value``."""
  buf = io.BytesIO()
  Image.new("RGB", (size[1], size[0]), (value, 255 - value, value // 2)).save(buf, format=fmt)
  return buf.getvalue()


def write_frames(folder: str, n: int, fmt="PNG", size=(6, 5), seed=0) -> list[bytes]:
  """Writes n frames named so that lexicographic order differs from write order; returns bytes in lexicographic
  filename order."""
  os.makedirs(folder, exist_ok=True)
  ext = "png" if fmt == "PNG" else "jpg"
  names = [f"images{i:04d}.{ext}" for i in range(1, n + 1)]
  data = {name: image_bytes((seed * 37 + i * 11) % 256, size, fmt) for i, name in enumerate(names)}
  for name in reversed(names):  # write in reverse order: the reader must sort
    with open(os.path.join(folder, name), "wb") as f:
      f.write(data[name])
  return [data[name] for name in sorted(names)]


def write_text(path: str, lines: list[str]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


P14T_ROWS = {
    "train": [("11August_2010_Wednesday_tagesschau-1", "Signer08", "JETZT  WETTER MORGEN", "und nun das wetter"),
              ("11August_2010_Wednesday_tagesschau-4", "Signer08", "REGEN poss-SEIN", "es regnet")],
    "dev": [("11August_2010_Wednesday_tagesschau-2", "Signer04", "DRUCK TIEF", "tiefer luftdruck")],
    "test": [("25October_2010_Monday_tagesschau-17", "Signer01", "REGEN SCHNEE", "regen und schnee")],
}


def make_phoenix2014t(base: str, frames=True, frame_dir="fullFrame-210x260px", video_suffix="/*.png") -> dict:
  """Writes a PHOENIX-2014-T tree under base/PHOENIX-2014-T; returns {(split, name): frame bytes}."""
  root = os.path.join(base, "PHOENIX-2014-T")
  written = {}
  for split, rows in P14T_ROWS.items():
    lines = [P14T_HEADER]
    for k, (name, signer, orth, text) in enumerate(rows):
      lines.append(f"{name}|{name}{video_suffix}|-1|-1|{signer}|{orth}|{text}")
      if frames:
        folder = os.path.join(root, "features", frame_dir, split, name)
        if video_suffix.startswith("/1/"):
          folder = os.path.join(folder, "1")
        written[(split, name)] = write_frames(folder, 3 + k, seed=k)
    write_text(os.path.join(root, "annotations", "manual", f"PHOENIX-2014-T.{split}.corpus.csv"), lines)
  return written


# --- PHOENIX-2014-T -----------------------------------------------------------------------------------------------


def test_phoenix2014t_records_with_frames(tmp_path):
  written = make_phoenix2014t(str(tmp_path))
  reader = readers.get_reader("phoenix2014t", str(tmp_path / "PHOENIX-2014-T"))
  assert reader.available_splits() == ("train", "dev", "test")
  records = list(reader.read("train"))
  assert [r["id"] for r in records] == [r[0] for r in P14T_ROWS["train"]]
  first = records[0]
  assert first["gloss"] == "JETZT WETTER MORGEN"  # double space dropped
  assert first["text"] == "und nun das wetter"
  assert first["signer"] == "Signer08" and first["split"] == "train" and first["dataset"] == "phoenix2014t"
  assert first["frames"] == written[("train", first["id"])]  # raw bytes, lexicographic order
  assert first["num_frames"] == 3 and first["frame_size"] == (6, 5)
  assert records[1]["num_frames"] == 4


def test_phoenix2014t_accepts_release_dir_256_frames_and_slash_one_video_column(tmp_path):
  written = make_phoenix2014t(str(tmp_path), frame_dir="fullFrame-256x256px", video_suffix="/1/*.png")
  reader = readers.get_reader("phoenix2014t", str(tmp_path))  # the directory that contains PHOENIX-2014-T
  (record,) = list(reader.read("dev"))
  assert record["frames"] == written[("dev", record["id"])]
  assert reader.frames_root.endswith("fullFrame-256x256px")


def test_phoenix2014t_annotations_only(tmp_path):
  make_phoenix2014t(str(tmp_path), frames=False)
  reader = readers.get_reader("phoenix2014t", str(tmp_path / "PHOENIX-2014-T"), annotations_only=True)
  records = list(reader.read("test"))
  assert records == [{"id": "25October_2010_Monday_tagesschau-17", "split": "test", "signer": "Signer01",
                      "gloss": "REGEN SCHNEE", "text": "regen und schnee", "dataset": "phoenix2014t"}]
  # With frame folders present, num_frames is counted from them (and no frames are read).
  make_phoenix2014t(str(tmp_path / "with"), frames=True)
  reader = readers.get_reader("phoenix2014t", str(tmp_path / "with"), annotations_only=True)
  records = list(reader.read("train"))
  assert [r["num_frames"] for r in records] == [3, 4]
  assert all("frames" not in r for r in records)


# --- PHOENIX-2014 -------------------------------------------------------------------------------------------------


def make_phoenix2014(base: str, rows_per_split: dict, frames=True) -> dict:
  root = os.path.join(base, "phoenix-2014-multisigner")
  written = {}
  for split, rows in rows_per_split.items():
    lines = ["id|folder|signer|annotation"]
    for k, (utt, signer, glosses) in enumerate(rows):
      lines.append(f"{utt}|{utt}/1/*.png|{signer}|{glosses}")
      if frames:
        written[(split, utt)] = write_frames(
            os.path.join(root, "features", "fullFrame-210x260px", split, utt, "1"), 2 + k, seed=k)
    write_text(os.path.join(root, "annotations", "manual", f"{split}.corpus.csv"), lines)
  return written


def test_phoenix2014_records_and_root_variants(tmp_path):
  rows = {"train": [("01April_2010_Thursday_heute_default-0", "Signer04", "__ON__ LIEB ZUSCHAUER __OFF__"),
                    ("01April_2010_Thursday_heute_default-1", "Signer04", "loc-REGION  WOLKE")],
          "dev": [("01April_2011_Friday_tagesschau_default-4", "Signer01", "SONNE")]}
  written = make_phoenix2014(str(tmp_path), rows)
  for root in (tmp_path, tmp_path / "phoenix-2014-multisigner"):
    reader = readers.get_reader("phoenix2014", str(root))
    assert reader.available_splits() == ("train", "dev")
    records = list(reader.read("train"))
    assert [(r["id"], r["signer"], r["gloss"], r["text"]) for r in records] == [
        ("01April_2010_Thursday_heute_default-0", "Signer04", "__ON__ LIEB ZUSCHAUER __OFF__", ""),
        ("01April_2010_Thursday_heute_default-1", "Signer04", "loc-REGION WOLKE", "")]
    assert records[1]["frames"] == written[("train", records[1]["id"])]
    assert records[1]["num_frames"] == 3


def test_phoenix2014_drops_slowfastsign_broken_train_row_and_says_so(tmp_path):
  n = phoenix2014_lib.OFFICIAL_TRAIN_ROWS
  rows = {"train": [(f"utt-{i}", "Signer01", "A B") for i in range(n)]}
  make_phoenix2014(str(tmp_path), rows, frames=False)
  reader = readers.get_reader("phoenix2014", str(tmp_path), annotations_only=True)
  ids = [r["id"] for r in reader.read("train")]
  assert len(ids) == n - 1 and "utt-2390" not in ids and "utt-2389" in ids and "utt-2391" in ids
  assert len(reader.notes) == 1 and "dropped train row 2390" in reader.notes[0] and "utt-2390" in reader.notes[0]

  keeper = readers.get_reader("phoenix2014", str(tmp_path), annotations_only=True, keep_broken_rows=True)
  assert len(list(keeper.read("train"))) == n and "kept train row 2390" in keeper.notes[0]


def test_phoenix2014_non_official_train_file_keeps_all_rows_with_a_note(tmp_path):
  make_phoenix2014(str(tmp_path), {"train": [(f"utt-{i}", "Signer01", "A") for i in range(5)]}, frames=False)
  reader = readers.get_reader("phoenix2014", str(tmp_path), annotations_only=True)
  assert len(list(reader.read("train"))) == 5
  assert "not applied" in reader.notes[0]


# --- CSL-Daily ----------------------------------------------------------------------------------------------------

CSL_ROWS = [  # name, split, length, gloss, char
    ("S000000_P0000_T00", "train", 3, "他 家 有 两 只 狗", "他 家 有 两 只 狗 。"),
    ("S000001_P0000_T00", "dev", 2, "我  想 吃", "我 想 吃 饭"),
    ("S000002_P0000_T00", "train", 4, "今天 天气 好", "今 天 天 气 很 好"),
]


def make_csl_daily(base: str, frames=True, video_map=True) -> tuple[str, dict]:
  root = os.path.join(base, "CSL-Daily")
  write_text(os.path.join(root, "sentence_label", "split_1.txt"),
             ["name|split"] + [f"{n}|{s}" for n, s, *_ in CSL_ROWS])
  if video_map:
    write_text(os.path.join(root, "sentence_label", "video_map.txt"),
               ["index|name|length|gloss|char|word|postag"]
               + [f"{i}|{n}|{length}|{g}|{c}|w|p" for i, (n, _, length, g, c) in enumerate(CSL_ROWS)])
  written = {}
  if frames:
    for k, (name, _, length, _, _) in enumerate(CSL_ROWS):
      written[name] = write_frames(os.path.join(root, "sentence", "frames_512x512", name), length, fmt="JPEG",
                                   size=(8, 8), seed=k)
  return root, written


def test_csl_daily_records_from_video_map(tmp_path):
  root, written = make_csl_daily(str(tmp_path))
  reader = readers.get_reader("csl_daily", root)
  assert reader.available_splits() == ("train", "dev")
  records = list(reader.read("train"))
  assert [r["id"] for r in records] == ["S000000_P0000_T00", "S000002_P0000_T00"]
  assert records[0]["gloss"] == "他 家 有 两 只 狗" and records[0]["text"] == "他家有两只狗。"
  assert records[0]["signer"] == "unknown" and records[0]["dataset"] == "csl_daily"
  assert records[1]["frames"] == written["S000002_P0000_T00"] and records[1]["num_frames"] == 4
  assert records[1]["frame_size"] == (8, 8)
  (dev,) = list(reader.read("dev"))
  assert dev["gloss"] == "我 想 吃"


def test_csl_daily_label_pickle_only_from_a_named_path(tmp_path):
  root, _ = make_csl_daily(str(tmp_path), frames=False, video_map=False)
  with pytest.raises(readers.DataLayoutError, match="video_map.txt.*--annotation-pkl"):
    readers.get_reader("csl_daily", root, annotations_only=True)
  info = [{"name": n, "length": length, "label_gloss": g.split(), "label_char": c.split(), "label_word": ["w"],
           "signer": 3} for n, _, length, g, c in CSL_ROWS]
  pkl = os.path.join(root, "sentence_label", "csl2020ct_v2.pkl")
  with open(pkl, "wb") as f:
    pickle.dump({"info": info, "gloss_map": []}, f)
  reader = readers.get_reader("csl_daily", root, annotations_only=True, annotation_pkl=pkl)
  records = list(reader.read("train"))
  assert [(r["id"], r["signer"], r["gloss"], r["text"], r["num_frames"]) for r in records] == [
      ("S000000_P0000_T00", "3", "他 家 有 两 只 狗", "他家有两只狗。", 3),
      ("S000002_P0000_T00", "3", "今天 天气 好", "今天天气很好", 4)]


# --- SlowFastSign preprocess files --------------------------------------------------------------------------------


def test_slowfastsign_info_files(tmp_path):
  frame_root = tmp_path / "frames_256x256"
  written = {name: write_frames(str(frame_root / name), length, fmt="JPEG", seed=k)
             for k, (name, _, length, _, _) in enumerate(CSL_ROWS[:2])}
  pre = tmp_path / "preprocess"
  pre.mkdir()
  info = {i: {"fileid": name, "folder": f"{name}/*.jpg", "signer": "unknown", "label": gloss,
              "num_frames": str(length), "original_info": f"{name}|{length}|{gloss}|{chars}|w|p\n"}
          for i, (name, _, length, gloss, chars) in enumerate(CSL_ROWS[:2])}
  np.save(pre / "train_info.npy", info)
  np.save(pre / "dev_info.npy", {"prefix": "/nonexistent", 0: dict(info[0], fileid="X", folder="missing/*.jpg",
                                                                     num_frames="7")})
  np.save(pre / "gloss_dict.npy", {"他": [1, 1], "吃": [2, 1]})
  reader = readers.get_reader("slowfastsign", str(pre), frame_root=str(frame_root), dataset_name="csl_daily")
  records = list(reader.read("train"))
  assert [r["id"] for r in records] == ["S000000_P0000_T00", "S000001_P0000_T00"]
  assert records[1]["gloss"] == "我 想 吃" and records[1]["frames"] == written["S000001_P0000_T00"]
  assert records[0]["num_frames"] == 3 and records[0]["dataset"] == "csl_daily"
  assert records[0]["text"] == "他家有两只狗。"  # from original_info's char field
  assert reader.gloss_dict_path == str(pre / "gloss_dict.npy")
  # annotations only: no frame folder -> the info's (string) count.
  ann = readers.get_reader("slowfastsign", str(pre), annotations_only=True)
  (dev,) = list(ann.read("dev"))
  assert dev["id"] == "X" and dev["num_frames"] == 7 and "frames" not in dev
  with pytest.raises(readers.DataLayoutError, match="--frame-root"):
    readers.get_reader("slowfastsign", str(pre))


# --- SLRT / TwoStream pickles -------------------------------------------------------------------------------------


def test_slrt_pickles_joined_by_name(tmp_path):
  import torch  # a test dependency (setup.py extras): SLRT feature pickles hold torch tensors
  names = ["train/a-1", "train/a-2"]
  ann = [{"name": n, "signer": "Signer08", "gloss": "A  B", "text": f"satz {i} .", "num_frames": 8 + i,
          "sign": torch.zeros(0)} for i, n in enumerate(names)]
  with gzip.open(tmp_path / "p.train", "wb") as f:
    pickle.dump(ann, f)
  feats = {}
  for stream in ("head_rgb_input", "head_keypoint_input"):
    (tmp_path / stream).mkdir()
    entries = [{"name": n, "gloss": "A B", "text": "", "num_frames": 8, "sign": torch.randn(2 + i, 832)}
               for i, n in enumerate(names)] + [{"name": "train/unused", "sign": torch.zeros(1, 832)}]
    feats[stream] = entries
    with gzip.open(tmp_path / stream / "train.pkl", "wb") as f:
      pickle.dump(entries, f)
  kps = {n: {"keypoints": np.full((8 + i, 133, 3), i, np.float32)} for i, n in enumerate(names)}
  with open(tmp_path / "kp.pkl", "wb") as f:
    pickle.dump(kps, f)
  reader = readers.get_reader(
      "slrt", str(tmp_path), annotations="p.{split}", keypoints="kp.pkl",
      features={s: f"{s}/{{split}}.pkl" for s in ("head_rgb_input", "head_keypoint_input")})
  assert reader.available_splits() == ("train",)
  records = list(reader.read("train"))
  assert [r["id"] for r in records] == ["a-1", "a-2"]
  assert records[1]["gloss"] == "A B" and records[1]["text"] == "satz 1 ." and records[1]["num_frames"] == 9
  for stream, entries in feats.items():
    value = records[1]["features"][stream]
    assert value.dtype == np.float32 and value.shape == (3, 832)
    np.testing.assert_array_equal(value, entries[1]["sign"].numpy())
  assert records[0]["keypoints"].shape == (8, 133, 3)
  assert any("1 entries have no annotation" in n for n in reader.notes)
  # A sample missing from a feature file is an error naming it and the file.
  with gzip.open(tmp_path / "head_rgb_input" / "train.pkl", "wb") as f:
    pickle.dump(feats["head_rgb_input"][:1], f)
  with pytest.raises(ValueError, match=r"train/a-2.*head_rgb_input/train.pkl"):
    list(readers.get_reader("slrt", str(tmp_path), annotations="p.{split}",
                            features={"head_rgb_input": "head_rgb_input/{split}.pkl"}).read("train"))


# --- bad input ----------------------------------------------------------------------------------------------------


def test_missing_root_and_split_files_name_path_and_layout(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(readers.DataLayoutError, match=r"nope.*expected layout: PHOENIX-2014-T/annotations"):
    readers.get_reader("phoenix2014t", missing)
  make_phoenix2014t(str(tmp_path), frames=False)
  os.remove(tmp_path / "PHOENIX-2014-T" / "annotations" / "manual" / "PHOENIX-2014-T.dev.corpus.csv")
  reader = readers.get_reader("phoenix2014t", str(tmp_path), annotations_only=True)
  with pytest.raises(readers.DataLayoutError, match=r"PHOENIX-2014-T\.dev\.corpus\.csv.*expected layout"):
    list(reader.read("dev"))
  # Frames are required unless --annotations-only.
  with pytest.raises(readers.DataLayoutError, match=r"fullFrame-210x260px.*--annotations-only"):
    readers.get_reader("phoenix2014t", str(tmp_path))
  with pytest.raises(readers.DataLayoutError, match="split_1.txt"):
    readers.get_reader("csl_daily", str(tmp_path))


def test_bad_header_and_row_name_the_line(tmp_path):
  make_phoenix2014t(str(tmp_path), frames=False)
  path = tmp_path / "PHOENIX-2014-T" / "annotations" / "manual" / "PHOENIX-2014-T.train.corpus.csv"
  path.write_text(P14T_HEADER + "\nonly|three|fields\n", encoding="utf-8")
  reader = readers.get_reader("phoenix2014t", str(tmp_path), annotations_only=True)
  with pytest.raises(ValueError, match=r"train\.corpus\.csv:2: expected 7"):
    list(reader.read("train"))


def test_corrupt_frame_names_sample_and_file_or_is_skipped_and_counted(tmp_path):
  make_phoenix2014t(str(tmp_path))
  name = P14T_ROWS["train"][1][0]
  folder = tmp_path / "PHOENIX-2014-T" / "features" / "fullFrame-210x260px" / "train" / name
  good = (folder / "images0002.png").read_bytes()
  (folder / "images0002.png").write_bytes(good[: len(good) // 2])  # truncated: only a full decode notices
  reader = readers.get_reader("phoenix2014t", str(tmp_path))
  with pytest.raises(readers.BadFrameError, match=rf"{name}.*images0002\.png"):
    list(reader.read("train"))
  skipping = readers.get_reader("phoenix2014t", str(tmp_path), skip_bad_frames=True)
  ids = [r["id"] for r in skipping.read("train")]
  assert ids == [P14T_ROWS["train"][0][0]]
  assert len(skipping.skipped) == 1 and skipping.skipped[0][:2] == ("train", name)
  # An empty frame folder is bad too.
  dev_folder = tmp_path / "PHOENIX-2014-T" / "features" / "fullFrame-210x260px" / "dev" / P14T_ROWS["dev"][0][0]
  for p in dev_folder.iterdir():
    p.unlink()
  with pytest.raises(readers.BadFrameError, match="no frame files match"):
    list(readers.get_reader("phoenix2014t", str(tmp_path)).read("dev"))


def test_frame_size_mismatch_is_a_bad_frame(tmp_path):
  folder = tmp_path / "f"
  write_frames(str(folder), 2)
  (folder / "images0003.png").write_bytes(image_bytes(1, size=(7, 5)))
  with pytest.raises(readers.BadFrameError, match=r"7x5 but the sample's first frame is 6x5.*images0003\.png"):
    readers.read_frames("s", readers.list_frames(str(folder / "*.png")))


# --- vocabulary ---------------------------------------------------------------------------------------------------


def test_vocab_order_blank_counts_and_codec():
  records = [{"id": "a", "gloss": "REGEN poss-SEIN  WETTER"}, {"id": "b", "gloss": "WETTER A+Z __ON__"},
             {"id": "c", "gloss": "REGEN"}]
  vocab = GlossVocab.from_records(records)
  assert vocab.glosses == sorted(["REGEN", "poss-SEIN", "WETTER", "A+Z", "__ON__"])
  assert vocab.glosses[-1] == "poss-SEIN"  # upper case sorts before lower case
  assert vocab.index("A+Z") == 1 and vocab.num_glosses == 5 and vocab.num_classes == 6
  assert vocab.counts == {"A+Z": 1, "REGEN": 2, "WETTER": 2, "__ON__": 1, "poss-SEIN": 1}
  ids = vocab.encode("REGEN  poss-SEIN WETTER ")
  assert ids == [2, 5, 3] and 0 not in ids
  assert vocab.decode([0, 2, 0, 5, 3]) == ["REGEN", "poss-SEIN", "WETTER"]
  with pytest.raises(ValueError, match="outside"):
    vocab.decode([6])


def test_vocab_unknown_glosses_are_listed_with_the_sample_id():
  vocab = GlossVocab.from_gloss_strings(["A B"])
  with pytest.raises(UnknownGlossError) as err:
    vocab.encode("A X B Y X", sample_id="utt-7")
  assert err.value.unknown == ["X", "Y"]
  assert "'utt-7'" in str(err.value) and "X Y" in str(err.value)
  with pytest.raises(UnknownGlossError, match=r"Q.*'s2'"):
    vocab.check_records([{"id": "s1", "gloss": "A"}, {"id": "s2", "gloss": "Q A"}])


def test_vocab_json_and_gloss_dict_npy_round_trip(tmp_path):
  vocab = GlossVocab.from_gloss_strings(["B ä", "A B"])
  vocab.save_json(tmp_path / "v.json")
  assert GlossVocab.load_json(tmp_path / "v.json") == vocab
  np.save(tmp_path / "gloss_dict.npy", {g: [vocab.index(g), vocab.counts[g]] for g in vocab.glosses})
  assert GlossVocab.from_gloss_dict_npy(tmp_path / "gloss_dict.npy") == vocab
  np.save(tmp_path / "bad.npy", {"A": [0, 1], "B": [2, 1]})
  with pytest.raises(ValueError, match=r"1\.\.2 \(0 is the CTC blank\)"):
    GlossVocab.from_gloss_dict_npy(tmp_path / "bad.npy")
