"""FAB-T: targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), l-inf, l2, l1.

A minimum-norm attack. For a target class t, each iteration linearises the
decision boundary f_t(x) - f_y(x) = 0 at the current iterate x1 and projects
both x1 and the clean x0 onto that hyperplane (intersected with the [0, 1]
box) with the minimal perturbation in the threat model's norm. The next iterate
mixes the two projections, biased towards the one from x0 (weight alpha <=
alpha_max) so the perturbation stays small, with an overshoot eta. When an
iterate is misclassified it is recorded if smaller than the best so far, and the
iterate steps back towards x0 (beta) to look for a smaller one.

AutoAttack 'standard' runs the 9 targets (2nd..10th highest clean logit), one
restart each (no random start), 100 iterations, for every norm. An example
counts as broken when the smallest adversarial point found is within eps; the
attack returns it, and x itself otherwise, so the output is always inside the
ball and box.

Pure and jittable: iterations and targets are `lax.fori_loop`s; the `_staged`
forms cut the runs into stages for an evaluation that drops broken examples.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from generalist_jax.attacks import apgd
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged
from generalist_jax.attacks import threat

_FLOAT_MAX = 1e10      # "no adversarial point yet" (the reference's res2 init)


# ----------------------------------------------------------------------------
# Minimal-norm step onto a hyperplane within the box.
# ----------------------------------------------------------------------------

def _largest_float_where(holds, rows: int, dtype) -> jax.Array:
  """[rows]: per row, the largest float t >= 0 of `dtype` (float32 or float64) for which
  `holds(t)` ([rows] -> [rows] bool) is True, for a predicate True on [0, t*] and False
  above; 0 where it holds nowhere. A radix search, as threat.kth_largest: non-negative
  IEEE floats order as their bit patterns do, so t* is built bit by bit from the top
  (31 evaluations for float32, 63 for float64), down to one ulp whatever its scale (l2's
  breakpoints room / |w| span many decades, where halving a value range stops short).
  XLA:CPU compares denormals as 0, so t* may come back as a denormal for 0."""
  ints = {4: jnp.int32, 8: jnp.int64}[jnp.dtype(dtype).itemsize]
  n_bits = 8 * jnp.dtype(dtype).itemsize - 1

  def keep_bit(i, prefix):
    candidate = prefix | jnp.left_shift(ints(1), (n_bits - 1 - i).astype(ints))
    return jnp.where(holds(jax.lax.bitcast_convert_type(candidate, dtype)), candidate, prefix)
  prefix = jax.lax.fori_loop(0, n_bits, keep_bit, jnp.zeros((rows,), ints))
  return jax.lax.bitcast_convert_type(prefix, dtype)


def _working_dtype(dtype):
  """16-bit floats are searched and summed in float32 (3,072-term sums)."""
  return jnp.promote_types(dtype, jnp.float32)


def _multiplier_solve(s: jax.Array, beta: jax.Array, c: jax.Array) -> jax.Array:
  """Smallest lam >= 0 with sum_i s_i * min(lam, beta_i) = c, per row (s, beta [B, D] >= 0,
  c [B] >= 0; returns [B]).

  The left side f(lam) is piecewise linear and nondecreasing with breakpoints beta_i.
  The largest float lo with f(lo) < c (a radix search on lam, no sort) fixes the
  segment: the solution lies in (lo, next float], so the coordinates with beta_i <= lo
  are clipped and the others free, and lam = (c - sum_clipped s_i beta_i) / sum_free s_i
  in closed form, as the sorted breakpoints of fab_projections.py give it (a tie or a
  zero s_i changes neither sum). c = 0 gives 0. Where even lam = max(beta) (every
  coordinate at its box face) falls short, returns max(beta).
  """
  dtype = s.dtype
  s, beta, c = (a.astype(_working_dtype(dtype)) for a in (s, beta, c))
  top = jnp.max(beta, -1)
  f = lambda lam: jnp.sum(s * jnp.minimum(lam[:, None], beta), -1)
  # lam < top: where c is out of reach, the search stops below max(beta), not at inf.
  lo = _largest_float_where(lambda lam: (lam < top) & (f(lam) < c), beta.shape[0], beta.dtype)
  clipped = beta <= lo[:, None]
  on_faces = jnp.sum(jnp.where(clipped, s * beta, 0.0), -1)
  free = jnp.sum(jnp.where(clipped, 0.0, s), -1)
  lam = jnp.maximum((c - on_faces) / jnp.maximum(free, 1e-30), 0.0)
  return jnp.where(f(top) < c, top, lam).astype(dtype)


def _l1_magnitudes(absw: jax.Array, room: jax.Array, c: jax.Array) -> jax.Array:
  """[B, D]: how far each coordinate moves to decrease <w, .> by c (absw, room [B, D],
  c [B], all >= 0) at minimal l1 cost: the budget goes to the largest |w_i| first, each
  up to its face (room_i), as fab_projections.py's `projection_l1` (which sorts 1 / |w|;
  its torch.argsort leaves ties in any order, here they go in index order).

  No sort: the threshold tau = the largest |w| value whose coordinates (with all larger
  ones) have capacity >= c, found by a radix search. Larger |w_i| are moved to their
  face; the tie group at tau shares the rest in index order (a cumsum, only where some
  row has ties there); smaller |w_i| stay. Unreachable (total capacity < c): tau = 0,
  every coordinate to its face.
  """
  dtype = absw.dtype
  absw, room, c = (a.astype(_working_dtype(dtype)) for a in (absw, room, c))
  cap = absw * room
  top = jnp.max(absw, -1)
  capacity_from = lambda t: jnp.sum(jnp.where(absw >= t[:, None], cap, 0.0), -1)
  # t <= top: with c = 0 the capacity suffices everywhere; stop at max |w|, not at inf.
  tau = _largest_float_where(lambda t: (t <= top) & (capacity_from(t) >= c),
                             absw.shape[0], absw.dtype)[:, None]
  above = absw > tau
  tied = (absw == tau) & (cap > 0)
  rest = c[:, None] - jnp.sum(jnp.where(above, cap, 0.0), -1, keepdims=True)
  tied_cap = jnp.where(tied, cap, 0.0)
  # A cumsum costs several passes of the search and rows rarely tie at tau: only if needed.
  before = jax.lax.cond(jnp.any(jnp.sum(tied, -1) > 1),
                        lambda: jnp.cumsum(tied_cap, -1) - tied_cap,
                        lambda: jnp.zeros_like(tied_cap))
  partial = jnp.clip((rest - before) / jnp.maximum(tau, 1e-30), 0.0, room)
  return jnp.where(above, room, jnp.where(tied, partial, 0.0)).astype(dtype)


def project_on_hyperplane(point: jax.Array, w: jax.Array, b: jax.Array, norm: str) -> jax.Array:
  """argmin ||d||_p subject to <w, point + d> = b and 0 <= point + d <= 1 (flat rows).

  If the box makes the hyperplane unreachable, the box corner that gets closest
  (every useful coordinate moved to its face), as the reference does.
  """
  c = jnp.sum(w * point, -1) - b
  # Orient so that <w, d> must DEcrease by |c|; each coordinate then moves
  # against sign(w) and has room[i] before the box face.
  w = w * jnp.where(c >= 0, 1.0, -1.0)[:, None]
  c = jnp.abs(c)
  absw = jnp.abs(w)
  room = jnp.where(w > 0, point, 1.0 - point) * (absw > 0)
  direction = -jnp.sign(w)
  if norm == 'linf':
    # Every coordinate moves by min(lam, room): decrease(lam) = sum |w| min(lam, room).
    lam = _multiplier_solve(absw, room, c)
    magnitude = jnp.minimum(lam[:, None], room)
  elif norm == 'l2':
    # KKT: d = -lam * w clipped to the box; decrease = sum w^2 min(lam, room / |w|).
    breaks = room / jnp.maximum(absw, 1e-30)
    lam = _multiplier_solve(absw * absw, breaks, c)
    magnitude = jnp.minimum(lam[:, None] * absw, room)
  elif norm == 'l1':
    # Linear program: spend the l1 budget on the largest |w_i| first, each up to its face.
    magnitude = _l1_magnitudes(absw, room, c)
  else:
    raise ValueError(f'unknown norm {norm!r}; use one of {sorted(threat.NORMS)}')
  return direction * magnitude * (absw > 0)


# ----------------------------------------------------------------------------
# One targeted run.
# ----------------------------------------------------------------------------

def _random_start(key, x0, norm: str, radius):
  """The reference's restart point: a random direction of norm radius / 2, clipped to the box."""
  if norm == 'linf':
    t = rng.uniform(key, x0.shape, x0.dtype, -1.0, 1.0)
  else:
    t = rng.normal(key, x0.shape, x0.dtype)
  t = t / threat.per_example(threat.lp_norm(t, norm) + 1e-12, t)
  return jnp.clip(x0 + 0.5 * threat.per_example(radius, t) * t, 0.0, 1.0)


def targeted_boundary(logits_fn, y, target):
  """x1 -> (f_t - f_y [B], its input gradient [B, D]) towards a fixed `target` [B]:
  one backward pass (the cotangent e_t - e_y)."""
  def boundary(x1):
    logits, vjp = jax.vjp(logits_fn, x1)
    onehot = jax.nn.one_hot(target, logits.shape[-1]) - jax.nn.one_hot(y, logits.shape[-1])
    (dg,) = vjp(onehot.astype(logits.dtype))
    return jnp.sum(logits * onehot, -1), dg.reshape(x1.shape[0], -1)
  return boundary


_DUAL = {'linf': 'l1', 'l2': 'l2', 'l1': 'linf'}


def closest_boundary(logits_fn, y, norm: str):
  """x1 -> (f_k - f_y, grad (f_k - f_y)) for the class k whose linearised boundary is
  closest in `norm` (|f_k - f_y| / ||grad||_dual, the true class excluded), chosen
  anew at every iterate: untargeted FAB. The full Jacobian costs one backward pass
  per class (fra31/auto-attack fab_base.py `attack_single_run`, targeted=False)."""
  def boundary(x1):
    logits, vjp = jax.vjp(logits_fn, x1)
    n, k = logits.shape
    grads = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, (n, k)))[0])(jnp.eye(k, dtype=logits.dtype))
    grads = jnp.moveaxis(grads.reshape(k, n, -1), 0, 1)              # [B, K, D]
    true = jax.nn.one_hot(y, k, dtype=bool)
    df = logits - jnp.take_along_axis(logits, y[:, None], -1)
    dg = grads - jnp.take_along_axis(grads, y[:, None, None], 1)
    dual = threat.lp_norm(dg.reshape(n * k, -1), _DUAL[norm]).reshape(n, k)
    dist = jnp.where(true, jnp.inf, jnp.abs(df) / (1e-12 + dual))
    closest = jnp.argmin(dist, -1)
    return (jnp.take_along_axis(df, closest[:, None], -1)[:, 0],
            jnp.take_along_axis(dg, closest[:, None, None], 1)[:, 0])
  return boundary


def fab_run(logits_fn, x, y, key, boundary, *, eps, norm: str, steps: int = 100,
            alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, random_start=False):
  """(x_best, norm_best): the smallest misclassified point found, stepping towards the
  linearised boundary `boundary(x1) -> (df [B], w [B, D])` (norm_best = 1e10 and
  x_best = x where none was found). `random_start` may be traced."""
  shape = x.shape
  n = x.shape[0]
  x0 = x.reshape(n, -1)
  start = jnp.where(random_start, _random_start(key, x, norm, eps), x)

  def body(_, carry):
    x1, x_best, norm_best = carry
    df, w = boundary(x1)
    x1f = x1.reshape(n, -1)
    b = jnp.sum(w * x1f, -1) - df     # the linearised boundary: <w, z> = b
    d1 = project_on_hyperplane(x1f, w, b, norm)
    d2 = project_on_hyperplane(x0, w, b, norm)
    a1 = jnp.maximum(threat.lp_norm(d1, norm), 1e-8)
    a2 = jnp.maximum(threat.lp_norm(d2, norm), 1e-8)
    alpha = jnp.clip(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
    x1f = jnp.clip((x1f + eta * d1) * (1 - alpha) + (x0 + eta * d2) * alpha, 0.0, 1.0)
    x1 = x1f.reshape(shape)
    is_adv = jnp.argmax(logits_fn(x1), -1) != y
    dist = threat.lp_norm(x1 - x, norm)
    better = is_adv & (dist < norm_best)
    x_best = jnp.where(threat.per_example(better, x), x1, x_best)
    norm_best = jnp.where(better, dist, norm_best)
    x1 = jnp.where(threat.per_example(is_adv, x), x + (x1 - x) * beta, x1)
    return x1, x_best, norm_best

  init = (start, x, jnp.full((n,), _FLOAT_MAX, x.dtype))
  _, x_best, norm_best = jax.lax.fori_loop(0, steps, body, init)
  return x_best, norm_best


def _found_step(logits_fn, x, y, carry, run_r):
  """(x_adv, found) after a run: a point misclassified within eps is taken where none
  was yet (on examples correctly classified)."""
  x_adv, found = carry
  x_best, within = run_r()
  new = ~found & (jnp.argmax(logits_fn(x), -1) == y) & within
  return jnp.where(threat.per_example(new, x), x_best, x_adv), found | new


def _first_found(logits_fn, x, y, runs: int, run):
  """Runs run(r) -> (x_best, norm_best) for r = 0..runs-1 on the examples still
  robust; per example, the first misclassified point within eps, else x."""
  correct = jnp.argmax(logits_fn(x), -1) == y

  def one(r, carry):
    x_adv, found = carry

    def attack(_):
      x_best, within = run(r)
      new = ~found & correct & within
      return jnp.where(threat.per_example(new, x), x_best, x_adv), found | new

    # Every example of the batch already broken (or never correct): skip the run.
    return jax.lax.cond(jnp.all(found | ~correct), lambda _: carry, attack, None)

  x_adv, _ = jax.lax.fori_loop(0, runs, one, (x, jnp.zeros(x.shape[:1], bool)))
  return x_adv


def _check_targets(logits_fn, x, n_targets: int):
  num_classes = logits_fn(x[:1]).shape[-1]
  if n_targets > num_classes - 1:
    raise ValueError(f'FAB-T needs n_targets <= {num_classes - 1} for {num_classes} classes; '
                     f'got n_targets={n_targets}.')


def _targeted_run(logits_fn, x, y, key, r, targets, *, eps, norm, steps, restarts, alpha_max,
                  eta, beta):
  """Run r (may be traced): towards targets[r // restarts], a random start after a
  target's first run; (x_best, found within eps)."""
  x_best, norm_best = fab_run(
      logits_fn, x, y, rng.fold_in(key, r),
      targeted_boundary(logits_fn, y, targets[r // restarts]), eps=eps, norm=norm,
      steps=steps, alpha_max=alpha_max, eta=eta, beta=beta, random_start=(r % restarts) > 0)
  return x_best, norm_best <= eps


def _untargeted_run(logits_fn, x, y, key, r, *, eps, norm, steps, alpha_max, eta, beta):
  x_best, norm_best = fab_run(logits_fn, x, y, rng.fold_in(key, r),
                              closest_boundary(logits_fn, y, norm), eps=eps, norm=norm,
                              steps=steps, alpha_max=alpha_max, eta=eta, beta=beta,
                              random_start=r > 0)
  return x_best, norm_best <= eps


def fab_targeted(logits_fn, x, y, key, *, eps, norm: str = 'linf', steps: int = 100,
                 n_targets: int = 9, restarts: int = 1, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9) -> jax.Array:
  """FAB-T: the runs towards each of the top `n_targets` other classes (and
  `restarts` runs per target, random starts after the first); returns, per
  example, the first misclassified point within eps found, else x [B, ...]."""
  _check_targets(logits_fn, x, n_targets)
  targets = apgd.target_classes(logits_fn(x), n_targets)
  run = lambda r: _targeted_run(logits_fn, x, y, key, r, targets, eps=eps, norm=norm,
                                steps=steps, restarts=restarts, alpha_max=alpha_max, eta=eta,
                                beta=beta)
  return _first_found(logits_fn, x, y, n_targets * restarts, run)


def fab_untargeted(logits_fn, x, y, key, *, eps, norm: str = 'linf', steps: int = 100,
                   restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05,
                   beta: float = 0.9) -> jax.Array:
  """FAB (untargeted, AutoAttack 'plus'): every iterate steps towards the closest
  linearised boundary; `restarts` runs, random starts of radius eps / 2 after the
  first; returns the first misclassified point within eps found, else x [B, ...]."""
  run = lambda r: _untargeted_run(logits_fn, x, y, key, r, eps=eps, norm=norm, steps=steps,
                                  alpha_max=alpha_max, eta=eta, beta=beta)
  return _first_found(logits_fn, x, y, restarts, run)


# ----------------------------------------------------------------------------
# Stages: one run each (runs are independent; an example keeps its first point
# found), for an evaluation that runs each on the examples not yet broken.
# ----------------------------------------------------------------------------

def _staged(n_runs: int, run_r) -> staged.Staged:
  start = lambda logits_fn, x, y, key: (x, jnp.zeros(x.shape[:1], bool))
  stage = lambda logits_fn, x, y, key, carry, r: _found_step(
      logits_fn, x, y, carry, lambda: run_r(logits_fn, x, y, key, r))
  return staged.Staged(n_runs, start, stage, lambda c: c[0], lambda c: c[1])


def fab_targeted_staged(*, eps, norm='linf', steps=100, n_targets=9, restarts=1,
                        alpha_max=0.1, eta=1.05, beta=0.9) -> staged.Staged:
  """`fab_targeted` as n_targets x restarts stages (targets recomputed at each)."""
  def run_r(logits_fn, x, y, key, r):
    _check_targets(logits_fn, x, n_targets)
    targets = apgd.target_classes(logits_fn(x), n_targets)
    return _targeted_run(logits_fn, x, y, key, r, targets, eps=eps, norm=norm, steps=steps,
                         restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta)
  return _staged(n_targets * restarts, run_r)


def fab_untargeted_staged(*, eps, norm='linf', steps=100, restarts=1, alpha_max=0.1, eta=1.05,
                          beta=0.9) -> staged.Staged:
  """`fab_untargeted` as `restarts` stages."""
  run_r = lambda logits_fn, x, y, key, r: _untargeted_run(
      logits_fn, x, y, key, r, eps=eps, norm=norm, steps=steps, alpha_max=alpha_max, eta=eta,
      beta=beta)
  return _staged(restarts, run_r)
