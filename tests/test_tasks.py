"""Baseline losses and multi-norm attacks against small hand computations."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from generalist_jax.attacks import threat
from generalist_jax import config as config_lib
from generalist_jax import data as data_lib
from generalist_jax.attacks import training as training_attacks
from generalist_jax.config import validation
from generalist_jax.method import step as step_lib
from generalist_jax.method import tasks
from tests.tiny_config import tiny_config

CLEAN = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], np.float32)
ADV = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 2.0]], np.float32)
Y = np.array([0, 1])


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def hand_ce(z, y):
  p = softmax(z)
  return np.mean([-math.log(p[b, y[b]]) for b in range(len(y))])


def hand_kl(p, q):  # per example sum_c p log(p / q)
  return np.array([sum(pc * math.log(pc / qc) for pc, qc in zip(pb, qb)) for pb, qb in zip(p, q)])


def test_trades_loss_by_hand():
  expected = hand_ce(CLEAN, Y) + 6.0 * hand_kl(softmax(CLEAN), softmax(ADV)).mean()
  got = tasks.trades_loss((jnp.asarray(CLEAN), jnp.asarray(ADV)), jnp.asarray(Y), beta=6.0)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mart_loss_by_hand():
  pa, pn = softmax(ADV), softmax(CLEAN)
  # Example 0 (y=0): adv ranks class 1 first (wrong) -> y' = 1.
  # Example 1 (y=1): adv ranks class 2 first (wrong) -> y' = 2.
  bce = hand_ce(ADV, Y) - np.mean(
      [math.log(1.0001 - pa[0, 1] + 1e-12),
       math.log(1.0001 - pa[1, 2] + 1e-12)])
  weights = np.array([1.0000001 - pn[0, 0], 1.0000001 - pn[1, 1]])
  expected = bce + 6.0 * np.mean(hand_kl(pn, pa) * weights)
  got = tasks.mart_loss((jnp.asarray(CLEAN), jnp.asarray(ADV)), jnp.asarray(Y), beta=6.0)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mart_uses_second_class_when_the_top_one_is_the_label():
  adv = np.array([[3.0, 1.0, 0.0]], np.float32)  # top = label 0 -> y' = 1
  pa = softmax(adv)
  expected_bce = hand_ce(adv, [0]) - math.log(1.0001 - pa[0, 1] + 1e-12)
  got = tasks.mart_loss((jnp.asarray(adv), jnp.asarray(adv)), jnp.asarray([0]), beta=0.0)
  np.testing.assert_allclose(got, expected_bce, rtol=1e-5)


def test_avg_loss_is_the_mean_of_per_norm_losses():
  got = tasks.mean_over_batches_loss((jnp.asarray(CLEAN), jnp.asarray(ADV)), jnp.asarray(Y))
  np.testing.assert_allclose(got, (hand_ce(CLEAN, Y) + hand_ce(ADV, Y)) / 2, rtol=1e-5)


def identity_logits(x):  # "model": the first 3 pixels are the logits
  return x.reshape(x.shape[0], -1)[:, :3]


def test_max_picks_the_highest_loss_norm_per_example():
  # Candidate 0 hurts example 0 more, candidate 1 hurts example 1 more.
  c0 = np.zeros((2, 1, 1, 3), np.float32)
  c1 = np.zeros_like(c0)
  c0[0, 0, 0] = [0.0, 2.0, 0.0]
  c1[0, 0, 0] = [1.0, 0.0, 0.0]
  c0[1, 0, 0] = [0.0, 1.0, 0.0]
  c1[1, 0, 0] = [3.0, 0.0, 0.0]
  x, losses = training_attacks.worst_per_example(identity_logits, jnp.stack([c0, c1]),
                                                 jnp.asarray(Y))
  np.testing.assert_array_equal(x[0], c0[0])
  np.testing.assert_array_equal(x[1], c1[1])
  np.testing.assert_allclose(losses[0, 0], -math.log(softmax(np.array([[0., 2., 0.]]))[0, 0]),
                             rtol=1e-5)


def linear_model(w):
  return lambda x: x.reshape(x.shape[0], -1) @ w


def test_msd_one_iteration_is_the_best_of_the_three_steepest_steps():
  rng = np.random.default_rng(0)
  d = 12
  w = jnp.asarray(rng.normal(size=(d, 3)), jnp.float32)
  x = jnp.full((4, 2, 2, 3), 0.5, jnp.float32)  # the box never binds
  y = jnp.asarray([0, 1, 2, 0])
  norms, eps, steps_ = ('l1', 'l2', 'linf'), (0.2, 0.1, 0.02), (0.2, 0.1, 0.02)
  out = training_attacks.msd(linear_model(w), x, y, None, norms=norms, eps=eps, step_sizes=steps_,
                             steps=1)
  # By hand: d CE / dx = W (softmax(xW) - onehot(y)); one step of each rule from 0.
  xf = np.asarray(x).reshape(4, -1)
  p = softmax(xf @ np.asarray(w))
  g = (p - np.eye(3)[np.asarray(y)]) @ np.asarray(w).T
  linf = 0.02 * np.sign(g)
  l2 = 0.1 * g / np.linalg.norm(g, axis=1, keepdims=True)
  l1 = np.asarray(threat.l1_topk_step(jnp.zeros((4, d)), jnp.asarray(g), 0.2))
  cands = [l1, l2, linf]
  ce = lambda delta: -np.log(softmax((xf + delta) @ np.asarray(w))[np.arange(4), np.asarray(y)])
  losses = np.stack([ce(c) for c in cands])
  best = np.stack(cands)[losses.argmax(0), np.arange(4)]
  np.testing.assert_allclose(np.asarray(out).reshape(4, -1), xf + best, atol=1e-6)
  # More iterations never end at a lower loss than the first (best kept).
  out3 = training_attacks.msd(linear_model(w), x, y, None, norms=norms, eps=eps, step_sizes=steps_,
                              steps=3)
  assert np.all(ce(np.asarray(out3).reshape(4, -1) - xf) >= losses.max(0) - 1e-6)


def test_eat_runs_only_the_sampled_norm_and_is_deterministic_in_the_key():
  fake = [lambda f, x, y, k: x + 1.0, lambda f, x, y, k: x + 2.0]
  x, y = jnp.zeros((2, 1)), jnp.zeros((2,), jnp.int32)
  seen = set()
  for i in range(16):
    key = jax.random.PRNGKey(i)
    out = training_attacks.one_sampled_norm(fake, None, x, y, key)
    idx = int(training_attacks.sampled_norm(key, 2))
    np.testing.assert_array_equal(out, x + 1.0 + idx)
    np.testing.assert_array_equal(out, training_attacks.one_sampled_norm(fake, None, x, y, key))
    seen.add(idx)
  assert seen == {0, 1}


def test_trades_attack_raises_the_kl_and_stays_in_the_ball():
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)
  x = jnp.asarray(rng.uniform(size=(4, 2, 2, 3)), jnp.float32)
  f = linear_model(w)
  x_adv = training_attacks.trades_attack(f, x, None, jax.random.PRNGKey(0), eps=0.05,
                                         step_size=0.02, steps=5)
  assert float(jnp.abs(x_adv - x).max()) <= 0.05 + 1e-6
  assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
  assert float(training_attacks.kl_divergence(f(x), f(x_adv)).mean()) > 1e-3


@pytest.mark.parametrize('new', [('trades', 'avg', 'eat'), ('mart', 'max', 'msd')])
def test_new_tasks_train_as_three_experts(tiny_npz, new):
  """One jitted step of a 3-expert run of new tasks: finite losses, every expert
  moved, mixing weights 1/3 each."""
  c = tiny_config(tiny_npz)
  opt = c.experts.robust.optimizer
  small = config_lib.norm_attacks(steps=1)
  c.experts = ml_collections.ConfigDict({
      t: config_lib.expert(t, opt, (1 / 3,) * len(c.meta.mix_epochs),
                           config_lib.pgd_attack(steps=1), norms=('l1', 'linf'),
                           per_norm=small) for t in new
  })
  validation.validate_config(c)
  dataset = data_lib.load_dataset(c.data)
  setup = step_lib.make_setup(c, dataset.info, data_lib.steps_per_epoch(dataset, c.batch_size))
  state0 = step_lib.create_train_state(setup, dataset.info.image_shape, seed=0)
  batch = next(data_lib.train_batches(dataset, c.batch_size, seed=0, augment='none'))
  state1, metrics = jax.jit(lambda s, b: step_lib.train_step(setup, s, b))(state0, batch)
  for t in new:
    assert np.isfinite(float(metrics[f'train/{t}/loss'])), t
    np.testing.assert_allclose(metrics[f'schedule/{t}/mix_weight'], 1 / 3, rtol=1e-5)
  first = lambda e: np.asarray(jax.tree.leaves(e['params'])[0])
  for before, after in zip(state0.experts, state1.experts):
    assert not np.allclose(first(before), first(after))


@pytest.mark.parametrize('change, field', [
    (lambda e: setattr(e, 'norms', ('l3',)), 'experts.a.norms'),
    (lambda e: setattr(e, 'norms', ()), 'experts.a.norms'),
    (lambda e: setattr(e.norm_attacks.l2, 'steps', 3), 'experts.a.norm_attacks'),
    (lambda e: setattr(e.norm_attacks.l2, 'norm', 'l1'), 'experts.a.norm_attacks.l2.norm'),
])
def test_multi_norm_config_errors_name_the_field(change, field):
  c = config_lib.base_config()
  c.experts = ml_collections.ConfigDict(
      dict(a=config_lib.expert('msd', config_lib.sgd(), (1.0,) * 4, norms=('l2', 'linf'))))
  c.meta.sync.kind = 'never'
  c.eval.best_metric = 'a/robust_acc'
  validation.validate_config(c)
  change(c.experts.a)
  with pytest.raises(config_lib.ConfigError, match=field.replace('.', r'\.')):
    validation.validate_config(c)


def test_trades_beta_must_be_non_negative():
  c = config_lib.base_config()
  c.experts = ml_collections.ConfigDict(
      dict(a=config_lib.expert('trades', config_lib.sgd(), (1.0,) * 4, beta=-1.0)))
  c.meta.sync.kind = 'never'
  c.eval.best_metric = 'a/robust_acc'
  with pytest.raises(config_lib.ConfigError, match=r'experts\.a\.beta'):
    validation.validate_config(c)
