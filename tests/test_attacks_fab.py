"""FAB-T and the l2 Square attack: exact boundary projections, a tiny trained model, references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from generalist_jax import attacks
from generalist_jax.attacks import fab
from generalist_jax.attacks import hyperplane
from generalist_jax.attacks import losses
from generalist_jax.attacks import registry
from generalist_jax.attacks import square
from generalist_jax.attacks import threat

NORMS = ('linf', 'l2', 'l1')
SHAPE = (4, 4, 3)
EPS = {'linf': 0.1, 'l2': 0.5, 'l1': 2.0}

# --- the projection onto {<w, z> = b} ∩ box, against independent solvers ------


def reference_projection(t, w, b, norm):
  """float64: linprog for l-inf / l1 (split d = p - m), bisection on the KKT multiplier for l2."""
  n = t.size
  lo, hi = -t, 1.0 - t
  if norm == 'l2':
    d_of = lambda lam: np.clip(-lam * w, lo, hi)
    c = w @ t - b
    sign = 1.0 if c >= 0 else -1.0
    lam_lo, lam_hi = 0.0, 1e6
    for _ in range(300):
      mid = 0.5 * (lam_lo + lam_hi)
      if sign * (w @ (t + d_of(sign * mid)) - b) > 0:
        lam_lo = mid
      else:
        lam_hi = mid
    return d_of(sign * lam_hi)
  if norm == 'l1':  # variables p, m >= 0 (d = p - m); minimise sum(p + m)
    cost = np.ones(2 * n)
    a_eq = np.concatenate([w, -w])[None]
    bounds = [(0, h) for h in hi] + [(0, -l) for l in lo]
    res = scipy.optimize.linprog(cost, A_eq=a_eq, b_eq=[b - w @ t], bounds=bounds)
    return res.x[:n] - res.x[n:]
  # l-inf: variables (d, s); minimise s subject to -s <= d_i <= s
  cost = np.concatenate([np.zeros(n), [1.0]])
  a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
  a_eq = np.concatenate([w, [0.0]])[None]
  res = scipy.optimize.linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=a_eq, b_eq=[b - w @ t],
                               bounds=list(zip(lo, hi)) + [(0, None)])
  return res.x[:n]


@pytest.mark.parametrize('norm', NORMS)
def test_boundary_projection_matches_an_independent_solver(norm):
  rng = np.random.default_rng(0)
  n_ex, n = 8, 7
  t = rng.uniform(0, 1, (n_ex, n))
  t[:, 0], t[:, 1] = 0.0, 1.0  # coordinates on the box faces
  w = rng.normal(size=(n_ex, n))
  w[:, 2] = 0.0  # a coordinate the boundary ignores
  b = np.sum(w * t, -1) + rng.normal(0, 0.4, n_ex)  # both sides of the hyperplane
  got = np.asarray(
      jax.jit(functools.partial(hyperplane.project_on_hyperplane,
                                norm=norm))(jnp.asarray(t,
                                                        jnp.float32), jnp.asarray(w, jnp.float32),
                                            jnp.asarray(b, jnp.float32)))
  order = {'linf': np.inf, 'l2': 2, 'l1': 1}[norm]
  for i in range(n_ex):
    want = reference_projection(t[i], w[i], b[i], norm)
    np.testing.assert_allclose(w[i] @ (t[i] + got[i]), b[i], atol=1e-4)  # on the hyperplane
    assert np.all(t[i] + got[i] >= -1e-6) and np.all(t[i] + got[i] <= 1 + 1e-6)
    np.testing.assert_allclose(np.linalg.norm(got[i], order), np.linalg.norm(want, order),
                               rtol=1e-3, atol=1e-5)  # minimal norm
    assert got[i, 2] == 0.0


@pytest.mark.parametrize('norm', NORMS)
def test_unreachable_hyperplane_gives_the_closest_box_corner(norm):
  t = jnp.full((1, 4), 0.5)
  w = jnp.asarray([[1.0, -2.0, 0.0, 3.0]])
  d = hyperplane.project_on_hyperplane(t, w, jnp.asarray([100.0]), norm)  # far beyond the box
  np.testing.assert_allclose(d, [[0.5, -0.5, 0.0, 0.5]], atol=1e-6)


# --- the sort-free projection against the sort-based one it replaced ----------
# The code before (fra31/auto-attack fab_projections.py's approach): argsort the
# breakpoints (l-inf, l2) or -|w| (l1), cumulative sums, closed form.


def sorted_multiplier_solve(s, beta, c):
  order = jnp.argsort(beta, axis=-1)
  b_s = jnp.take_along_axis(beta, order, -1)
  s_s = jnp.take_along_axis(s, order, -1)
  clipped = jnp.cumsum(s_s * b_s, -1) - s_s * b_s  # sum over breakpoints before k
  free = jnp.sum(s_s, -1, keepdims=True) - (jnp.cumsum(s_s, -1) - s_s)  # from k on
  value_at_break = clipped + b_s * free
  n_below = jnp.sum(value_at_break < c[:, None], -1)
  k = jnp.clip(n_below, 0, beta.shape[-1] - 1)
  take = lambda a: jnp.take_along_axis(a, k[:, None], -1)[:, 0]
  lam = (c - take(clipped)) / jnp.maximum(take(free), 1e-30)
  return jnp.where(n_below == beta.shape[-1], b_s[:, -1], jnp.maximum(lam, 0.0))


def sorted_l1_magnitudes(absw, room, c):
  order = jnp.argsort(-absw, axis=-1)  # stable: ties in index order
  w_s = jnp.take_along_axis(absw, order, -1)
  cap = w_s * jnp.take_along_axis(room, order, -1)
  before = jnp.cumsum(cap, -1) - cap
  m_s = jnp.clip((c[:, None] - before) / jnp.maximum(w_s, 1e-30), 0.0,
                 jnp.take_along_axis(room, order, -1))
  return jnp.take_along_axis(m_s, jnp.argsort(order, axis=-1), -1)


@functools.partial(jax.jit, static_argnames='norm')
def sorted_projection(point, w, b, norm):
  """hyperplane.project_on_hyperplane as it was, with the sorts."""
  c = jnp.sum(w * point, -1) - b
  w = w * jnp.where(c >= 0, 1.0, -1.0)[:, None]
  c = jnp.abs(c)
  absw = jnp.abs(w)
  room = jnp.where(w > 0, point, 1.0 - point) * (absw > 0)
  if norm == 'linf':
    magnitude = jnp.minimum(sorted_multiplier_solve(absw, room, c)[:, None], room)
  elif norm == 'l2':
    lam = sorted_multiplier_solve(absw * absw, room / jnp.maximum(absw, 1e-30), c)
    magnitude = jnp.minimum(lam[:, None] * absw, room)
  else:
    magnitude = sorted_l1_magnitudes(absw, room, c)
  return -jnp.sign(w) * magnitude * (absw > 0)


_PROJECT = jax.jit(hyperplane.project_on_hyperplane, static_argnames='norm')
_UNREACHABLE = [20, 21, 23]


def hyperplane_rows(seed, n_rows=48, dim=3072, wide=False):
  """(point, w, b) float64 rows of every kind the projection meets: coordinates on
  the box faces, w_i = 0, ties in |w| and in the room (rows 8-15), c from 1e-5 of
  the capacity (what the box lets <w, d> change by) to nearly all of it (16-19),
  unreachable (20, 21), c = 0 exactly (22), w = 0 (23). `wide`: |w| over ~12 decades."""
  rng = np.random.default_rng(seed)
  point = rng.uniform(0, 1, (n_rows, dim))
  point[:, :150] = np.round(point[:, :150])
  w = rng.normal(size=(n_rows, dim)) * np.exp(rng.normal(0, 2, (n_rows, 1)))
  if wide:
    w *= np.exp(rng.normal(0, 4, (n_rows, dim)))
  w[:, 150:250] = 0.0
  point[8:16] = np.round(8 * point[8:16]) / 8
  w[8:16] = np.round(4 * w[8:16] / np.abs(w[8:16]).max(-1, keepdims=True)) / 4
  side = rng.choice([-1.0, 1.0], n_rows)
  capacity = np.sum(np.abs(w) * np.where(side[:, None] * w > 0, point, 1 - point), -1)
  c = side * capacity * np.exp(rng.uniform(-12, 0, n_rows))
  c[16:20] = side[16:20] * capacity[16:20] * (1.0 - 1e-3)
  c[20:22] = 3.0 * side[20:22] * capacity[20:22]
  b = np.sum(w * point, -1) - c
  point[22], w[22] = 0.5, rng.integers(-3, 4, dim)
  b[22] = np.sum(w[22] * point[22])
  w[23], b[23] = 0.0, 1.0
  return point, w, b


@pytest.mark.parametrize('norm', NORMS)
def test_sort_free_projection_equals_the_sorted_one_in_float64(norm):
  """Same segment, same ties (l1: index order), same edge cases: equal to rounding."""
  with jax.enable_x64(True):
    for seed in (0, 1):
      rows = [jnp.asarray(a, jnp.float64) for a in hyperplane_rows(seed)]
      got, want = _PROJECT(*rows, norm=norm), sorted_projection(*rows, norm=norm)
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize('norm', NORMS)
def test_sort_free_projection_in_float32_is_as_exact_as_float32_allows(norm):
  """Against the sorted solution computed in float64 from the same float32 rows: each
  coordinate's share of <w, d> is off by float32 rounding of the constraint, and
  (l-inf, l2) each coordinate by little. (The float32 sort is off up to 2e-6 of the
  constraint's scale on rows 16-19, where sum - cumsum cancels.)"""
  for seed in (0, 1):
    rows = [np.asarray(a, np.float32) for a in hyperplane_rows(seed)]
    got = np.asarray(_PROJECT(*map(jnp.asarray, rows), norm=norm), np.float64)
    with jax.enable_x64(True):
      want = np.asarray(sorted_projection(*[jnp.asarray(a, jnp.float64) for a in rows], norm=norm))
    point, w, b = (a.astype(np.float64) for a in rows)
    scale = np.sum(np.abs(w * point), -1) + np.abs(b)  # the rounding scale of c
    share_error = np.sum(np.abs(w) * np.abs(got - want), -1) / scale
    assert share_error.max() < 2e-7
    if norm != 'l1':  # l1's one partial coordinate is (c - the others) / |w_i|: ill-conditioned
      assert np.abs(got - want).max() < {'linf': 3e-6, 'l2': 1e-4}[norm]


@pytest.mark.parametrize('wide', [False, True])
@pytest.mark.parametrize('norm', NORMS)
def test_sort_free_projection_lands_on_the_hyperplane_in_the_box(norm, wide):
  rows = [np.asarray(a, np.float32) for a in hyperplane_rows(2, wide=wide)]
  d = np.asarray(_PROJECT(*map(jnp.asarray, rows), norm=norm), np.float64)
  point, w, b = (a.astype(np.float64) for a in rows)
  z = point + d
  assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6
  assert np.all(d[w == 0] == 0)
  residual = np.abs(np.sum(w * z, -1) - b) / (np.sum(np.abs(w * point), -1) + np.abs(b))
  assert np.delete(residual, _UNREACHABLE).max() < 1e-6
  # Unreachable: every coordinate that helps at its box face (the corner closest to it).
  sign = np.sign(np.sum(w * point, -1) - b)[:, None]
  corner = np.where(sign * w > 0, -point, np.where(sign * w < 0, 1 - point, 0.0))
  np.testing.assert_allclose(d[_UNREACHABLE], corner[_UNREACHABLE], atol=1e-7)
  assert np.all(d[22] == 0)  # c = 0: already on it


def test_float_search_finds_the_last_float_where_a_predicate_holds():
  # Normal floats only: XLA:CPU compares denormals as 0.
  for dtype, tiny in ((jnp.float32, 1.5e-38), (jnp.float64, 1e-300)):
    with jax.enable_x64(dtype == jnp.float64):
      v = jnp.asarray([tiny, 3e-8, 0.7, 1.0, np.nextafter(1.0, 2.0), 2.5e30], dtype)
      search = jax.jit(lambda v, shift: hyperplane._largest_float_where(
          lambda t: t <= v + shift, v.shape[0], v.dtype))
      got = search(v, 0.0)
      assert got.dtype == dtype
      np.testing.assert_array_equal(got, v)
      np.testing.assert_array_equal(search(v, -1e31), 0.0)  # holds nowhere: 0


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
def test_sort_free_solvers_take_16_bit_rows_and_work_in_float32(dtype):
  rng = np.random.default_rng(3)
  s, beta = (jnp.asarray(rng.uniform(0, 1, (6, 3072)), dtype) for _ in range(2))
  c = jnp.asarray(rng.uniform(0, 200, 6), dtype)
  for solve in (hyperplane._multiplier_solve, hyperplane._l1_magnitudes):
    got = jax.jit(solve)(s, beta, c)
    want = jax.jit(solve)(*(a.astype(jnp.float32) for a in (s, beta, c))).astype(dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)


# --- FAB-T on a tiny trained model -------------------------------------------


@pytest.fixture(scope='module')
def trained():
  """An MLP trained (Adam, 300 full-batch steps) on 10 Gaussian blobs in [0, 1]^48."""
  rng = np.random.default_rng(0)
  centres = rng.uniform(0.25, 0.75, (10, *SHAPE))
  y = np.repeat(np.arange(10), 20)
  x = np.clip(centres[y] + rng.normal(0, 0.08, (200, *SHAPE)), 0, 1).astype(np.float32)
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  params = {
      'w1': jax.random.normal(k1, (48, 32)) / 7, 'b1': jnp.zeros(32),
      'w2': jax.random.normal(k2, (32, 10)) / 6, 'b2': jnp.zeros(10)
  }

  def apply(p, v):
    h = jax.nn.relu(v.reshape(v.shape[0], -1) @ p['w1'] + p['b1'])
    return h @ p['w2'] + p['b2']

  opt = optax.adam(1e-2)

  @jax.jit
  def step(p, s):
    loss, g = jax.value_and_grad(lambda p: attacks.cross_entropy(apply(p, x), y).mean())(p)
    u, s = opt.update(g, s)
    return optax.apply_updates(p, u), s, loss

  state = opt.init(params)
  for _ in range(300):
    params, state, loss = step(params, state)
  assert float(loss) < 0.1
  logits_fn = functools.partial(apply, params)
  x_test = np.clip(centres[np.arange(32) % 10] + rng.normal(0, 0.08, (32, *SHAPE)), 0, 1)
  x_test = jnp.asarray(x_test, jnp.float32)
  y_test = jnp.asarray(np.arange(32) % 10)
  y_test = y_test.at[:2].set((y_test[:2] + 1) % 10)  # two examples wrong on clean inputs
  return logits_fn, x_test, y_test


@functools.lru_cache(maxsize=None)
def _fab(norm, steps, n_targets=3):
  return jax.jit(
      lambda f, x, y, k: fab.fab_targeted(f, x, y, k, eps=EPS[norm], norm=norm, steps=steps,
                                          n_targets=n_targets), static_argnums=0)


@pytest.mark.parametrize('norm', NORMS)
def test_fab_t_finds_real_adversarial_points_in_ball_and_box(trained, norm):
  logits_fn, x, y = trained
  correct = np.asarray(jnp.argmax(logits_fn(x), -1) == y)
  assert correct.sum() >= 28 and not correct[:2].any()
  x_adv = _fab(norm, 20)(logits_fn, x, y, jax.random.PRNGKey(1))
  assert bool(jnp.all(attacks.lp_norm(x_adv - x, norm) <= EPS[norm] * (1 + 1e-5)))
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  changed = np.asarray(jnp.any((x_adv != x).reshape(len(x), -1), -1))
  fooled = np.asarray(jnp.argmax(logits_fn(x_adv), -1) != y)
  assert changed.sum() >= 3  # it breaks some examples ...
  assert np.all(fooled[changed])  # ... every reported success is real
  assert not changed[~correct].any()  # already-wrong examples are left alone


def test_fab_t_best_point_never_worse_with_more_iterations(trained):
  logits_fn, x, y = trained
  target = jnp.argsort(logits_fn(x), -1)[:, -2]
  run = jax.jit(lambda steps: fab.fab_run(  # steps traced: one compile
      logits_fn, x, y, jax.random.PRNGKey(0), fab.targeted_boundary(logits_fn, y, target), eps=EPS[
          'l2'], norm='l2', steps=steps))
  (_, n10), (x30, n30) = run(10), run(30)
  assert bool(jnp.all(n30 <= n10))  # same first 10 iterations, then smaller
  assert bool(jnp.any(n30 < n10))
  found = n30 < 1e9
  np.testing.assert_allclose(attacks.lp_norm(x30 - x, 'l2')[found], n30[found], rtol=1e-5)
  assert bool(jnp.all(jnp.argmax(logits_fn(x30), -1)[found] != y[found]))


@pytest.mark.parametrize('norm', NORMS)
def test_untargeted_fab_steps_to_the_closest_boundary_and_breaks_points(trained, norm):
  logits_fn, x, y = trained
  boundary = fab.closest_boundary(logits_fn, y, norm)
  df, w = boundary(x)
  # By hand for example 0: the class with the smallest |f_k - f_y| / ||grad||_dual.
  logits = logits_fn(x[:1])
  jac = jax.jacrev(lambda v: logits_fn(v)[0])(x[:1]).reshape(logits.shape[-1], -1)
  dual = {'linf': 1, 'l2': 2, 'l1': np.inf}[norm]
  dists = [
      abs(float(logits[0, k] - logits[0, y[0]])) /
      (1e-12 + float(np.linalg.norm(jac[k] - jac[y[0]], ord=dual))) if k != int(y[0]) else np.inf
      for k in range(logits.shape[-1])
  ]
  k = int(np.argmin(dists))
  np.testing.assert_allclose(df[0], logits[0, k] - logits[0, y[0]], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(w[0], jac[k] - jac[y[0]], rtol=1e-4, atol=1e-6)
  eps = {'linf': 0.1, 'l2': 1.0, 'l1': 4.0}[norm]
  x_adv = fab.fab_untargeted(logits_fn, x, y, jax.random.PRNGKey(1), eps=eps, norm=norm, steps=20,
                             restarts=2)
  assert bool(jnp.all(threat.lp_norm(x_adv - x, norm) <= eps * (1 + 1e-5)))
  changed = np.asarray(jnp.any((x_adv != x).reshape(len(x), -1), -1))
  assert changed.any()
  assert np.all(np.asarray(jnp.argmax(logits_fn(x_adv), -1) != y)[changed])


def test_fab_t_refuses_more_targets_than_classes(trained):
  logits_fn, x, y = trained
  with pytest.raises(ValueError, match='n_targets'):
    fab.fab_targeted(logits_fn, x, y, jax.random.PRNGKey(0), eps=0.1, n_targets=10)


# --- l2 Square ----------------------------------------------------------------


def reference_eta(s):
  """AutoAttack's square.py eta(s), without the random transpose, in numpy loops."""

  def rectangles(x, y):
    delta = np.zeros((x, y))
    x_c, y_c = x // 2 + 1, y // 2 + 1
    c0, c1 = x_c - 1, y_c - 1
    for counter in range(max(x_c, y_c)):
      delta[max(c0, 0):min(c0 + 2 * counter + 1, x),
            max(0, c1):min(c1 + 2 * counter + 1, y)] += 1.0 / (counter + 1)**2
      c0, c1 = c0 - 1, c1 - 1
    return delta / np.sqrt((delta**2).sum())

  delta = np.zeros((s, s))
  delta[:s // 2] = rectangles(s // 2, s)
  delta[s // 2:] = -rectangles(s - s // 2, s)
  return delta / np.sqrt((delta**2).sum())


_ETA = jax.jit(square.eta_tile)  # s traced: one compile for every size


@pytest.mark.parametrize('s', [3, 5, 8, 11])
def test_eta_tile_matches_the_reference(s):
  rows = jnp.arange(16)[None, :, None] - 2  # the tile placed at (2, 2) in a 16 x 16 grid
  cols = jnp.arange(16)[None, None, :] - 2
  for transpose in (False, True):
    got = np.array(_ETA(rows, cols, s, jnp.asarray(transpose)))[0]
    want = reference_eta(s).T if transpose else reference_eta(s)
    np.testing.assert_allclose(got[2:2 + s, 2:2 + s], want, atol=1e-6)
    got[2:2 + s, 2:2 + s] = 0
    assert np.all(got == 0)  # nothing outside the window


def test_square_l2_stays_on_ball_and_box_and_more_queries_never_weaker():
  shape = (10, 5, 3)  # 5 x 2 start tiles; windows of side >= 3
  w = jax.random.normal(jax.random.PRNGKey(3), (int(np.prod(shape)), 10))
  logits_fn = lambda v: 3.0 * jnp.tanh(v.reshape(v.shape[0], -1) @ w)
  x = jax.random.uniform(jax.random.PRNGKey(4), (16, *shape))
  y = jnp.argmax(logits_fn(x), -1)
  run = jax.jit(lambda n: square.square(  # n traced: one compile
      logits_fn, x, y, jax.random.PRNGKey(2), norm='l2', eps=EPS['l2'], n_queries=n))
  few, many = run(15), run(60)
  for x_adv in (few, many):
    assert bool(jnp.all(attacks.lp_norm(x_adv - x, 'l2') <= EPS['l2'] * (1 + 1e-5)))
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  margin = lambda a: losses.margin(logits_fn(a), y)
  assert bool(jnp.all(margin(many) >= margin(few) - 1e-6))
  assert bool(jnp.any(margin(many) > margin(few)))


def test_square_l1_stays_in_ball_and_box_and_more_queries_never_weaker():
  """AutoAttack's L1 Square (fra31/auto-attack square.py, L1 branch)."""
  shape = (10, 10, 3)  # 5 x 5 start tiles of side 2
  w = jax.random.normal(jax.random.PRNGKey(3), (int(np.prod(shape)), 10)) * 0.1
  logits_fn = lambda v: 3.0 * jnp.tanh(v.reshape(v.shape[0], -1) @ w)
  x = jax.random.uniform(jax.random.PRNGKey(4), (16, *shape))
  y = jnp.argmax(logits_fn(x), -1)
  eps = 2.0
  run = jax.jit(lambda n: square.square(logits_fn, x, y, jax.random.PRNGKey(2), norm='l1', eps=eps,
                                        n_queries=n))
  few, many = run(15), run(80)
  for x_adv in (few, many):
    assert bool(jnp.all(attacks.lp_norm(x_adv - x, 'l1') <= eps * (1 + 1e-5)))
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  margin = lambda a: losses.margin(logits_fn(a), y)
  assert bool(jnp.all(margin(many) >= margin(few) - 1e-6))
  assert bool(jnp.any(margin(many) > margin(few)))


def test_the_l1_tile_has_unit_l1_mass_and_opposite_halves():
  s = 7
  r, q = jnp.meshgrid(jnp.arange(s), jnp.arange(s), indexing='ij')
  tile = square.eta_tile(r[None], q[None], s, jnp.zeros((1, 1, 1), bool), 'l1')[0]
  assert float(jnp.abs(tile).sum()) == pytest.approx(1.0, rel=1e-5)
  assert float(tile[:s // 2].min()) > 0 and float(tile[s // 2:].max()) < 0
  # The top rectangle (3 x 7, centre (1, 3)): rings k = 0, 1, 2, 3 weigh 1/(k+1)^4, so
  # the centre holds all four and a cell at ring distance 3 only the last one.
  assert float(tile[1, 3] / tile[1, 0]) == pytest.approx(
      sum(1 / (k + 1)**4 for k in range(4)) / (1 / 4**4), rel=1e-4)


# --- every registered attack, random shapes and radii: ball, box, eps = 0 -----


def _random_case(norm):
  rng = np.random.default_rng(['linf', 'l2', 'l1'].index(norm) + 10)
  shape = (int(rng.integers(4, 7)), int(rng.integers(4, 7)), int(rng.integers(1, 4)))
  w = jax.random.normal(jax.random.PRNGKey(int(rng.integers(1000))), (int(np.prod(shape)), 10))
  logits_fn = lambda v: 3.0 * jnp.tanh(v.reshape(v.shape[0], -1) @ w)
  x = rng.uniform(0, 1, (12, *shape)).astype(np.float32)
  x[:, 0, 0] = np.round(x[:, 0, 0])  # pixels on the box faces
  radii = [0.0] + [float(rng.uniform(0.2, 1.0)) * EPS[norm] * 2 for _ in range(2)]
  return logits_fn, jnp.asarray(x), radii


@pytest.mark.parametrize('norm', NORMS)
def test_standard_attacks_stay_in_ball_and_box_over_random_shapes_and_eps(norm):
  """(PGD, FGSM, MIM: test_attacks_norms; APGD-DLR shares APGD-CE's loop.)"""
  from generalist_jax.attacks import autoattack
  logits_fn, x, radii = _random_case(norm)
  y = jnp.argmax(logits_fn(x), -1)
  names = autoattack.version_components('standard', norm)

  @jax.jit
  def run_all(eps):  # eps traced: one compile per norm for every radius
    key = jax.random.PRNGKey(4)
    return [
        registry.build(a, norm=norm, eps=eps,
                       overrides=dict(steps=3, n_targets=2))(logits_fn, x, y, key) for a in names
    ]

  for eps in radii:
    for name, x_adv in zip(names, run_all(eps)):
      assert x_adv.shape == x.shape, name
      assert bool(jnp.all(attacks.lp_norm(x_adv - x, norm) <= eps * (1 + 1e-5) + 1e-6)), name
      assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, name
      if eps == 0.0:  # no perturbation at all: clean accuracy
        np.testing.assert_array_equal(x_adv, x, err_msg=name)


@pytest.mark.parametrize('norm', ['l2', 'l1'])
@pytest.mark.parametrize('shape', [(3, 32, 32, 3), (2, 10, 10, 3), (2, 28, 28, 1)])
def test_square_start_grid_equals_its_tiles_added_one_by_one(shape, norm):
  """The initial grid (a loop over tiles) is the sum of the tiles as written out
  one by one, bit for bit (they do not overlap)."""
  x = jnp.zeros(shape)
  b, h, w, c = shape
  s = max(h // 5, 1)
  start = max((h - 5 * s) // 2, 0)
  corners = [(vh, vw)
             for vh in range(start, h - s + 1, s)[:h // s]
             for vw in range(start, w - s + 1, s)[:w // s]]

  def unrolled(key):
    keys = jax.random.split(key, 2 * len(corners))
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    delta = jnp.zeros_like(x)
    for i, (vh, vw) in enumerate(corners):
      transpose = jax.random.bernoulli(keys[2 * i], 0.5, (b, 1, 1))
      tile = square.eta_tile(rows - vh, cols - vw, s, transpose, norm)
      delta = delta + tile[..., None] * jax.random.rademacher(keys[2 * i + 1], (b, 1, 1, c))
    return delta

  key = jax.random.key(3)
  np.testing.assert_array_equal(
      jax.jit(lambda k: square._tile_start(k, x, norm))(key),
      jax.jit(unrolled)(key))
