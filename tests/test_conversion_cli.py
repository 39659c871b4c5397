"""`python -m checkpoints_conversion`: an MMTLB G2T checkpoint and an HF mBART directory become step-0 workdirs
whose best/latest checkpoints hold exactly the converted weights (the trainer's state layout, as `--mode eval`
restores it), the G2T round trip is bit-exact, and malformed inputs exit 2 with one line."""
import os

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from checkpoints_conversion import cli, engine, hf_mbart, hypersign
from hypersign_jax.tasks import g2t
from hypersign_jax.tasks import slt as slt_task
from hypersign_jax.training import checkpointing

CONFIG = 'configs/g2t_synthetic.py:smoke'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """(config overrides, abstract G2T model of that config, random variables for it)."""
  tmp = tmp_path_factory.mktemp('cli')
  overrides = [f'--config.data.dir={tmp / "data"}', f'--config.text.cache_dir={tmp / "text"}']
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    config = cli.load_config(CONFIG, overrides)
    task = g2t.G2TTask(config)
  finally:
    os.chdir(cwd)
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  pure = jax.tree.map(lambda v: (0.1 * rng.standard_normal(v.shape)).astype(np.float32),
                      engine.model_variables(model))
  return tmp, overrides, model, pure


def _run(*args):
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    return cli.run([*map(str, args)])
  finally:
    os.chdir(cwd)


def _best_state(workdir):
  ckpts = checkpointing.Checkpoints(str(workdir))
  try:
    step = ckpts.best_step()
    target = slt_task._abstract(ckpts.best.item_metadata(step)['state'])  # pylint: disable=protected-access
    state, meta, _ = ckpts.restore('best', target)
    assert ckpts.latest_step() == 0
  finally:
    ckpts.close()
  return step, state, meta


def test_mmtlb_g2t_checkpoint_to_workdir(env, capsys):
  tmp, overrides, model, pure = env
  sd = hypersign.g2t_to_torch(pure)
  assert any(k.startswith('translation_network.encoder.') for k in sd)   # HyperSign's encoder alias
  # Round trip is bit-exact.
  again, report = hypersign.convert_g2t({'model_state': sd}, model)
  assert 'translation_network.encoder.layers.0.fc1.weight' in report.aliased
  back = hypersign.g2t_to_torch(again)
  assert set(back) == set(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)
  path = tmp / 'best.ckpt'
  torch.save({'model_state': {k: torch.from_numpy(v) for k, v in sd.items()}, 'epoch': 80}, path)
  out = tmp / 'w_mmtlb'
  assert _run('--source', 'mmtlb_g2t', '--input', path, '--config', CONFIG, '--output', out, '--quiet',
              *overrides) == 0
  printed = capsys.readouterr().out
  assert '[mmtlb_g2t' in printed and 'aliased' in printed
  step, state, meta = _best_state(out)
  assert step == 0 and meta['best'] is None and 'iterator' in meta
  params = engine.flatten(state['params'])  # restored variables are {'value': array}
  np.testing.assert_array_equal(np.asarray(params[('gloss_embedding', 'embedding')]),
                                pure['gloss_embedding']['embedding'])
  mb = slt_task.read_g2t_mbart(str(out))
  for path_, v in engine.flatten(pure['model']).items():
    np.testing.assert_array_equal(np.asarray(engine.flatten(mb)[path_]), v, err_msg=engine.dotted(path_))


def test_hf_mbart_directory_to_workdir(env, capsys):
  tmp, overrides, model, pure = env
  hf_dir = tmp / 'hf'
  hf_mbart.save_directory(model.model, str(hf_dir), pure=pure['model'])
  out = tmp / 'w_hf'
  assert _run('--source', 'hf_mbart', '--input', hf_dir, '--config', CONFIG, '--output', out, '--quiet',
              *overrides) == 0
  assert 'gloss_embedding.embedding: the G2T gloss table' in capsys.readouterr().out
  mb = engine.flatten(slt_task.read_g2t_mbart(str(out)))
  for path_, v in engine.flatten(pure['model']).items():
    np.testing.assert_array_equal(np.asarray(mb[path_]), v, err_msg=engine.dotted(path_))


def test_malformed_inputs_exit_2_with_one_line(env, capsys, tmp_path):
  _, overrides, _, pure = env
  bad = tmp_path / 'bad.ckpt'
  bad.write_bytes(b'\x80\x02not really a checkpoint')
  cases = {
      'not a readable PyTorch checkpoint': ('mmtlb_g2t', bad),
      'no such file': ('mmtlb_g2t', tmp_path / 'nope.ckpt'),
      'no config.json': ('hf_mbart', tmp_path),
      'converts into task slt': ('hypersign', bad),
  }
  sd = hypersign.g2t_to_torch(pure)
  del sd['translation_network.model.model.decoder.layers.0.fc1.bias']
  sd['translation_network.gloss_embedding.weight'] = np.zeros((3, 32), np.float32)
  wrong = tmp_path / 'wrong.ckpt'
  torch.save({'model_state': {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}}, wrong)
  cases["gloss.vocab"] = ('mmtlb_g2t', wrong)
  for message, (source, path) in cases.items():
    code = _run('--source', source, '--input', path, '--config', CONFIG, '--output', tmp_path / 'o', *overrides)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and '\n' not in err, (message, err)
  code = _run('--source', 'slowfastsign', '--input', bad, '--config', CONFIG, '--output', tmp_path / 'o')
  assert code == 2 and "task cslr" in capsys.readouterr().err
