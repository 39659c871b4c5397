"""WER equals NIST sclite (S/D/I/N per utterance and corpus), PHOENIX cleanups, STM/CTM files."""

import random
import re
import shutil
import subprocess

import pytest

from hypersign_jax.metrics import gloss_cleanup, sclite_files, wer

SCTK_MISSING = ('NIST sclite is needed for this test: install the Debian package `sctk` '
                '(`apt-get install -y sctk`; CI installs it), which provides `sctk sclite`.')


def _run_sclite(tmp_path, refs, ctm_rows, *, case_sensitive, empty_token):
  """Writes STM/CTM, runs sclite, returns ({utt: (C, S, D, I)}, corpus dict from the dtl report)."""
  if shutil.which('sctk') is None:
    pytest.fail(SCTK_MISSING)
  stm, ctm = tmp_path / 'ref.stm', tmp_path / 'hyp.ctm'
  sclite_files.write_stm(stm, [(k, 'spk', ' '.join(v)) for k, v in refs.items()])
  sclite_files.write_ctm(ctm, ctm_rows, empty_token=empty_token)
  cmd = ['sctk', 'sclite', '-h', str(ctm), 'ctm', '-r', str(stm), 'stm', '-f', '0', '-o', 'pra', 'dtl', 'stdout']
  if case_sensitive:
    cmd.append('-s')
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
  assert proc.returncode == 0, f'sclite failed ({proc.returncode}): {proc.stderr[-2000:]}'
  out = proc.stdout
  per_utt = {f: tuple(int(x) for x in s.split())
             for f, s in re.findall(r'^File: (\S+)\n(?:.*\n)*?Scores: \(#C #S #D #I\) ([\d ]+)$', out, re.M)}
  num = lambda label: int(re.search(label + r'.*?\(\s*(\d+)\)', out).group(1))
  corpus = dict(c=num('Percent Correct'), s=num('Percent Substitution'), d=num('Percent Deletions'),
                i=num('Percent Insertions'), n=num(r'Ref\. words'), err=num('Percent Total Error'))
  return per_utt, corpus


def _random_corpus(seed, vocab, n_utt=250, max_len=12, p_missing=0.1, p_empty=0.1):
  rng = random.Random(seed)
  refs, hyps = {}, {}
  for k in range(n_utt):
    uid = f'utt{k:04d}'
    refs[uid] = [rng.choice(vocab) for _ in range(rng.randint(0, max_len))]
    r = rng.random()
    if r < p_missing:
      continue
    n = 0 if r < p_missing + p_empty else rng.randint(1, max_len + 2)
    hyps[uid] = [rng.choice(vocab) for _ in range(n)]
  refs['utt0000'] = refs['utt0000'] or [vocab[0]]
  return refs, hyps


def _assert_same(result, per_utt, corpus):
  assert len(per_utt) == len(result.utterances)
  for u in result.utterances:
    assert (u.counts.c, u.counts.s, u.counts.d, u.counts.i) == per_utt[u.utt_id], (u.utt_id, u.ref, u.hyp)
  t = result.totals
  assert (t.c, t.s, t.d, t.i, t.n, t.errors) == (corpus['c'], corpus['s'], corpus['d'], corpus['i'],
                                                  corpus['n'], corpus['err'])


@pytest.mark.parametrize('seed,vocab,max_len', [
    (0, ['A', 'B', 'C'], 14),  # tiny vocabulary and long sentences: many equal-cost alignments
    (1, ['A', 'B', 'C', 'D', 'E', 'F', 'ZEIGEN', 'WIE-AUSSEHEN', '__ON__', '我', '你好', 'poss-SEIN'], 10),
])
def test_matches_sclite_with_empty_token(tmp_path, seed, vocab, max_len):
  """Original convention: every reference id gets a CTM entry, empty ones as [EMPTY] (as mergectmstm.py)."""
  refs, hyps = _random_corpus(seed, vocab, max_len=max_len)
  per_utt, corpus = _run_sclite(tmp_path, refs, [(k, hyps.get(k, [])) for k in refs], case_sensitive=True,
                                empty_token='[EMPTY]')
  result = wer.score_corpus(refs, hyps, merge_hyp_repeats=False, case_sensitive=True)
  assert result.totals.n > 1000 and result.totals.s > 0 and result.totals.i > 0
  _assert_same(result, per_utt, corpus)


def test_matches_sclite_case_insensitive_missing_ids(tmp_path):
  """sclite's default (case-insensitive) and utterances absent from the CTM (all deletions)."""
  refs, hyps = _random_corpus(2, ['a', 'A', 'b', 'B', 'c', 'X-Y'], max_len=9, p_missing=0.2)
  per_utt, corpus = _run_sclite(tmp_path, refs, list(hyps.items()), case_sensitive=False, empty_token=None)
  result = wer.score_corpus(refs, hyps, merge_hyp_repeats=False, case_sensitive=False, empty_token=None)
  _assert_same(result, per_utt, corpus)
  assert all(u.counts.d == u.counts.n for u in result.utterances if u.utt_id not in hyps)


def test_tie_breaking_prefers_substitutions():
  # 3 substitutions and "2 insertions, 1 match, 2 deletions" both cost 12; sclite picks the substitutions.
  u = wer.score_utterance('x', ['A', 'B', 'C'], ['D', 'E', 'A'], merge_hyp_repeats=False)
  assert (u.counts.c, u.counts.s, u.counts.d, u.counts.i) == (0, 3, 0, 0)
  assert [op for op, _, _ in u.alignment] == ['S', 'S', 'S']


def test_empty_and_missing_hypotheses_count_every_reference_word():
  refs = {'a': ['X', 'Y', 'Z'], 'b': ['X']}
  res = wer.score_corpus(refs, {'a': []})
  assert res.totals.errors == 4 and res.totals.n == 4 and res.wer == 100.0
  assert res.by_id()['a'].hyp == ('[EMPTY]',)
  res = wer.score_corpus(refs, {}, empty_token=None)
  assert (res.totals.d, res.totals.s) == (4, 0)


def test_merge_hyp_repeats_is_the_original_default():
  refs = {'a': 'A A B'}
  assert wer.corpus_wer(refs, {'a': 'A A B B'}).totals.errors == 1  # hyp merged to A B: one deletion
  assert wer.corpus_wer(refs, {'a': 'A A B B'}, merge_hyp_repeats=False).totals.errors == 1  # one insertion
  assert wer.corpus_wer(refs, {'a': 'A A B'}).totals.errors == 1
  assert wer.corpus_wer(refs, {'a': 'A A B'}, merge_hyp_repeats=False).totals.errors == 0


def test_errors_are_raised_not_reported_as_100():
  with pytest.raises(ValueError, match='reference set is empty'):
    wer.score_corpus({}, {})
  with pytest.raises(ValueError, match='not in the references.*ghost'):
    wer.score_corpus({'a': ['X']}, {'ghost': ['X']})
  with pytest.raises(ValueError, match='no words'):
    wer.score_corpus({'a': []}, {'a': ['X']})
  with pytest.raises(TypeError, match='not one string'):
    wer.score_corpus({'a': 'X Y'}, {'a': ['X']})
  with pytest.raises(ValueError, match='unknown gloss cleanup'):
    wer.corpus_wer({'a': 'X'}, {'a': 'X'}, cleanup='phoenix2099')


def test_summary_reports_breakdown():
  res = wer.corpus_wer({'a': 'A B C D', 'b': 'E'}, {'a': 'A X C', 'b': 'E F'})
  assert (res.totals.s, res.totals.d, res.totals.i, res.totals.n) == (1, 1, 1, 5)
  assert res.wer == pytest.approx(60.0)
  text = str(res)
  assert 'WER 60.00% = (S 1 + D 1 + I 1) / N 5' in text
  assert '|     2      5 |  60.0   20.0   20.0   20.0   60.0  100.0 |' in text
  assert 'cleanup=none' in text
  assert 'Eval:' in res.by_id()['a'].pra()


def test_corpus_wer_applies_cleanup_to_hypotheses_only():
  refs = {'a': 'SONNE HABEN ZEIGEN-BILDSCHIRM'}
  hyps = {'a': 'loc-S0NNE __EMOTION__ HABEN2 ZEIGEN'}
  assert wer.corpus_wer(refs, hyps, cleanup='phoenix2014').totals.errors == 0
  assert wer.corpus_wer(refs, hyps).totals.errors == 4


# ----------------------------------------------------------------------------------------------------- cleanups

CLEANUP_CASES = [
    # (name, hypothesis, expected)
    ('phoenix2014', 'loc-REGEN cl-KOMMEN qu-WAS poss-SEIN lh-HAND', 'REGEN KOMMEN WAS SEIN HAND'),
    ('phoenix2014', 'S0NNE HABEN2 REGEN-PLUSPLUS', 'SONNE HABEN REGEN'),
    ('phoenix2014', '__EMOTION__ A __PU__ __LEFTHAND__ __EPENTHESIS__ __ON__', 'A __ON__'),
    ('phoenix2014', 'ZEIGEN ANZEIGEN loc-ZEIGEN', 'ZEIGEN-BILDSCHIRM ANZEIGEN-BILDSCHIRM ZEIGEN-BILDSCHIRM'),
    ('phoenix2014', 'WALDRAUM RAUM XRAUM', 'WALD RAUM XRAUM'),
    # One gloss per CTM line: the multi-gloss rules cannot fire, repeats stay (the scorer merges them).
    ('phoenix2014', 'WIE AUSSEHEN A B C GUT GUT', 'WIE AUSSEHEN A B C GUT GUT'),
    ('phoenix2014', '__EMOTION__ __PU__', ''),
    ('phoenix2014_sentence', 'WIE AUSSEHEN A B C GUT GUT', 'WIE-AUSSEHEN A+B+C GUT'),
    ('phoenix2014_sentence', 'ZEIGEN REGEN ZEIGEN', 'ZEIGEN-BILDSCHIRM REGEN ZEIGEN-BILDSCHIRM'),
    ('phoenix2014_sentence', 'X SCH A NN', 'X SCH+A NN'),
    ('phoenix2014_sentence', 'A B NN C', 'A+B+NN C'),
    ('phoenix2014_sentence', 'GUT GUT GUT GUT REGEN-PLUSPLUS REGEN', 'GUT REGEN'),
    ('phoenix2014_sentence', 'A __EPENTHESIS__ B', 'A B'),
    ('phoenix2014_sentence', 'WALD-WEG WALD-WEG loc-HIER', 'WALD-WEG WALD-WEG HIER'),
    ('phoenix2014t', '__ON__ loc-HIER cl-KOMMEN __OFF__ GEWITTER-PLUSPLUS SCHLAFRAUM', 'HIER KOMMEN GEWITTER SCHLAF'),
    ('phoenix2014t', 'WIE AUSSEHEN A B GUT GUT REGEN REGEN', 'WIE-AUSSEHEN A+B GUT REGEN'),
    ('phoenix2014t', 'poss-SEIN qu-WAS S0NNE', 'poss-SEIN qu-WAS S0NNE'),  # milder: these stay
    ('phoenix2014t', 'X-Y X-Y', 'X-Y'),  # the final groupby merges what the perl rule leaves
    ('phoenix2014t', '__EMOTION__', ''),
    ('csl-daily', '我 我 loc-X', '我 我 loc-X'),
    ('none', 'A A', 'A A'),
]


@pytest.mark.parametrize('name,hyp,expected', CLEANUP_CASES)
def test_cleanup_cases(name, hyp, expected):
  assert gloss_cleanup.get_cleanup(name)(hyp.split()) == expected.split()


def test_cleanup_selection():
  assert gloss_cleanup.get_cleanup(None) is gloss_cleanup.clean_none
  assert gloss_cleanup.get_cleanup('PHOENIX2014-T') is gloss_cleanup.clean_phoenix2014t
  with pytest.raises(ValueError, match='expected one of'):
    gloss_cleanup.get_cleanup('wmt')
  with pytest.raises(TypeError, match='list of glosses'):
    gloss_cleanup.clean_phoenix2014('A B')


# -------------------------------------------------------------------------------------------------- STM / CTM

def test_stm_ctm_roundtrip_and_layout(tmp_path):
  stm, ctm = tmp_path / 'r.stm', tmp_path / 'h.ctm'
  sclite_files.write_stm(stm, [('b', 'Signer01', 'X  Y'), ('a', 'signer05', '')])
  assert stm.read_text().splitlines() == ['a 1 signer05 0.0 1.79769e+308', 'b 1 Signer01 0.0 1.79769e+308 X Y']
  assert sclite_files.read_stm(stm) == [('a', 'signer05', ''), ('b', 'Signer01', 'X Y')]
  sclite_files.write_ctm(ctm, [('b', ['X', 'Y']), ('a', [])])
  assert ctm.read_text().splitlines() == ['a 1 0.00 0.01 [EMPTY]', 'b 1 0.00 0.01 X', 'b 1 0.01 0.02 Y']
  assert sclite_files.read_ctm(ctm) == {'a': [], 'b': ['X', 'Y']}
  sclite_files.write_ctm(ctm, [('a', [])], empty_token=None)
  assert ctm.read_text() == ''


def test_stm_ctm_errors(tmp_path):
  with pytest.raises(ValueError, match='duplicate utterance ids'):
    sclite_files.write_stm(tmp_path / 'r.stm', [('a', 's', 'X'), ('a', 's', 'Y')])
  with pytest.raises(ValueError, match='without whitespace'):
    sclite_files.write_stm(tmp_path / 'r.stm', [('a b', 's', 'X')])
  with pytest.raises(TypeError, match='list of glosses'):
    sclite_files.write_ctm(tmp_path / 'h.ctm', [('a', 'X Y')])
  bad = tmp_path / 'bad.ctm'
  bad.write_text('a 1 0.00\n')
  with pytest.raises(ValueError, match=r'bad\.ctm:1: a CTM line needs at least 5 fields'):
    sclite_files.read_ctm(bad)
