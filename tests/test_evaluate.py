"""Composite evaluation: flags, worst case, union over norms, resume, and the CLI end to end."""
import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from generalist_jax import config as config_lib
from generalist_jax.attacks import autoattack as aa
from generalist_jax.evaluation import reports
from generalist_jax.evaluation import runner
from generalist_jax.evaluation import summary as summary_lib
from generalist_jax.run import evaluate_run
from generalist_jax.run import loop
from tests.tiny_config import tiny_config


class Linear(nn.Module):

  @nn.compact
  def __call__(self, x, train):
    del train
    return 3.0 * nn.tanh(nn.Dense(10)(x.reshape(x.shape[0], -1)))


MODEL = Linear()
APPLY = lambda variables, x: MODEL.apply({'params': variables['params']}, x, False)
VARIABLES = {
    'params': MODEL.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 3)), False)['params'],
    'batch_stats': {}
}
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
_clean_logits = MODEL.apply({'params': VARIABLES['params']}, IMAGES / np.float32(255), False)
# 16 of 20 labels are the model's prediction (correct), 4 are wrong.
LABELS = np.asarray(np.argmax(_clean_logits, -1)).astype(np.int32)
LABELS[[3, 7, 11, 19]] = (LABELS[[3, 7, 11, 19]] + 1) % 10
PLAN = (runner.make_plan(['linf'], [0.03], 'apgd-ce,pgd,square', {'steps': 6}) +
        runner.make_plan(['l2'], [0.3], 'apgd-ce,pgd', {'steps': 6}))


def run(**kwargs):
  return runner.run_evaluation(APPLY, VARIABLES, IMAGES, LABELS, PLAN, batch_size=8, seed=1,
                               progress=False, **kwargs)


@pytest.fixture(scope='module')
def full_state():
  return run()


def test_worst_case_is_the_and_of_the_per_attack_flags(full_state):
  state = full_state
  clean = state['clean'] == 1
  assert clean.sum() == 16
  summary, worst, union = summary_lib.summarize(state, PLAN)
  for norm in ('linf', 'l2'):
    cols = [state[s.column] for s in PLAN if s.norm == norm]
    expected = clean.copy()
    for col in cols:
      # each attack ran exactly on the examples all earlier ones of its norm missed
      np.testing.assert_array_equal(col != aa.SKIPPED, expected)
      expected &= col != aa.FOOLED
    np.testing.assert_array_equal(worst[norm], expected)
    assert summary['worst_case'][norm] == pytest.approx(expected.mean())
  np.testing.assert_array_equal(union, worst['linf'] & worst['l2'])
  assert summary['robust_acc'] == pytest.approx(union.mean())
  assert union.mean() < clean.mean()  # the attacks do break something here
  assert not np.any(state['outside_ball'])


def test_eps_zero_gives_clean_accuracy_for_the_whole_composite():
  plan = runner.make_plan(['linf'], [0.0], 'standard', {'steps': 2, 'n_targets': 2})
  state = runner.run_evaluation(APPLY, VARIABLES, IMAGES, LABELS, plan, batch_size=8, seed=1,
                                progress=False)
  summary, worst, _ = summary_lib.summarize(state, plan)
  np.testing.assert_array_equal(worst['linf'], state['clean'] == 1)
  assert summary['robust_acc'] == summary['clean_acc'] == 0.8


def test_worst_case_refuses_pending_flags():
  with pytest.raises(ValueError, match='before every attack finished'):
    aa.worst_case(np.ones(2, bool), [np.array([1, aa.PENDING], np.int8)])


@pytest.mark.parametrize('stop_after', [1, 4])
def test_an_interrupted_evaluation_resumes_to_the_same_flags(full_state, stop_after):
  saved = {}
  partial = run(save=lambda s: saved.update(state={k: v.copy() for k, v in s.items()}),
                stop_after_batches=stop_after)
  assert not summary_lib.is_complete(partial, PLAN)
  resumed = run(state=saved['state'])
  for key, value in full_state.items():
    np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_state_file_round_trip_and_settings_check(tmp_path, full_state):
  path = tmp_path / 's.state.npz'
  reports.save_state(path, full_state, {'seed': 1})
  loaded = reports.load_state(path, {'seed': 1})
  for key, value in full_state.items():
    np.testing.assert_array_equal(loaded[key], value)
  with pytest.raises(ValueError, match='other settings'):
    reports.load_state(path, {'seed': 2})


def test_evaluate_run_end_to_end_on_a_tiny_run(tmp_path, tiny_npz):
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(tiny_config(tiny_npz), str(workdir))
  kwargs = dict(checkpoint='last', learner='global', attacks='standard', norms=['linf'],
                eps=[config_lib.parse_eps('1/255')], n_ex=12, batch_size=8,
                overrides={'steps': 3, 'n_targets': 2}, seed=3, name='aa', progress=False)
  assert evaluate_run.evaluate_run(workdir, stop_after_batches=2, **kwargs) is None
  assert (workdir / 'eval' / 'aa.state.npz').exists()
  report = evaluate_run.evaluate_run(workdir, **kwargs)  # resumes
  on_disk = json.loads((workdir / 'eval' / 'aa.json').read_text())
  assert on_disk['robust_acc'] == report['robust_acc'] <= report['clean_acc']
  assert on_disk['seed'] == 3 and on_disk['n_ex'] == 12 and on_disk['versions']['jax']
  assert on_disk['missing_components'] == []
  assert set(on_disk['attacks']) == {'linf/apgd-ce', 'linf/apgd-t', 'linf/fab-t', 'linf/square'}
  assert on_disk['sanity']['output_changes_between_identical_calls'] == 0.0
  rows = (workdir / 'eval' / 'aa.csv').read_text().strip().split('\n')
  assert rows[0].startswith('index,label,clean,linf/apgd-ce') and len(rows) == 13
  worst = np.array([int(r.split(',')[-1]) for r in rows[1:]])
  assert worst.mean() == pytest.approx(report['robust_acc'])
  md = (workdir / 'eval' / 'aa.md').read_text()
  assert '| clean | linf/apgd-ce | linf/apgd-t | linf/fab-t | linf/square | worst linf |' in md
  with pytest.raises(ValueError, match='other settings'):
    evaluate_run.evaluate_run(workdir, **dict(kwargs, seed=4))
  # Fault kind: eps typed in 0-255 units is refused unless asked for.
  with pytest.raises(ValueError, match='pixel units.*allow_large_eps'):
    evaluate_run.evaluate_run(workdir, **dict(kwargs, eps=[8.0], name='big'))


class MLP(nn.Module):
  """Non-linear enough that an attack's random start changes its outcome."""

  @nn.compact
  def __call__(self, x, train):
    del train
    return 3.0 * nn.Dense(10)(nn.tanh(nn.Dense(32)(x.reshape(x.shape[0], -1) * 4.0)))


MLP_MODEL = MLP()
MLP_PARAMS = MLP_MODEL.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 3)), False)
MLP_APPLY = lambda params, x: MLP_MODEL.apply(params, x, False)
MANY = np.random.default_rng(0).integers(0, 256, (160, 4, 4, 3), dtype=np.uint8)
MANY_LABELS = np.asarray(np.argmax(MLP_APPLY(MLP_PARAMS, MANY / np.float32(255)), -1), np.int32)


def _evaluate(plan, batch_size, idx=None):
  idx = np.arange(len(MANY)) if idx is None else idx
  return runner.run_evaluation(MLP_APPLY, MLP_PARAMS, MANY[idx], MANY_LABELS[idx], plan,
                               batch_size=batch_size, seed=7, example_ids=idx, progress=False)


def test_a_list_never_scores_above_any_of_its_attacks_run_alone():
  """Fault kind: an attack's randomness depended on its place in the list and on
  which batch an example landed in (on the old code this plan had 7 examples robust
  in the list yet fooled by one of its attacks alone). Keys now come from (seed,
  attack, norm, example)."""
  plan = runner.make_plan(['l2'], [0.2], 'pgd,apgd-ce', {'steps': 2})
  listed = _evaluate(plan, batch_size=16)
  worst = summary_lib.summarize(listed, plan)[1]['l2']
  assert 0.1 < worst.mean() < 0.9
  for spec in plan:
    alone = _evaluate([spec], batch_size=24)
    robust_alone = summary_lib.summarize(alone, [spec])[1]['l2']
    assert not np.any(worst & ~robust_alone), spec.name  # never robust where alone fools
    ran = listed[spec.column] != aa.SKIPPED  # where it ran in the list: the same result
    np.testing.assert_array_equal(listed[spec.column][ran], alone[spec.column][ran])


def test_an_examples_result_does_not_depend_on_its_batch_or_the_subset():
  plan = runner.make_plan(['linf'], [0.04], 'square,pgd', {'steps': 2})
  everything = _evaluate(plan, batch_size=32)
  subset = np.array([2, 5, 6, 13, 17, 40, 41, 99, 150])
  part = _evaluate(plan, batch_size=2, idx=subset)
  for spec in plan:
    np.testing.assert_array_equal(part[spec.column], everything[spec.column][subset])


def test_n_ex_means_test_examples_and_the_files_say_how_many(tmp_path):
  """Fault kind: --n_ex was silently capped at the run's training-time test subset,
  and the files were named after the request."""
  from tests.conftest import write_tiny_npz
  npz = write_tiny_npz(tmp_path / 'd.npz', n_test=40)
  config = tiny_config(npz)
  config.data.test_size = 16  # what the run tested on while training
  config.eval.final_test = False
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(config, str(workdir))
  kwargs = dict(checkpoint='last', attacks='pgd', norms=['linf'], eps=[0.01], batch_size=8,
                overrides={'steps': 1}, progress=False)
  report = evaluate_run.evaluate_run(workdir, n_ex=30, **kwargs)
  assert report['n_ex'] == 30 and report['test_split_size'] == 40
  assert report['name'].endswith('_n30') and (workdir / 'eval' / f"{report['name']}.csv").exists()
  capped = evaluate_run.evaluate_run(workdir, n_ex=100, **kwargs)
  assert capped['n_ex'] == 40 and capped['n_ex_requested'] == 100
  assert capped['name'].endswith('_n40')
  assert '40 of the 40 TEST examples' in (workdir / 'eval' / f"{capped['name']}.md").read_text()
