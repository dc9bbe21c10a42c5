"""One evaluation path (issue 31): the API, external checkpoints and runs give the same
flags and report; --subset=first, --save_adv, the RobustBench entry, the compile cache."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from generalist_jax import AutoAttack
from generalist_jax import data as data_lib
from generalist_jax.attacks import registry
from generalist_jax.evaluation import compile_cache
from generalist_jax.evaluation import external
from generalist_jax.evaluation import jitted
from generalist_jax.evaluation import leaderboard
from generalist_jax.evaluation import pipeline
from generalist_jax.evaluation import runner
from generalist_jax.method import step as step_lib
from generalist_jax.run import evaluate_run
from generalist_jax.run import loop
from generalist_jax.run import restore
from tests.conftest import write_tiny_npz
from tests.test_config import ROOT
from tests.tiny_config import tiny_config

WRONG = [3, 7, 11]  # test labels the model gets wrong; the others are its predictions


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """(workdir, npz, model, variables): a trained tiny run whose test labels are the
  global learner's predictions but for WRONG, so most examples are clean-correct
  and there is something to attack."""
  tmp = tmp_path_factory.mktemp('path')
  npz = write_tiny_npz(tmp / 'd.npz', n_test=24)
  config = tiny_config(npz)
  config.eval.final_test = False
  workdir = tmp / 'run'
  loop.train_and_evaluate(config, str(workdir))
  _, dataset, setup, state, _ = restore.restore_run(workdir, 'last', full_test=True)
  variables = step_lib.learners(state, setup)['global']
  logits = jitted.model_apply_fn(setup.model)(variables, data_lib.to_float(dataset.test[0]))
  with np.load(npz) as f:
    arrays = dict(f)
  arrays['y_test'] = np.array(np.argmax(logits, -1))
  arrays['y_test'][WRONG] = (arrays['y_test'][WRONG] + 1) % 10
  np.savez(npz, **arrays)  # evaluation reads the test split again
  return workdir, npz, setup.model, variables


EVAL = dict(attacks='standard', norms=['linf'], eps=[0.5 / 255], n_ex=12, batch_size=8, seed=3,
            overrides={'steps': 3, 'n_targets': 2})
SAME = ('n_ex', 'seed', 'clean_acc', 'robust_acc', 'worst_case', 'attacks', 'missing_components',
        'sanity')


def test_the_api_external_checkpoints_and_runs_are_one_path(tiny_run, tmp_path, monkeypatch):
  """Fault kind: three copies of eps check -> plan -> run -> report, which disagreed
  (external checkpoints wrote missing_components: [] whatever was missing)."""
  workdir, npz, model, variables = tiny_run
  implemented = registry.implemented  # a component missing in l-inf: Square
  monkeypatch.setattr(
      registry, 'implemented',
      lambda norm: tuple(a for a in implemented(norm) if not (norm == 'linf' and a == 'square')))
  run_report = evaluate_run.evaluate_run(workdir, checkpoint='last', name='one', progress=False,
                                         **EVAL)
  checkpoint = tmp_path / 'model.pt'
  checkpoint.write_bytes(b'weights')  # read for its hash; the loader is the run's model
  monkeypatch.setattr(external, 'load_torch_learner', lambda *a: (model, variables))
  ext_report = external.evaluate_torch_checkpoint(
      checkpoint, arch='wrn-10-1', data_config={'source': 'npz', 'path': str(npz), 'val_size': 1},
      out_dir=tmp_path / 'ext', name='one', progress=False, **EVAL)
  assert run_report['missing_components'] == ['linf/square']
  for key in SAME:
    assert ext_report[key] == run_report[key], key
  run_csv = (workdir / 'eval' / 'one.csv').read_text()
  assert (tmp_path / 'ext' / 'one.csv').read_text() == run_csv

  dataset = data_lib.load_dataset({'source': 'npz', 'path': str(npz), 'val_size': 1})
  images, labels, ids = runner.sample_test_points(*dataset.test, EVAL['n_ex'])
  api = AutoAttack(jitted.model_apply_fn(model), params=variables, norm='Linf', eps=EVAL['eps'][0],
                   version='standard', seed=EVAL['seed'],
                   overrides=EVAL['overrides']).run(images, labels, batch_size=8, example_ids=ids)
  assert api.missing_components == ('square',)
  assert (api.clean_acc, api.robust_acc) == (run_report['clean_acc'], run_report['robust_acc'])
  assert api.sanity == run_report['sanity']
  rows = [r.split(',') for r in run_csv.strip().split('\n')]
  for name, flags in api.flags.items():
    column = rows[0].index(f'linf/{name}')
    assert [int(r[column]) for r in rows[1:]] == flags.tolist(), name
  assert 0 < run_report['robust_acc'] < run_report['clean_acc']  # attacks did something


def test_subset_first_takes_the_first_test_examples():
  images = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
  labels = np.arange(10) % 3
  x, y, ids = pipeline.choose_subset(images, labels, 4, 'first')
  np.testing.assert_array_equal(ids, [0, 1, 2, 3])
  np.testing.assert_array_equal(x, images[:4])
  np.testing.assert_array_equal(y, labels[:4])
  assert pipeline.choose_subset(images, labels, 50, 'first')[2].tolist() == list(range(10))
  assert pipeline.choose_subset(images, labels, 4, 'random')[2].tolist() != [0, 1, 2, 3]
  with pytest.raises(ValueError, match="--subset='last'"):
    pipeline.choose_subset(images, labels, 4, 'last')


def test_save_adv_holds_points_that_reproduce_the_flags_after_a_resume(tiny_run):
  """x_adv is the clean image where no attack succeeded (AutoAttack's x_adv); the model
  is wrong on it exactly where an example is clean-correct but not robust. An
  interrupted evaluation keeps the points found before the interruption."""
  workdir, npz, model, variables = tiny_run
  kwargs = dict(EVAL, attacks='apgd-ce,square', subset='first', save_adv=True, checkpoint='last',
                name='adv', progress=False)
  assert evaluate_run.evaluate_run(workdir, stop_after_batches=4, **kwargs) is None
  report = evaluate_run.evaluate_run(workdir, **kwargs)
  assert report['subset'] == 'first'
  with np.load(workdir / 'eval' / 'adv.adv.npz') as f:
    saved = dict(f)
  n = EVAL['n_ex']
  np.testing.assert_array_equal(saved['example_ids'], np.arange(n))
  with np.load(npz) as f:
    clean_images, test_labels = data_lib.to_float(f['x_test'][:n]), f['y_test'][:n]
  np.testing.assert_array_equal(saved['y'], test_labels)
  assert saved['x_adv'].dtype == np.float32 and saved['x_adv'].shape == clean_images.shape
  clean, robust = saved['clean'], saved['robust']
  assert clean.sum() == n - sum(i < n for i in WRONG) and 0 < robust.sum() < clean.sum()
  assert robust.mean() == pytest.approx(report['robust_acc'])
  correct = np.asarray(
      np.argmax(jitted.model_apply_fn(model)(variables, saved['x_adv']), -1) == test_labels)
  np.testing.assert_array_equal(correct, robust)  # wrong exactly where not robust
  unchanged = robust | ~clean
  np.testing.assert_array_equal(saved['x_adv'][unchanged], clean_images[unchanged])
  assert np.abs(saved['x_adv'] - clean_images).max() <= EVAL['eps'][0] + 1e-6
  assert 'the first ones' in (workdir / 'eval' / 'adv.md').read_text()


def test_save_adv_needs_one_norm(tmp_path):
  with pytest.raises(ValueError, match='save_adv.*one norm'):
    evaluate_run.evaluate_run(tmp_path, norms=['linf', 'l2'], save_adv=True)


def test_a_standard_evaluation_writes_a_robustbench_entry(tiny_run, capsys):
  workdir, _, _, _ = tiny_run
  kwargs = dict(checkpoint='last', norms=['linf'], eps=[8 / 255], n_ex=8, batch_size=8,
                subset='first', progress=False)
  report = evaluate_run.evaluate_run(workdir, attacks='standard', name='rb', **kwargs)
  info = json.loads((workdir / 'eval' / 'rb.model_info.json').read_text())
  assert list(info) == [
      'link', 'name', 'authors', 'additional_data', 'number_forward_passes', 'dataset', 'venue',
      'architecture', 'eps', 'clean_acc', 'reported', 'autoattack_acc', 'footnote', 'unreliable',
      'threat_model'
  ]
  assert info['eps'] == '8/255' and info['threat_model'] == 'Linf'
  assert info['clean_acc'] == f"{100 * report['clean_acc']:.2f}"
  assert info['autoattack_acc'] == f"{100 * report['robust_acc']:.2f}"
  assert info['dataset'] == 'cifar10' and info['architecture'] == 'SmallCNN (width 0.125)'
  assert info['number_forward_passes'] == 1
  assert info['footnote'] == 'AutoAttack on 8 of the 24 test points (first subset).'
  assert info['link'] == info['name'] == info['venue'] == info['reported'] == ''
  # Reduced budgets are no AutoAttack 'standard' result: no entry, and the reason.
  capsys.readouterr()
  evaluate_run.evaluate_run(workdir, attacks='standard', name='short', overrides={'steps': 2},
                            **kwargs)
  assert 'no RobustBench entry: budgets of' in capsys.readouterr().out
  assert not (workdir / 'eval' / 'short.model_info.json').exists()


def test_robustbench_field_formats():
  assert leaderboard.eps_string('linf', 8 / 255) == '8/255'
  assert leaderboard.eps_string('linf', 0.03) == '0.03'
  assert leaderboard.eps_string('l2', 0.5) == '0.5'
  assert leaderboard.architecture_name({'name': 'wide_resnet', 'depth': 28,
                                        'widen_factor': 10}) == 'WideResNet-28-10'
  assert leaderboard.architecture_name({'name': 'preact_resnet18'}) == 'PreActResNet-18'
  two_norms = runner.make_plan(['linf', 'l2'], [8 / 255, 0.5], 'standard')
  assert 'one threat model' in leaderboard.not_an_entry(two_norms)
  assert 'standard' in leaderboard.not_an_entry(runner.make_plan(['l2'], [0.5], 'apgd-ce'))
  assert leaderboard.not_an_entry(runner.make_plan(['l2'], [0.5], 'standard')) is None


def test_the_compile_cache_directory_and_its_switch(tmp_path):
  assert compile_cache.cache_dir({}).endswith(os.path.join('.cache', 'generalist_jax', 'xla'))
  assert compile_cache.cache_dir({'XDG_CACHE_HOME': '/c'}) == '/c/generalist_jax/xla'
  assert compile_cache.cache_dir({compile_cache.ENV: '/x'}) == '/x'
  assert compile_cache.cache_dir({compile_cache.ENV: '0'}) is None
  # In a fresh process, even after a first compile: later compiles land on disk.
  code = ('import jax, jax.numpy as jnp\n'
          'jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)\n'
          'jax.jit(lambda x: x + 1)(jnp.ones(3))\n'
          'from generalist_jax.evaluation import compile_cache\n'
          'print(compile_cache.enable())\n'
          'jax.jit(lambda x: x * 2)(jnp.ones(3))\n')
  run = lambda env: subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True, capture_output
                                   =True, timeout=300, env=dict(os.environ, **env)).stdout.strip()
  env = {compile_cache.ENV: str(tmp_path / 'xla')}
  assert run(env) == str(tmp_path / 'xla') and any((tmp_path / 'xla').iterdir())
  assert run({compile_cache.ENV: '0'}) == 'None'
  assert run(dict(env, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'own'))) == str(tmp_path / 'own')
