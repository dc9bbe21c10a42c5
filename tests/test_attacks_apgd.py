"""APGD-CE / APGD-T / Square: budgets, monotonicity, targets, ball and box."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generalist_jax import attacks
from generalist_jax.attacks import apgd
from generalist_jax.attacks import apgd_loop
from generalist_jax.attacks import autoattack
from generalist_jax.attacks import losses
from generalist_jax.attacks import registry
from generalist_jax.attacks import square
from generalist_jax.attacks import threat

SHAPE = (4, 4, 3)
W = jax.random.normal(jax.random.PRNGKey(1), (int(np.prod(SHAPE)), 10))


def logits_fn(x):
  """A small non-linear model (saturating): plain PGD with a fixed step struggles."""
  return 3.0 * jnp.tanh(x.reshape(x.shape[0], -1) @ W)


X = jax.random.uniform(jax.random.PRNGKey(0), (32, *SHAPE))
Y = jnp.argmax(logits_fn(X), -1)  # every example correct at first
EPS = {'linf': 0.05, 'l2': 0.3, 'l1': 1.5}


def accuracy(x_adv):
  return float(jnp.mean(jnp.argmax(logits_fn(x_adv), -1) == Y))


def test_checkpoint_schedule_matches_the_paper():
  is_check, window = apgd_loop.checkpoint_schedule(100, 'linf')
  # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (fractions of 100 iterations)
  np.testing.assert_array_equal(np.flatnonzero(is_check) + 1, [22, 41, 57, 70, 80, 87, 93, 99])
  assert window[21] == 22 and window[98] == 6
  is_check, _ = apgd_loop.checkpoint_schedule(100, 'l1')
  assert np.flatnonzero(is_check).size == 25


@functools.lru_cache(maxsize=None)
def _apgd_fn(norm, steps, restarts=1, large_eps_start=False):
  return jax.jit(lambda x, y, k: apgd.apgd_result(logits_fn, x, y, k, eps=EPS[
      norm], norm=norm, loss='ce', steps=steps, restarts=restarts, large_eps_start=large_eps_start))


@pytest.mark.parametrize('norm,large', [('linf', False), ('l2', False), ('l1', True)])
def test_apgd_stays_in_ball_and_box_and_keeps_its_best_point(norm, large):
  key = jax.random.PRNGKey(3)
  res = _apgd_fn(norm, 12, 2, large)(X, Y, key)
  for point in (res.x_adv, res.x_best):
    assert bool(jnp.all(attacks.lp_norm(point - X, norm) <= EPS[norm] * (1 + 1e-5)))
    assert float(point.min()) >= 0.0 and float(point.max()) <= 1.0
  # Reported best loss is the loss at the reported best point ...
  np.testing.assert_allclose(attacks.cross_entropy(logits_fn(res.x_best), Y), res.best_loss,
                             rtol=1e-4, atol=1e-5)
  # ... fooled flags are true exactly where the returned point is misclassified.
  np.testing.assert_array_equal(res.fooled, jnp.argmax(logits_fn(res.x_adv), -1) != Y)


def test_apgd_best_loss_never_below_its_start_and_restarts_never_help_the_model():
  key = jax.random.PRNGKey(4)
  one = _apgd_fn('linf', 12)(X, Y, key)
  start = threat.linf_project(X, threat.linf_init(jax.random.fold_in(key, 0), X, EPS['linf']),
                              EPS['linf'])
  assert bool(jnp.all(one.best_loss >= attacks.cross_entropy(logits_fn(X + start), Y) - 1e-6))
  two = _apgd_fn('linf', 12, 2)(X, Y, key)  # restart 0 is the same run
  assert bool(jnp.all(two.fooled >= one.fooled))
  assert bool(jnp.all(two.best_loss >= one.best_loss - 1e-6))


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_apgd_beats_or_matches_pgd_of_the_same_budget(norm):
  steps = 20
  x_apgd = _apgd_fn(norm, steps)(X, Y, jax.random.PRNGKey(2)).x_adv
  x_pgd = jax.jit(lambda x, y, k: attacks.pgd(logits_fn, x, y, k, eps=EPS[norm], step_size=EPS[
      norm] / 4, steps=steps, norm=norm, unroll=1))(X, Y, jax.random.PRNGKey(2))
  assert accuracy(x_apgd) <= accuracy(x_pgd)
  assert accuracy(x_apgd) < 1.0


def test_target_classes_are_the_next_highest_scores():
  logits = jnp.array([[0.0, 5.0, 3.0, 4.0, 1.0], [9.0, 1.0, 2.0, 3.0, 4.0]])
  np.testing.assert_array_equal(apgd.target_classes(logits, 3), [[3, 4], [2, 3], [4, 2]])


def test_apgd_t_moves_towards_its_target_and_more_targets_never_help_the_model():
  run = lambda n: jax.jit(lambda x, y, k: apgd.apgd_targeted_result(logits_fn, x, y, k, eps=EPS[
      'linf'], steps=10, n_targets=n))(X, Y, jax.random.PRNGKey(5))
  one, three = run(1), run(3)
  target = apgd.target_classes(logits_fn(X), 1)[0]
  gain = lambda x_: losses.targeted_dlr(logits_fn(x_), Y, target)
  assert bool(jnp.all(gain(one.x_best) >= gain(X) - 1e-6))
  fooled = np.asarray(one.fooled)
  assert fooled.any()
  predicted = np.asarray(jnp.argmax(logits_fn(one.x_adv), -1))
  assert np.mean(predicted[fooled] == np.asarray(target)[fooled]) > 0.5
  assert bool(jnp.all(three.fooled >= one.fooled))
  with pytest.raises(ValueError, match='n_targets'):
    apgd.apgd_targeted_result(logits_fn, X, Y, jax.random.PRNGKey(0), eps=0.1, steps=2,
                              n_targets=10)


def test_square_more_queries_never_weaker_and_stays_in_ball_and_box():
  run = lambda n: jax.jit(lambda x, y, k: square.square(logits_fn, x, y, k, norm='linf', eps=EPS[
      'linf'], n_queries=n))(X, Y, jax.random.PRNGKey(6))
  few, many = run(20), run(60)
  for x_adv in (few, many):
    assert float(jnp.abs(x_adv - X).max()) <= EPS['linf'] + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  margin_few = losses.margin(logits_fn(few), Y)
  margin_many = losses.margin(logits_fn(many), Y)
  assert bool(jnp.all(margin_many >= margin_few - 1e-6))  # same first 20 queries, then better
  assert accuracy(many) <= accuracy(few) < 1.0


def test_standard_version_is_complete_for_every_norm():
  for norm in ('linf', 'l2', 'l1'):
    assert autoattack.version_components('standard',
                                         norm) == ('apgd-ce', 'apgd-t', 'fab-t', 'square')
    assert autoattack.missing_components('standard', norm) == ()
  assert autoattack.version_components('fast', 'l1') == ('apgd-ce', 'apgd-t')
  with pytest.raises(ValueError, match='not available'):
    registry.build('square', norm='l0', eps=12.0)
