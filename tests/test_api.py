"""The public AutoAttack API: two lines on any JAX model, AutoAttack's spellings."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import generalist_jax
from generalist_jax import AutoAttack

SHAPE = (4, 4, 3)
W1 = jax.random.normal(jax.random.PRNGKey(0), (int(np.prod(SHAPE)), 32)) * 2.0
W2 = jax.random.normal(jax.random.PRNGKey(1), (32, 10))
PARAMS = {'w1': W1, 'w2': W2}


def apply(params, x):
  return jnp.tanh(x.reshape(x.shape[0], -1) @ params['w1']) @ params['w2']


logits_fn = lambda x: apply(PARAMS, x)
X = np.asarray(jax.random.uniform(jax.random.PRNGKey(2), (48, *SHAPE)))
Y = np.array(jnp.argmax(logits_fn(X), -1))
Y[:6] = (Y[:6] + 1) % 10  # 42 of 48 correct


def test_two_lines_on_a_plain_function():
  adversary = AutoAttack(logits_fn, norm='Linf', eps=0.03, version='custom',
                         attacks_to_run=['apgd-ce', 'square'], seed=0)
  report = adversary.run(X, Y, batch_size=16)
  assert report.clean_acc == pytest.approx(42 / 48)
  assert report.robust_acc <= report.robust_acc_after['apgd-ce'] <= report.clean_acc
  assert set(report.flags) == {'apgd-ce', 'square'} and report.n_ex == 48
  np.testing.assert_array_equal(
      report.robust, report.clean & np.all([f != 0 for f in report.flags.values()], axis=0))
  assert report.to_dict()['robust_acc'] == report.robust_acc


def test_run_standard_evaluation_returns_x_adv_as_the_official_one():
  adversary = AutoAttack(apply, params=PARAMS, norm='L2', eps=0.3, version='custom',
                         attacks_to_run=['apgd-ce', 'apgd-t'])
  x_adv = adversary.run_standard_evaluation(X, Y, bs=16)
  assert x_adv.shape == X.shape
  assert float(jnp.max(jnp.linalg.norm((x_adv - X).reshape(48, -1), axis=1))) <= 0.3 + 1e-5
  accuracy = float(np.mean(np.argmax(logits_fn(x_adv), -1) == Y))
  assert accuracy == pytest.approx(adversary.run(X, Y, batch_size=16).robust_acc)
  _, labels = adversary.run_standard_evaluation(X, Y, bs=16, return_labels=True)
  np.testing.assert_array_equal(labels, np.argmax(logits_fn(x_adv), -1))


def test_the_standard_version_is_autoattacks_and_l1_is_complete():
  for norm in ('Linf', 'L2', 'L1'):
    adversary = AutoAttack(logits_fn, norm=norm, eps={'Linf': 8 / 255, 'L2': 0.5, 'L1': 12}[norm])
    assert [s.name for s in adversary.plan] == ['apgd-ce', 'apgd-t', 'fab-t', 'square']


def test_wrong_spellings_and_units_are_refused_with_the_fix():
  with pytest.raises(ValueError, match="'Linf', 'L2', 'L1'"):
    AutoAttack(logits_fn, norm='inf')
  with pytest.raises(ValueError, match='custom'):
    AutoAttack(logits_fn, attacks_to_run=['apgd-ce'])
  with pytest.raises(ValueError, match='pixel units'):
    AutoAttack(logits_fn, norm='Linf', eps=8, version='custom', attacks_to_run=['fgsm']).run(X, Y)


def test_rand_averages_gradients_over_draws_of_a_randomised_model():
  noisy = lambda x, key: logits_fn(x) + 0.1 * jax.random.normal(key, (x.shape[0], 10))
  adversary = AutoAttack(noisy, norm='Linf', eps=0.03, version='rand', seed=1)
  assert [(s.name, dict(s.overrides)['eot_iter']) for s in adversary.plan] == [('apgd-ce', 20),
                                                                               ('apgd-dlr', 20)]
  report = adversary.run(X, Y, batch_size=48)
  assert report.robust_acc < report.clean_acc


def test_the_package_exports_the_api_lazily():
  assert generalist_jax.AutoAttack is AutoAttack


def test_plus_is_autoattacks_list_with_its_restarts():
  adversary = AutoAttack(logits_fn, norm='L2', eps=0.5, version='plus')
  plan = [(s.name, s.settings()) for s in adversary.plan]
  assert [name for name, _ in plan] == ['apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t']
  settings = dict(plan)
  assert settings['apgd-ce']['restarts'] == settings['apgd-dlr']['restarts'] == 5
  assert settings['fab']['restarts'] == 5 and settings['fab-t']['restarts'] == 1
  assert settings['apgd-t']['n_targets'] == settings['fab-t']['n_targets'] == 9
  assert settings['square']['n_queries'] == 5000
