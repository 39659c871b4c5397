"""The SentencePiece mBART tokenizer gives transformers' MBartTokenizer ids; pruning map; HyperSign targets."""
import os
import pickle
import shutil

import numpy as np
import pytest
import transformers

from hypersign_jax.text import pruning, spm_training
from hypersign_jax.text import tokenizer as tok

TEXTS = [
    "und nun die wettervorhersage für morgen donnerstag den zwölften august",
    "mancherorts regnet es auch länger und ergiebig auch lokale überschwemmungen sind wieder möglich",
    "im süden schwacher wind aus unterschiedlichen richtungen",
    "heute nacht minus zwei grad an der see , später gibt es gewitter !",
    "der wind weht mäßig bis frisch im norden .",
    "am tag scheint die sonne über ganz deutschland",
] * 4
SAMPLES = TEXTS[:6] + ["morgen wind", "ein unbekanntes wort qqq xyz", "nordwesten süden  osten", ""]


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  path = spm_training.train_spm(TEXTS, str(d), vocab_size=90)
  hf_dir = d / "hf"
  hf_dir.mkdir()
  shutil.copy(path, hf_dir / tok.SPM_FILE)
  return path, str(hf_dir)


def test_training_is_deterministic_and_cached(spm_dir, tmp_path):
  path, _ = spm_dir
  again = spm_training.train_spm(TEXTS, str(tmp_path), vocab_size=90)
  assert os.path.basename(again) == os.path.basename(path)
  a, b = tok.MBartTokenizer(again).sp, tok.MBartTokenizer(path).sp
  assert a.GetPieceSize() == b.GetPieceSize()
  assert all(a.IdToPiece(i) == b.IdToPiece(i) and a.GetScore(i) == b.GetScore(i) for i in range(a.GetPieceSize()))
  assert spm_training.train_spm(TEXTS, str(tmp_path), vocab_size=90) == again  # cached path
  assert spm_training.train_spm(TEXTS[:6], str(tmp_path), vocab_size=90) != again


@pytest.mark.parametrize("lang", ["de_DE", "zh_CN", "en_XX"])
def test_ids_equal_transformers_mbart_tokenizer(spm_dir, lang):
  path, hf_dir = spm_dir
  ours = tok.MBartTokenizer(hf_dir)  # a directory with sentencepiece.bpe.model, as HF's
  hf = transformers.MBartTokenizer.from_pretrained(hf_dir, local_files_only=True, src_lang=lang, tgt_lang=lang)
  assert ours.vocab_size == len(hf)
  for token in ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *tok.LANGUAGE_CODES]:
    assert ours.piece_to_id(token) == hf.convert_tokens_to_ids(token), token
  assert ours.lang_id("de_DE") == ours.spm_size + 3 and ours.mask_id == ours.vocab_size - 1
  for text in SAMPLES:
    ids = ours.encode(text, lang)
    assert ids == hf(text)["input_ids"] == hf(text_target=text)["input_ids"], text
    assert ids[-2:] == [tok.EOS, hf.convert_tokens_to_ids(lang)]
    if tok.UNK not in ids:
      assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True) == " ".join(text.split())
  assert [ours.id_to_piece(i) for i in range(ours.vocab_size)] == hf.convert_ids_to_tokens(list(range(len(hf))))


def test_pruning_map_layout_and_round_trip(spm_dir, tmp_path):
  t = tok.MBartTokenizer(spm_dir[0])
  pm = pruning.PruneMap.build(t, TEXTS[:3])
  assert [pm.new_id(i) for i in range(4)] == [0, 1, 2, 3]
  assert pm.new_id(t.lang_id("de_DE")) == 6 and pm.new_id(t.lang_id("zh_CN")) == 28
  assert pm.new_id(t.mask_id) == 29
  first_seen = list(dict.fromkeys(i for s in TEXTS[:3] for i in t.encode_pieces(s)))
  assert [pm.new_id(i) for i in first_seen] == list(range(30, 30 + len(first_seen)))
  assert pm.vocab_size == 30 + len(first_seen)
  ids = t.encode(TEXTS[1], "de_DE")
  pruned = pm.prune(ids)
  assert pruned[-2:] == [2, 6] and max(pruned) < pm.vocab_size
  assert pm.unprune(pruned) == ids
  unseen = next(i for i in t.encode_pieces(TEXTS[3] + " " + TEXTS[4]) if i not in pm.old_to_new)
  assert pm.prune([unseen, ids[0]]) == [tok.UNK, pm.new_id(ids[0])] and pm.num_unknown == 1
  assert pm.unprune([pm.vocab_size + 5]) == [tok.UNK]
  pm.save_json(tmp_path / "map_ids.json")
  with open(tmp_path / "map_ids.pkl", "wb") as f:
    pickle.dump(pm.old_to_new, f)
  for name in ("map_ids.json", "map_ids.pkl"):
    loaded = pruning.PruneMap.load(tmp_path / name)
    assert loaded.old_to_new == pm.old_to_new and list(loaded.kept_ids) == list(pm.kept_ids)
  with pytest.raises(ValueError, match="special id 1"):
    pruning.PruneMap({0: 0, 1: 2, 2: 1, 3: 3})


def test_decoder_inputs_and_labels_hand_cases():
  lang = 6
  out = tok.encode_targets([[10, 11, 2, 6], [12, 2, 6]], lang)
  np.testing.assert_array_equal(out["input_ids"], [[10, 11, 2, 6], [12, 2, 6, 1]])
  np.testing.assert_array_equal(out["labels"], [[10, 11, 2, 1], [12, 2, 1, 1]])
  # HyperSign's shift: the language id wraps to position 0; the shorter row keeps a lang id after its </s>.
  np.testing.assert_array_equal(out["decoder_input_ids"], [[6, 10, 11, 2], [6, 12, 2, 6]])
  np.testing.assert_array_equal(out["text_length"], [4, 3])
  padded = tok.encode_targets([[10, 11, 2, 6], [12, 2, 6]], lang, length=6)
  np.testing.assert_array_equal(padded["decoder_input_ids"], [[6, 10, 11, 2, 6, 1], [6, 12, 2, 6, 1, 1]])
  np.testing.assert_array_equal(padded["labels"], [[10, 11, 2, 1, 1, 1], [12, 2, 1, 1, 1, 1]])
  with pytest.raises(ValueError, match="does not end with"):
    tok.encode_targets([[10, 2]], lang)


def test_gloss_tokenizer_g2t_layout(tmp_path):
  g = tok.GlossTokenizer.from_gloss_strings(["JETZT WETTER MORGEN", "WETTER REGEN"], src_lang="de_DGS")
  assert [g.gloss2id[s] for s in tok.GLOSS_SPECIALS] == list(range(9))
  assert g.gloss2id["de_DE"] == 6 and g.src_lang_id == 8
  assert g.encode("REGEN jetzt") == [g.gloss2id["regen"], g.gloss2id["jetzt"], 2, 8]
  assert g.encode("UNBEKANNT") == [3, 2, 8] and g.num_unknown == 1
  g.save_json(tmp_path / "gloss2ids.json")
  assert tok.GlossTokenizer.load(tmp_path / "gloss2ids.json").gloss2id == g.gloss2id
