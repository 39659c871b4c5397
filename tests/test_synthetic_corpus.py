"""Tests of the synthetic signing corpus (data_pipelines/synthetic)."""
import dataclasses

import numpy as np
import pytest

from data_pipelines import records
from data_pipelines.synthetic import corpus
from data_pipelines.synthetic import grammar as gr
from data_pipelines.synthetic import render as rd
from data_pipelines.synthetic import signer as sg


@pytest.fixture(scope="module")
def smoke():
  return {split: list(corpus.generate_split("smoke", split)) for split in corpus.SPLITS}


@pytest.fixture(scope="module")
def demo_dev_text():
  return list(corpus.generate_split("demo", "dev", with_frames=False))


def test_same_seed_gives_byte_identical_records(smoke):
  again = list(corpus.generate_split("smoke", "train"))
  assert [records.encode_record(r) for r in again] == [records.encode_record(r) for r in smoke["train"]]


def test_worker_processes_give_the_same_records_in_order(smoke, monkeypatch):
  monkeypatch.setattr(corpus, "_CHUNK", 5)  # 24 smoke records -> 5 chunks over 2 spawned processes
  parallel = list(corpus.generate_split("smoke", "train", workers=2))
  assert [records.encode_record(r) for r in parallel] == [records.encode_record(r) for r in smoke["train"]]
  with pytest.raises(ValueError, match="workers must be >= 1"):
    list(corpus.generate_split("smoke", "train", workers=0))


def test_different_seed_gives_different_data(smoke):
  other = list(corpus.generate_split("smoke", "train", seed=1))
  assert [r["id"] for r in other] == [r["id"] for r in smoke["train"]]
  assert [r["gloss"] for r in other] != [r["gloss"] for r in smoke["train"]]
  a, b = smoke["train"][0]["keypoints"], other[0]["keypoints"]
  assert a.shape != b.shape or not np.allclose(a, b)
  # The seed changes the motions themselves, not only the sentences.
  m0, m1 = corpus.motions(0)["RAIN"], corpus.motions(1)["RAIN"]
  assert not np.allclose(m0.right_path[:2], m1.right_path[:2])


def test_smoke_records_are_valid_and_within_preset_ranges(smoke):
  preset = corpus.PRESETS["smoke"]
  vocab = set(corpus.gloss_vocabulary("smoke"))
  assert len(vocab) == preset.vocabulary_size == 12
  for split in corpus.SPLITS:
    recs = smoke[split]
    assert len(recs) == preset.size(split)
    for r in recs:
      records.validate_record(r)
      assert r["split"] == split and r["dataset"] == "synthetic" and r["frame_size"] == (32, 32)
      assert r["id"].startswith(f"synth-{split}-")
      assert set(r["gloss"].split()) <= vocab
      assert r["num_frames"] == len(r["frames"]) == r["keypoints"].shape[0]
      assert r["keypoints"].dtype == np.float32
  stats = corpus.corpus_statistics(smoke["train"])
  assert stats["sentences"] == 24
  assert 10 <= stats["vocabulary"] <= 12
  lengths = stats["glosses_per_sentence"]
  assert preset.min_glosses <= lengths["min"] <= lengths["median"] <= lengths["max"] <= preset.max_glosses
  frames = stats["frames"]
  # Every sign lasts at least 3 frames; at most 5 signs of <= 7/0.85 frames plus transitions and rests.
  assert 3 * lengths["min"] <= frames["min"] <= frames["median"] <= frames["max"] <= 70
  assert set(stats["signers"]) <= {"Signer01", "Signer02", "Signer03"}
  assert sum(stats["sentences_per_signer"].values()) == 24


def test_statistics_of_handmade_records():
  recs = [{"id": "a", "gloss": "RAIN COME", "text": "la plova vena", "num_frames": 10, "signer": "S1"},
          {"id": "b", "gloss": "RAIN STAY NOT", "text": "la plova ne resta", "num_frames": 30, "signer": "S2"},
          {"id": "c", "gloss": "SUN SHINE", "text": "lo solo brila", "num_frames": 20, "signer": "S1"}]
  stats = corpus.corpus_statistics(recs)
  assert stats["sentences"] == 3 and stats["vocabulary"] == 6 and stats["text_vocabulary"] == 8
  assert stats["glosses_per_sentence"] == {"min": 2, "median": 2.0, "max": 3}
  assert stats["frames"] == {"min": 10, "median": 20.0, "max": 30}
  assert stats["signers"] == ["S1", "S2"] and stats["sentences_per_signer"] == {"S1": 2, "S2": 1}


def test_keypoint_layout_and_ranges(smoke):
  for r in smoke["train"][:8]:
    kp = r["keypoints"]
    h, w = r["frame_size"]
    assert np.all((kp[..., 0] >= 0) & (kp[..., 0] <= w - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= h - 1))
    conf = kp[..., 2]
    assert np.all((conf >= 0) & (conf <= 1))
    # Knees, ankles and feet are below the upper-body frame: confidence 0. Everything else is detected.
    assert np.all(conf[:, 13:23] == 0)
    assert np.median(conf[:, :13]) > 0.8 and np.median(conf[:, 91:]) > 0.7
    # Person's right side is on the image's left; the head is above the shoulders.
    assert np.all(kp[:, sg.R_SHOULDER, 0] < kp[:, sg.L_SHOULDER, 0])
    assert np.all(kp[:, sg.NOSE, 1] < kp[:, sg.R_SHOULDER, 1])
    # Body wrists coincide with the hand wrists (up to the detector noise and its rare failures).
    assert np.median(np.abs(kp[:, sg.R_WRIST, :2] - kp[:, sg.RHAND0, :2])) < 0.5
    assert np.median(np.abs(kp[:, sg.L_WRIST, :2] - kp[:, sg.LHAND0, :2])) < 0.5
    # Face points lie around the nose, mouth below the nose, within the head.
    face = kp[:, 23:91, :2]
    assert np.all(np.abs(face - kp[:, None, sg.NOSE, :2]).max(axis=(1, 2)) < 0.15 * w)
    assert np.all(kp[:, sg.MOUTH_OUTER, 1].mean(1) > kp[:, sg.NOSE, 1])


def test_dev_and_test_hold_out_signers(smoke, demo_dev_text):
  ids = [r["id"] for split in corpus.SPLITS for r in smoke[split]]
  assert len(ids) == len(set(ids))
  train_signers = {r["signer"] for r in smoke["train"]}
  eval_signers = {r["signer"] for split in ("dev", "test") for r in smoke[split]}
  assert "Signer04" not in train_signers and "Signer04" in eval_signers
  demo = corpus.PRESETS["demo"]
  assert demo.signer_names("train") == [f"Signer{i:02d}" for i in range(1, 9)]
  dev_signers = [r["signer"] for r in demo_dev_text]
  heldout = sum(s in ("Signer09", "Signer10") for s in dev_signers)
  assert 0.35 * len(dev_signers) < heldout < 0.65 * len(dev_signers)


def test_translation_examples():
  assert gr.translate("YESTERDAY NORTH MANY CLOUD COME NOT") == "multe nube ne venisen en lo nordo jeri"
  assert gr.translate("TOMORROW COAST WIND STRONG STAY") == "lo forto vento restos ce la riva morga"
  assert gr.translate("TEMPERATURE MINUS FIVE TO ONE") == "la tempra atena pena sub nolo ad ena grado"
  assert gr.translate("SOUTH WARM AND RAIN FALL") == "lo vetro esa kaldo en la suda e la plova fala"
  with pytest.raises(ValueError, match="unknown glosses"):
    gr.translate("RAIN BANANA")
  with pytest.raises(ValueError, match="needs a verb"):
    gr.translate("TODAY MANY RAIN")


def test_translation_is_a_deterministic_reordering_not_a_copy(demo_dev_text):
  text_of: dict[str, str] = {}
  lexicon_words = {g.lower() for g in gr.LEXICON}
  function_words = {"lo", "la", "li", "le", "en", "ce", "sur", "tra", "ne", "e", "ad", "sub"}
  moved_time = with_function_words = 0
  for r in demo_dev_text:
    glosses, text = r["gloss"].split(), r["text"]
    assert text == text.lower() and text.strip() == text and not text.endswith(".")
    assert text_of.setdefault(r["gloss"], text) == text
    assert text == gr.translate(glosses)
    tokens = text.split()
    assert not set(tokens) & lexicon_words
    with_function_words += bool(set(tokens) & function_words)
    if gr.GLOSS_CATEGORY[glosses[0]] == "time":  # time sign first -> time phrase last
      phrase = dict((g, w) for g, w, _ in gr.TIMES)[glosses[0]]
      assert text.endswith(phrase)
      moved_time += 1
  assert with_function_words >= 0.9 * len(demo_dev_text)
  assert moved_time >= 0.5 * len(demo_dev_text)
  # Tense comes from the time sign and agreement from the quantifier.
  assert gr.translate("YESTERDAY RAIN FALL").split()[2] == "falis"
  assert gr.translate("TOMORROW RAIN FALL").split()[2] == "falos"
  assert gr.translate("TOMORROW MANY RAIN FALL").split()[2] == "falosen"
  # Several gloss sequences share no prefix with their texts and differ in length.
  lengths_differ = sum(len(r["gloss"].split()) != len(r["text"].split()) for r in demo_dev_text)
  assert lengths_differ >= 0.8 * len(demo_dev_text)


def _sign_features(glosses: list[str], style: sg.SignerStyle, seed: int) -> list[np.ndarray]:
  """Per-sign trajectories (wrists + hand centres), normalised by the signer's shoulders (arms never lost)."""
  timing = dataclasses.replace(corpus.PRESETS["demo"].timing, arm_miss_rate=0.0)
  perf = sg.perform(glosses, corpus.motions(0), style, timing, (64, 64), np.random.default_rng(seed))
  kp = perf.keypoints[..., :2]
  mid = 0.5 * (kp[:, sg.L_SHOULDER] + kp[:, sg.R_SHOULDER])
  width = np.linalg.norm(kp[:, sg.L_SHOULDER] - kp[:, sg.R_SHOULDER], axis=-1)[:, None, None]
  hands = np.stack([kp[:, sg.R_WRIST], kp[:, sg.L_WRIST], kp[:, sg.RHAND0:].mean(1), kp[:, sg.LHAND0:].mean(1)], 1)
  norm = (hands - mid[:, None]) / width
  feats = []
  for start, end in perf.spans:
    idx = np.linspace(start, end - 1, 8).round().astype(int)
    feats.append(norm[idx].ravel())
  return feats


def test_gloss_motions_are_distinct_across_signers():
  vocab = corpus.gloss_vocabulary("demo")
  styles = corpus.signers("demo")
  a, b = styles[0], styles[-1]
  assert (a.scale, a.offset, a.speed) != (b.scale, b.offset, b.speed)
  # Class means from signer A (3 performances each), classified on held-out signer B.
  rng = np.random.default_rng(0)
  means = np.zeros((len(vocab), 64))
  for rep in range(3):
    order = rng.permutation(len(vocab))
    for i, f in zip(order, _sign_features([vocab[i] for i in order], a, rep)):
      means[i] += f / 3
  order = rng.permutation(len(vocab))
  test = _sign_features([vocab[i] for i in order], b, 99)
  pred = [int(np.argmin(np.linalg.norm(means - f, axis=1))) for f in test]
  accuracy = np.mean(np.asarray(pred) == order)
  print("nearest-class-mean accuracy", accuracy)
  assert accuracy >= 0.8, accuracy  # chance is 1/76


def test_coarticulation_and_signer_speed():
  bank, timing = corpus.motions(0), corpus.PRESETS["demo"].timing
  styles = corpus.signers("demo")
  glosses = ["TOMORROW", "NORTH", "MANY", "CLOUD", "COME", "NOT"]
  params, spans = sg.sequence_params(glosses, bank, styles[0], timing, np.random.default_rng(0))
  assert len(spans) == len(glosses)
  for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
    assert start > end  # a transition of at least one frame between consecutive signs
    a, b = params[end - 1], params[start]
    s = (params[end:start] - a) @ (b - a) / ((b - a) @ (b - a))
    assert np.all(np.diff(s) > 0) and 0 < s[0] and s[-1] < 1  # moves monotonically from one sign to the next
    assert np.allclose(params[end:start], a + s[:, None] * (b - a), atol=1e-9)  # on the straight blend
  # Sign durations follow the signer's speed factor.
  slow, fast = min(styles, key=lambda s: s.speed), max(styles, key=lambda s: s.speed)
  def mean_duration(style):
    lengths = []
    for seed in range(5):
      _, spans = sg.sequence_params(glosses, bank, style, timing, np.random.default_rng(seed))
      lengths += [e - s for s, e in spans]
    return np.mean(lengths)
  assert slow.speed < fast.speed and mean_duration(slow) > mean_duration(fast)


def test_frames_agree_with_keypoints():
  r = next(corpus.generate_split("demo", "dev", resolution=64))
  frames = np.stack([rd.decode_png(b) for b in r["frames"]])
  assert frames.shape == (r["num_frames"], 64, 64, 3) and frames.dtype == np.uint8
  style = {s.name: s for s in corpus.signers("demo")}[r["signer"]]
  background = np.array(style.background)
  assert np.all(frames[:, 0, 0] == background)
  kp = r["keypoints"]
  for name, index in (("right wrist", sg.R_WRIST), ("left wrist", sg.L_WRIST), ("nose", sg.NOSE)):
    for t in range(len(frames)):
      if kp[t, index, 2] == 0:  # a lost detection (the demo preset's arm misses): the frame still shows it
        continue
      x, y = np.floor(kp[t, index, :2]).astype(int)
      patch = frames[t, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].reshape(-1, 3)
      assert np.any(np.any(patch != background, axis=-1)), (name, t)
  # The hands move: frame differences are concentrated around the wrists.
  diff = np.any(frames[1:] != frames[:-1], axis=-1)
  ys, xs = np.nonzero(diff.any(0))
  assert diff.sum() > 0
  wrists = kp[:, [sg.R_WRIST, sg.L_WRIST], :2].reshape(-1, 2)
  assert xs.min() >= wrists[:, 0].min() - 12 and xs.max() <= wrists[:, 0].max() + 12


def test_arm_misses_zero_only_the_arm_points_of_whole_spans_and_leave_frames_alone():
  base = corpus.PRESETS["smoke"]
  lossy = dataclasses.replace(base, timing=dataclasses.replace(base.timing, arm_miss_rate=0.3,
                                                              arm_miss_frames=(3, 5)))
  arm = np.zeros(sg.NUM_KEYPOINTS, bool)
  arm[[sg.L_ELBOW, sg.R_ELBOW, sg.L_WRIST, sg.R_WRIST]] = True
  arm[sg.LEFT_HAND] = arm[sg.RIGHT_HAND] = True
  missed = total = 0
  for clean_rec, lossy_rec in zip(corpus.generate_split(base, "train"), corpus.generate_split(lossy, "train")):
    assert clean_rec["frames"] == lossy_rec["frames"] and clean_rec["gloss"] == lossy_rec["gloss"]
    a, b = clean_rec["keypoints"], lossy_rec["keypoints"]
    lost = np.all(b[:, arm] == 0, axis=(1, 2))
    assert np.array_equal(a[~lost], b[~lost])  # frames outside the spans are untouched
    assert np.array_equal(a[lost][:, ~arm], b[lost][:, ~arm])  # the rest of the body is still detected
    assert np.all(a[lost][:, arm, 2] > 0)  # those points were detected before
    runs = np.diff(np.concatenate([[0], lost.astype(int), [0]]))
    starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
    interior = ends < len(lost)  # a span may be cut by the clip's end; every other one is >= 3 frames long
    assert np.all(ends[interior] - starts[interior] >= 3)
    missed += lost.sum()
    total += len(lost)
  assert 0.15 < missed / total < 0.35, missed / total  # about the configured 30 % of frames
  assert corpus.PRESETS["demo"].timing.arm_miss_rate > 0 and corpus.PRESETS["full"].timing.arm_miss_rate == 0
  with pytest.raises(ValueError, match="arm_miss_rate"):
    sg.arm_miss_mask(10, dataclasses.replace(base.timing, arm_miss_rate=1.5), np.random.default_rng(0))


def test_png_frames_decode_and_resolution_scales_keypoints():
  small = next(corpus.generate_split("smoke", "test", resolution=64))
  big = next(corpus.generate_split("smoke", "test", resolution=256))
  assert big["frame_size"] == (256, 256) and big["num_frames"] == small["num_frames"]
  frame = rd.decode_png(big["frames"][0])
  assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
  assert rd.decode_png(small["frames"][0]).shape == (64, 64, 3)
  inside = (small["keypoints"][..., :2] > 1) & (small["keypoints"][..., :2] < 62)
  assert np.allclose(big["keypoints"][..., :2][inside], 4 * small["keypoints"][..., :2][inside], atol=1e-3)
  assert big["gloss"] == small["gloss"] and big["text"] == small["text"]
  no_frames = next(corpus.generate_split("smoke", "test", resolution=64, with_frames=False))
  assert "frames" not in no_frames
  assert np.array_equal(no_frames["keypoints"], small["keypoints"])


def test_png_encoding_is_lossless_and_checked():
  frame = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
  data = rd.encode_png(frame)
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  assert np.array_equal(rd.decode_png(data), frame)
  assert rd.encode_png(frame) == data
  with pytest.raises(ValueError, match="uint8"):
    rd.encode_png(frame.astype(np.float32))


def test_user_errors_name_the_problem():
  with pytest.raises(ValueError, match="unknown synthetic preset 'huge'.*demo"):
    list(corpus.generate_split("huge", "train"))
  with pytest.raises(ValueError, match="unknown split 'val'"):
    list(corpus.generate_split("smoke", "val"))
  with pytest.raises(ValueError, match="has no motion"):
    sg.perform(["NOPE"], {}, corpus.signers("smoke")[0], sg.Timing(), (32, 32), np.random.default_rng(0))
