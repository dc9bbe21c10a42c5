"""PGD: stays in the ball and the box, eps=0 is clean, more restarts never help."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generalist_jax import attacks
from generalist_jax.attacks import losses


def linear_logits_fn(key, shape, num_classes=10):
  w = jax.random.normal(key, (int(np.prod(shape)), num_classes))
  return lambda x: x.reshape(x.shape[0], -1) @ w


@pytest.mark.parametrize('seed', range(4))
def test_pgd_stays_in_linf_ball_and_box(seed):
  rng = np.random.default_rng(seed)
  eps = float(rng.uniform(0.0, 0.3))
  shape = tuple(int(s) for s in rng.integers(2, 6, size=3))
  x = jnp.asarray(rng.uniform(0, 1, (5, *shape)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 5))
  logits_fn = linear_logits_fn(jax.random.PRNGKey(seed), shape)
  x_adv = attacks.pgd(logits_fn, x, y, jax.random.PRNGKey(1), eps=eps, step_size=eps / 3, steps=5,
                      restarts=2)
  assert x_adv.shape == x.shape
  assert float(jnp.abs(x_adv - x).max()) <= eps + 1e-6
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_eps_zero_gives_clean_inputs():
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 3, 3, 2))
  y = jnp.arange(4)
  logits_fn = linear_logits_fn(jax.random.PRNGKey(2), (3, 3, 2))
  x_adv = attacks.pgd(logits_fn, x, y, jax.random.PRNGKey(3), eps=0.0, step_size=0.1, steps=3)
  np.testing.assert_array_equal(x_adv, x)


def test_pgd_lowers_accuracy_and_raises_loss():
  key = jax.random.PRNGKey(0)
  x = jax.random.uniform(key, (64, 4, 4, 3))
  logits_fn = linear_logits_fn(jax.random.PRNGKey(1), (4, 4, 3))
  y = jnp.argmax(logits_fn(x), -1)  # all correct at first
  x_adv = attacks.pgd(logits_fn, x, y, key, eps=0.1, step_size=0.025, steps=10)
  assert float(jnp.mean(jnp.argmax(logits_fn(x_adv), -1) == y)) < 0.5
  assert float(attacks.cross_entropy(logits_fn(x_adv), y).mean()) > float(
      attacks.cross_entropy(logits_fn(x), y).mean())


def test_more_restarts_never_lower_the_loss():
  key = jax.random.PRNGKey(5)
  x = jax.random.uniform(key, (32, 4, 4, 3))
  y = jax.random.randint(key, (32,), 0, 10)
  logits_fn = linear_logits_fn(jax.random.PRNGKey(6), (4, 4, 3))
  kw = dict(eps=0.05, step_size=0.01, steps=3)
  one = attacks.cross_entropy(logits_fn(attacks.pgd(logits_fn, x, y, key, restarts=1, **kw)), y)
  three = attacks.cross_entropy(logits_fn(attacks.pgd(logits_fn, x, y, key, restarts=3, **kw)), y)
  assert bool(jnp.all(three >= one - 1e-6))


def test_margin_loss_by_hand():
  logits = jnp.array([[1.0, 3.0, 2.0]])
  np.testing.assert_allclose(losses.margin(logits, jnp.array([0])), 2.0)
  np.testing.assert_allclose(losses.margin(logits, jnp.array([1])), -1.0)


def test_rolled_and_unrolled_loops_agree():
  x = jax.random.uniform(jax.random.PRNGKey(0), (8, 4, 4, 3))
  y = jnp.arange(8) % 10
  logits_fn = linear_logits_fn(jax.random.PRNGKey(1), (4, 4, 3))
  kw = dict(eps=0.03, step_size=0.01, steps=4)
  rolled = attacks.pgd(logits_fn, x, y, jax.random.PRNGKey(2), unroll=1, **kw)
  unrolled = attacks.pgd(logits_fn, x, y, jax.random.PRNGKey(2), unroll=True, **kw)
  np.testing.assert_allclose(rolled, unrolled, atol=1e-6)


def mlp_logits_fn(key, shape, hidden=32, num_classes=10):
  k1, k2 = jax.random.split(key)
  w1 = jax.random.normal(k1, (int(np.prod(shape)), hidden)) * 2.0
  w2 = jax.random.normal(k2, (hidden, num_classes))
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


@pytest.mark.parametrize('norm,eps', [('linf', 0.03), ('l2', 0.3)])
def test_a_point_is_robust_only_if_no_restart_fools_it(norm, eps):
  """Fault kind: restarts kept the highest-loss one even when a lower-loss restart
  misclassified (CE can peak without flipping the label). Restarts 0..R-2 of an
  R-restart run are those of the (R-1)-restart run, so an example fooled with
  R - 1 restarts must stay fooled with R."""
  shape = (4, 4, 3)
  logits_fn = mlp_logits_fn(jax.random.PRNGKey(0), shape)
  x = jax.random.uniform(jax.random.PRNGKey(1), (400, *shape))
  y = jnp.argmax(logits_fn(x), -1)
  fooled = []
  for restarts in range(1, 9):
    x_adv = jax.jit(lambda k, r=restarts: attacks.pgd(logits_fn, x, y, k, eps=eps, step_size=eps /
                                                      4, steps=2, norm=norm, restarts=r))(
                                                          jax.random.PRNGKey(2))
    fooled.append(np.asarray(jnp.argmax(logits_fn(x_adv), -1) != y))
  for fewer, more in zip(fooled, fooled[1:]):
    assert not np.any(fewer & ~more)  # never un-fooled by another restart
  assert fooled[-1].sum() > fooled[0].sum()  # and restarts do find more
