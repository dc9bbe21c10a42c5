"""Threat models: exact projections onto ball ∩ box, steps, and PGD/FGSM/MIM in every norm."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from generalist_jax import attacks
from generalist_jax.attacks import search
from generalist_jax.attacks import threat

NORMS = ('linf', 'l2', 'l1')


def linear_logits_fn(key, shape, num_classes=10):
  w = jax.random.normal(key, (int(np.prod(shape)), num_classes))
  return lambda x: x.reshape(x.shape[0], -1) @ w


# --- references, float64 numpy, by bisection on the Lagrange multiplier ------


def _bisect(fn_decreasing, target, lo, hi, iters=200):
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    if fn_decreasing(mid) > target:
      lo = mid
    else:
      hi = mid
  return hi


def reference_l1_projection(x, v, eps):
  lo, hi = -x, 1.0 - x
  d_of = lambda tau: np.clip(np.sign(v) * np.maximum(np.abs(v) - tau, 0.0), lo, hi)
  if np.abs(d_of(0.0)).sum() <= eps:
    return d_of(0.0)
  tau = _bisect(lambda t: np.abs(d_of(t)).sum(), eps, 0.0, np.abs(v).max())
  return d_of(tau)


def reference_l2_projection(x, v, eps):
  lo, hi = -x, 1.0 - x
  d_of = lambda lam: np.clip(v / (1.0 + lam), lo, hi)
  if np.linalg.norm(d_of(0.0)) <= eps:
    return d_of(0.0)
  lam = _bisect(lambda l: np.linalg.norm(d_of(l)), eps, 0.0, 1e6)
  return d_of(lam)


def random_problem(rng, n_ex=6, shape=(3, 4, 2), scale=None):
  x = rng.uniform(0, 1, (n_ex, *shape))
  x[:, 0, 0, 0] = 0.0  # coordinates already on the box faces
  x[:, 0, 0, 1] = 1.0
  v = rng.normal(0, scale or rng.uniform(0.05, 1.0), (n_ex, *shape))
  return x.astype(np.float32), v.astype(np.float32)


@pytest.mark.parametrize('norm,reference', [('l1', reference_l1_projection),
                                            ('l2', reference_l2_projection)])
@pytest.mark.parametrize('seed', range(3))
def test_projection_matches_bruteforce_reference(norm, reference, seed):
  rng = np.random.default_rng(seed)
  x, v = random_problem(rng)
  eps = float(rng.uniform(0.05, 2.0)) if norm == 'l1' else float(rng.uniform(0.05, 1.0))
  got = np.asarray(jax.jit(attacks.NORMS[norm].project)(jnp.asarray(x), jnp.asarray(v), eps))
  for i in range(len(x)):
    want = reference(x[i].astype(np.float64), v[i].astype(np.float64), eps)
    np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_l1_projection_matches_scipy_qp():
  """An independent solver: SLSQP on min ||d - v||^2, ||d||_1 <= eps, box (split d = p - m)."""
  rng = np.random.default_rng(7)
  x, v = random_problem(rng, n_ex=2, shape=(2, 2, 2), scale=0.6)
  eps = 0.7
  got = np.asarray(threat.l1_project(jnp.asarray(x), jnp.asarray(v), eps))
  for i in range(2):
    xi, vi = x[i].ravel().astype(np.float64), v[i].ravel().astype(np.float64)
    n = xi.size
    objective = lambda z: np.sum((z[:n] - z[n:] - vi)**2)
    bounds = [(0, 1 - a) for a in xi] + [(0, a) for a in xi]
    constraint = {'type': 'ineq', 'fun': lambda z: eps - z.sum()}
    res = scipy.optimize.minimize(objective, np.zeros(2 * n), bounds=bounds,
                                  constraints=[constraint], method='SLSQP',
                                  options={'ftol': 1e-12, 'maxiter': 500})
    np.testing.assert_allclose(got[i].ravel(), res.x[:n] - res.x[n:], atol=1e-4)


@pytest.mark.parametrize('norm', NORMS)
def test_projection_is_idempotent_and_feasible(norm):
  rng = np.random.default_rng(1)
  x, v = map(jnp.asarray, random_problem(rng, scale=0.5))
  eps = {'linf': 0.1, 'l2': 0.5, 'l1': 2.0}[norm]
  project = attacks.NORMS[norm].project
  once = project(x, v, eps)
  np.testing.assert_allclose(project(x, once, eps), once, atol=1e-6)
  assert bool(jnp.all(attacks.lp_norm(once, norm) <= eps * (1 + 1e-6)))
  assert float((x + once).min()) >= 0.0 and float((x + once).max()) <= 1.0
  # Points already inside ball ∩ box are left where they are.
  inside = attacks.NORMS[norm].project(x, 0.01 * once, eps)
  np.testing.assert_allclose(inside, 0.01 * once, atol=1e-7)


def test_per_example_eps():
  rng = np.random.default_rng(2)
  x, v = map(jnp.asarray, random_problem(rng, n_ex=3, scale=1.0))
  eps = jnp.array([0.0, 0.3, 1.0])
  for norm in NORMS:
    d = attacks.NORMS[norm].project(x, v, eps)
    norms = attacks.lp_norm(d, norm)
    assert bool(jnp.all(norms <= eps * (1 + 1e-6) + 1e-7)), norm
    assert float(norms[0]) == 0.0


def _forty_halvings(too_small, lo, hi, operands):
  """The plain bisection: 40 halvings of the whole batch's brackets."""

  def halve(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    left = too_small(mid, *operands)
    return jnp.where(left, mid, lo), jnp.where(left, hi, mid)

  return jax.lax.fori_loop(0, 40, halve, (lo, hi))


@pytest.mark.parametrize('batch,rows', [(16, 8), (12, 6), (5, 0)])
def test_bisection_in_chunks_and_stopping_at_float_resolution_is_bit_for_bit(batch, rows):
  """Stopping once no bracket changes, and halving chunks of examples in turn,
  give exactly the plain 40 halvings (roots from 1e-30 to 0.9, 0 and NaN included)."""
  if jax.default_backend() == 'cpu' and jax.device_count() == 1:
    assert search.rows_per_chunk(batch) == rows
  targets = np.geomspace(1e-30, 0.8, batch).astype(np.float32)
  targets[0], targets[-1] = 0.0, np.nan
  too_small = lambda t, target, weight: t * t * weight < target
  operands = (jnp.asarray(targets), jnp.linspace(0.5, 1.5, batch))
  lo, hi = jnp.zeros(batch), jnp.ones(batch)
  got = jax.jit(lambda lo, hi, ops: search.bisect(too_small, lo, hi, ops))(lo, hi, operands)
  want = jax.jit(lambda lo, hi, ops: _forty_halvings(too_small, lo, hi, ops))(lo, hi, operands)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


def test_bisection_stops_early_on_well_conditioned_roots_with_the_same_result():
  """Roots in [0.1, 0.9]: every bracket reaches float resolution in under 40 halvings
  (the predicate is evaluated fewer times) and the result is still the 40 halvings'."""
  calls = []

  def too_small(t, target):
    jax.debug.callback(lambda: calls.append(1))
    return t < target

  targets = jnp.linspace(0.1, 0.9, 16)
  lo, hi = jnp.zeros(16), jnp.ones(16)
  got = jax.jit(lambda lo, hi, t: search.bisect(too_small, lo, hi, (t,)))(lo, hi, targets)
  jax.effects_barrier()
  rows = search.rows_per_chunk(16)
  chunks = 16 // rows if rows else 1
  assert 0 < len(calls) < 40 * chunks, (len(calls), chunks)
  want = jax.jit(lambda lo, hi, t: _forty_halvings(lambda m, t: m < t, lo, hi, (t,)))(lo, hi,
                                                                                      targets)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize('norm,eps', [('l2', 0.5), ('l1', 8.0)])
def test_a_batchs_projection_is_each_examples_own_bit_for_bit(norm, eps):
  """The batch (bisected in chunks) projects every example as it alone would be."""
  kx, kd = jax.random.split(jax.random.key(11))
  x = jax.random.uniform(kx, (16, 8, 8, 3))
  delta = jax.random.normal(kd, x.shape) * (0.3 if norm == 'l2' else 1.0)
  project = jax.jit(threat.NORMS[norm].project)
  batch = project(x, delta, eps)
  for i in range(16):
    np.testing.assert_array_equal(batch[i:i + 1], project(x[i:i + 1], delta[i:i + 1], eps))


def test_l1_topk_step_moves_only_the_largest_gradients():
  grad = jnp.arange(1.0, 21.0).reshape(1, 20) * jnp.where(jnp.arange(20) % 2, 1, -1)
  step = threat.l1_topk_step(jnp.zeros_like(grad), grad, 2.0, fraction=0.2)
  moved = np.flatnonzero(np.asarray(step[0]))
  np.testing.assert_array_equal(moved, [16, 17, 18, 19])
  np.testing.assert_allclose(np.asarray(step[0, moved]), [-0.5, 0.5, -0.5, 0.5])


def test_l1_topk_step_moves_the_coordinates_at_or_above_the_sorted_threshold():
  """A Python float fraction and per-example fractions both move exactly the
  coordinates whose |grad| is >= the value at ascending position
  int((1 - fraction) * n) of numpy's sort, ties at the threshold included."""
  grad = jax.random.normal(jax.random.PRNGKey(3), (6, 3, 8, 8))
  grad = grad.at[0, 0, 0, :4].set(2.5)  # a tie at the top
  magnitude = np.abs(np.asarray(grad).reshape(6, -1))
  n = magnitude.shape[1]
  for fraction in (0.05, 0.2, 0.5, 1.0):
    kth = min(max(int((1.0 - fraction) * n), 0), n - 1)
    threshold = np.sort(magnitude, axis=-1)[:, kth:kth + 1]
    want = magnitude >= threshold
    for f in (fraction, jnp.full((6,), fraction)):
      step = threat.l1_topk_step(jnp.zeros_like(grad), grad, 1.3, fraction=f)
      np.testing.assert_array_equal(np.asarray(step).reshape(6, -1) != 0, want)


def test_l1_topk_step_never_moves_a_nan_coordinate():
  grad = jnp.array([[1.0, jnp.nan, 3.0, -4.0, 0.5, 2.0, 0.1, 0.2, 0.3, 0.4]])
  step = np.asarray(threat.l1_topk_step(jnp.zeros_like(grad), grad, 1.0, fraction=0.2))
  # The two largest |g| are NaN and 4: only the 4 moves, with the whole step.
  np.testing.assert_array_equal(step, [[0, 0, 0, -1.0, 0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_kth_largest_is_the_sorted_value(dtype):
  """The radix select gives exactly the sort's value, for ties, zeros, subnormals,
  inf and NaN (ranked above inf, as jnp.sort does), m from 1 to n, per row."""
  rng = np.random.default_rng(0)
  values = np.abs(rng.standard_normal((6, 50))).astype(np.float32)
  values[0, :10] = 2.5  # ties across the threshold
  values[1] = 0.0  # all equal
  values[2, :5] = np.float32(1e-41)  # subnormals
  values[3, :3] = np.inf
  values[4, :2] = np.nan
  values[5, :] = np.round(values[5] * 4) / 4  # many ties
  values = jnp.asarray(values).astype(dtype)
  ascending = np.sort(np.asarray(values, np.float32), axis=-1)  # NaN last
  kth_largest = jax.jit(search.kth_largest)
  for m in (1, 2, 7, 25, 49, 50):
    got = np.asarray(kth_largest(values, m), np.float32)[:, 0]
    np.testing.assert_array_equal(got, ascending[:, 50 - m])
  per_row = jnp.array([1, 50, 13, 2, 3, 30])
  got = np.asarray(kth_largest(values, per_row), np.float32)[:, 0]
  np.testing.assert_array_equal(got, ascending[np.arange(6), 50 - np.asarray(per_row)])
  assert kth_largest(values, 3).dtype == dtype
  # m outside 1..n is clipped: the largest and the smallest value
  np.testing.assert_array_equal(
      np.asarray(kth_largest(values, 0), np.float32)[:, 0], ascending[:, -1])
  np.testing.assert_array_equal(
      np.asarray(kth_largest(values, 99), np.float32)[:, 0], ascending[:, 0])


def test_l2_step_has_the_step_length_along_the_gradient():
  grad = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  step = threat.l2_step(jnp.zeros_like(grad), grad, 0.7)
  np.testing.assert_allclose(attacks.lp_norm(step, 'l2'), 0.7, rtol=1e-5)
  cos = jnp.sum(step * grad, -1) / (attacks.lp_norm(step, 'l2') * attacks.lp_norm(grad, 'l2'))
  np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


# --- property tests: every attack stays in its ball and the box -------------
# One compiled function per norm (eps is traced), reused by the tests below:
# compiling dominates the run time of these tests.

SHAPE = (3, 4, 2)
LOGITS_FN = linear_logits_fn(jax.random.PRNGKey(0), SHAPE)
MAX_EPS = {'linf': 0.3, 'l2': 2.0, 'l1': 8.0}


@functools.lru_cache(maxsize=None)
def all_attacks(norm):

  @jax.jit
  def run(x, y, key, eps):
    return (attacks.pgd(LOGITS_FN, x, y, key, eps=eps, step_size=eps / 3, steps=6, restarts=2,
                        norm=norm, loss='margin',
                        unroll=1), attacks.fgsm(LOGITS_FN, x, y, key, eps=eps, norm=norm),
            attacks.mim(LOGITS_FN, x, y, key, eps=eps, step_size=eps / 3, steps=6, norm=norm,
                        random_start=True, unroll=1))

  return run


def _assert_in_ball_and_box(x_adv, x, norm, eps):
  assert x_adv.shape == x.shape
  assert bool(jnp.all(attacks.lp_norm(x_adv - x, norm) <= eps * (1 + 1e-5) + 1e-6))
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


@pytest.mark.parametrize('norm', NORMS)
def test_pgd_fgsm_mim_stay_in_ball_and_box(norm):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(0, 1, (16, *SHAPE)), jnp.float32)
  x = x.at[:, 0].set(jnp.round(x[:, 0]))  # some pixels on the box faces
  y = jnp.asarray(rng.integers(0, 10, 16))
  for trial in range(3):
    eps = float(rng.uniform(0.0, MAX_EPS[norm]))
    for x_adv in all_attacks(norm)(x, y, jax.random.PRNGKey(trial), eps):
      _assert_in_ball_and_box(x_adv, x, norm, eps)


@pytest.mark.parametrize('norm', NORMS)
def test_eps_zero_gives_the_clean_input(norm):
  x = jax.random.uniform(jax.random.PRNGKey(0), (16, *SHAPE))
  y = jnp.arange(16) % 10
  for x_adv in all_attacks(norm)(x, y, jax.random.PRNGKey(3), 0.0):
    np.testing.assert_array_equal(x_adv, x)


@pytest.mark.parametrize('norm', NORMS)
def test_attacks_lower_accuracy(norm):
  x = jax.random.uniform(jax.random.PRNGKey(1), (16, *SHAPE))
  y = jnp.argmax(LOGITS_FN(x), -1)  # all correct at first
  pgd_adv, fgsm_adv, mim_adv = all_attacks(norm)(x, y, jax.random.PRNGKey(2), MAX_EPS[norm] / 2)
  accuracy = lambda a: float(jnp.mean(jnp.argmax(LOGITS_FN(a), -1) == y))
  assert accuracy(pgd_adv) < 0.5 and accuracy(mim_adv) < 0.5
  assert accuracy(fgsm_adv) < 1.0


def test_make_attack_binds_the_config():
  import ml_collections
  x = jax.random.uniform(jax.random.PRNGKey(0), (16, *SHAPE))
  y = jnp.argmax(LOGITS_FN(x), -1)
  cfg = ml_collections.ConfigDict(
      dict(kind='pgd', norm='l2', eps=0.5, step_size=0.2, steps=6, loss='ce', random_start=True,
           restarts=1, unroll=1))
  attack = attacks.make_attack(cfg)
  x_adv = jax.jit(lambda x, y, k: attack(LOGITS_FN, x, y, k))(x, y, jax.random.PRNGKey(3))
  _assert_in_ball_and_box(x_adv, x, 'l2', 0.5)
  # linear model: on the sphere
  np.testing.assert_allclose(attacks.lp_norm(x_adv - x, 'l2'), 0.5, rtol=1e-3)
