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
from generalist_jax.attacks import hyperplane
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged
from generalist_jax.attacks import threat

_FLOAT_MAX = 1e10  # "no adversarial point yet" (the reference's res2 init)

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
  """The boundary FAB-T steps towards: the target's against the true class's logit.

  Args:
    logits_fn: the model; y: labels [B]; target: target classes [B].

  Returns:
    x1 -> (f_t - f_y [B], its input gradient [B, D]): one backward pass.
  """

  def boundary(x1):
    logits, vjp = jax.vjp(logits_fn, x1)
    onehot = jax.nn.one_hot(target, logits.shape[-1]) - jax.nn.one_hot(y, logits.shape[-1])
    (dg,) = vjp(onehot.astype(logits.dtype))
    return jnp.sum(logits * onehot, -1), dg.reshape(x1.shape[0], -1)

  return boundary


_DUAL = {'linf': 'l1', 'l2': 'l2', 'l1': 'linf'}


def closest_boundary(logits_fn, y, norm: str):
  """The boundary untargeted FAB steps towards: that of the class k whose linearised
  boundary is closest in `norm` (|f_k - f_y| / ||grad||_dual, the true class
  excluded), chosen anew at every iterate. The full Jacobian costs one backward pass
  per class (fra31/auto-attack fab_base.py `attack_single_run`, targeted=False).

  Args:
    logits_fn: the model; y: labels [B]; norm: the threat model.

  Returns:
    x1 -> (f_k - f_y [B], its input gradient [B, D]).
  """

  def boundary(x1):
    logits, vjp = jax.vjp(logits_fn, x1)
    n, k = logits.shape
    grads = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, (n, k)))[0])(jnp.eye(k, dtype=logits.dtype))
    grads = jnp.moveaxis(grads.reshape(k, n, -1), 0, 1)  # [B, K, D]
    true = jax.nn.one_hot(y, k, dtype=bool)
    df = logits - jnp.take_along_axis(logits, y[:, None], -1)
    dg = grads - jnp.take_along_axis(grads, y[:, None, None], 1)
    dual = threat.lp_norm(dg.reshape(n * k, -1), _DUAL[norm]).reshape(n, k)
    dist = jnp.where(true, jnp.inf, jnp.abs(df) / (1e-12 + dual))
    closest = jnp.argmin(dist, -1)
    return (jnp.take_along_axis(df, closest[:, None],
                                -1)[:, 0], jnp.take_along_axis(dg, closest[:, None, None], 1)[:, 0])

  return boundary


def fab_run(logits_fn, x, y, key, boundary, *, eps, norm: str, steps: int = 100,
            alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, random_start=False):
  """One FAB run: `steps` iterations towards a linearised boundary.

  Args:
    logits_fn, x, y, key, norm, steps, alpha_max, eta, beta: as `fab_targeted`.
    boundary: x1 -> (df [B], w [B, D]) (`targeted_boundary`, `closest_boundary`).
    eps: the random start's radius is eps / 2.
    random_start: start at a random point (may be traced), else at x.

  Returns:
    (x_best, norm_best): the smallest misclassified point found and its norm
    (x and 1e10 where none was found).
  """
  shape = x.shape
  n = x.shape[0]
  x0 = x.reshape(n, -1)
  start = jnp.where(random_start, _random_start(key, x, norm, eps), x)

  def body(_, carry):
    x1, x_best, norm_best = carry
    df, w = boundary(x1)
    x1f = x1.reshape(n, -1)
    b = jnp.sum(w * x1f, -1) - df  # the linearised boundary: <w, z> = b
    d1 = hyperplane.project_on_hyperplane(x1f, w, b, norm)
    d2 = hyperplane.project_on_hyperplane(x0, w, b, norm)
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
  """Raises ValueError when there are fewer than n_targets other classes."""
  num_classes = logits_fn(x[:1]).shape[-1]
  if n_targets > num_classes - 1:
    raise ValueError(f'FAB-T needs n_targets <= {num_classes - 1} for {num_classes} classes; '
                     f'got n_targets={n_targets}.')


def _targeted_run(logits_fn, x, y, key, r, targets, *, eps, norm, steps, restarts, alpha_max, eta,
                  beta):
  """Run r (may be traced): towards targets[r // restarts], a random start after a
  target's first run; (x_best, found within eps)."""
  x_best, norm_best = fab_run(logits_fn, x, y, rng.fold_in(key, r),
                              targeted_boundary(logits_fn, y, targets[r // restarts]), eps=eps,
                              norm=norm, steps=steps, alpha_max=alpha_max, eta=eta, beta=beta,
                              random_start=(r % restarts) > 0)
  return x_best, norm_best <= eps


def _untargeted_run(logits_fn, x, y, key, r, *, eps, norm, steps, alpha_max, eta, beta):
  """Run r (may be traced), a random start after the first; (x_best, found within eps)."""
  x_best, norm_best = fab_run(logits_fn, x, y, rng.fold_in(key, r),
                              closest_boundary(logits_fn, y, norm), eps=eps, norm=norm, steps=steps,
                              alpha_max=alpha_max, eta=eta, beta=beta, random_start=r > 0)
  return x_best, norm_best <= eps


def fab_targeted(logits_fn, x, y, key, *, eps, norm: str = 'linf', steps: int = 100,
                 n_targets: int = 9, restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05,
                 beta: float = 0.9) -> jax.Array:
  """FAB-T: the runs towards each of the top `n_targets` other classes in turn.

  Args:
    logits_fn, x, y, key: the model `logits_fn(x) -> logits [B, K]`, clean images
      [B, H, W, C] in [0, 1], labels [B] int, one key or one per example.
    eps, norm, steps: the radius (pixel units of [0, 1]), 'linf' / 'l2' / 'l1',
      iterations per run.
    n_targets: target classes (`apgd.target_classes`), at most K - 1.
    restarts: runs per target, random starts after the first.
    alpha_max, eta, beta: the bias towards x's projection, the overshoot, the step
      back after a misclassified iterate (module docstring).

  Returns:
    x_adv [B, H, W, C]: per example the first misclassified point within eps
    found, else x.

  Raises:
    ValueError: n_targets > K - 1.
  """
  _check_targets(logits_fn, x, n_targets)
  targets = apgd.target_classes(logits_fn(x), n_targets)
  run = lambda r: _targeted_run(logits_fn, x, y, key, r, targets, eps=eps, norm=norm, steps=steps,
                                restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta)
  return _first_found(logits_fn, x, y, n_targets * restarts, run)


def fab_untargeted(logits_fn, x, y, key, *, eps, norm: str = 'linf', steps: int = 100,
                   restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05,
                   beta: float = 0.9) -> jax.Array:
  """FAB (untargeted, AutoAttack 'plus'): every iterate steps towards the closest
  linearised boundary (`closest_boundary`).

  Args:
    logits_fn, x, y, key, eps, norm, steps, alpha_max, eta, beta: as `fab_targeted`.
    restarts: runs, random starts of radius eps / 2 after the first.

  Returns:
    x_adv [B, H, W, C]: per example the first misclassified point within eps
    found, else x.
  """
  run = lambda r: _untargeted_run(logits_fn, x, y, key, r, eps=eps, norm=norm, steps=steps,
                                  alpha_max=alpha_max, eta=eta, beta=beta)
  return _first_found(logits_fn, x, y, restarts, run)


# ----------------------------------------------------------------------------
# Stages: one run each (runs are independent; an example keeps its first point
# found), for an evaluation that runs each on the examples not yet broken.
# ----------------------------------------------------------------------------


def _staged(n_runs: int, run_r) -> staged.Staged:
  """n_runs stages, run r each; the carry is (x_adv, found), done once found."""
  start = lambda logits_fn, x, y, key: (x, jnp.zeros(x.shape[:1], bool))
  stage = lambda logits_fn, x, y, key, carry, r: _found_step(logits_fn, x, y, carry, lambda: run_r(
      logits_fn, x, y, key, r))
  return staged.Staged(n_runs, start, stage, lambda c: c[0], lambda c: c[1])


def fab_targeted_staged(*, eps, norm='linf', steps=100, n_targets=9, restarts=1, alpha_max=0.1,
                        eta=1.05, beta=0.9) -> staged.Staged:
  """`fab_targeted` cut into its n_targets x restarts runs (targets recomputed at each).

  Args:
    eps, norm, steps, n_targets, restarts, alpha_max, eta, beta: as `fab_targeted`.

  Returns:
    The `staged.Staged` attack; an example is done once a point is found.
  """

  def run_r(logits_fn, x, y, key, r):
    _check_targets(logits_fn, x, n_targets)
    targets = apgd.target_classes(logits_fn(x), n_targets)
    return _targeted_run(logits_fn, x, y, key, r, targets, eps=eps, norm=norm, steps=steps,
                         restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta)

  return _staged(n_targets * restarts, run_r)


def fab_untargeted_staged(*, eps, norm='linf', steps=100, restarts=1, alpha_max=0.1, eta=1.05,
                          beta=0.9) -> staged.Staged:
  """`fab_untargeted` cut into its runs, one stage each.

  Args:
    eps, norm, steps, restarts, alpha_max, eta, beta: as `fab_untargeted`.

  Returns:
    The `staged.Staged` attack; an example is done once a point is found.
  """
  run_r = lambda logits_fn, x, y, key, r: _untargeted_run(
      logits_fn, x, y, key, r, eps=eps, norm=norm, steps=steps, alpha_max=alpha_max, eta=eta, beta=
      beta)
  return _staged(restarts, run_r)
