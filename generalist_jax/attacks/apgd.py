"""Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and targeted APGD-T.

Each is a number of independent APGD runs (`apgd_loop.apgd_run`, the step-size
schedule that needs no tuning): restarts, and for APGD-T targets x restarts. Run r
takes key fold_in(key, r); each example keeps a point that fooled the model once
one is found, else its highest-loss point. In l1, `large_eps_start` runs APGD-l1's
eps schedule 3 eps -> 2 eps -> eps ("Mind the box", Croce & Hein 2021).

Pure and jittable: restarts and targets are `lax.fori_loop`s, so the compiled
size does not grow with them; `apgd_staged` / `apgd_targeted_staged` cut them into
stages that an evaluation runs on the examples not yet fooled.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from generalist_jax.attacks import losses
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged
from generalist_jax.attacks import threat
from generalist_jax.attacks.apgd_loop import RunResult, apgd_run


def _large_eps_run(logits_fn, x, y, key, *, eps, loss_fn, steps, unroll, eot_iter=1):
  """APGD-l1 with eps 3x, 2x, 1x for 30/30/40% of the steps; each stage starts
  from the previous best point. Only the last stage (the real eps) counts."""
  fractions = (0.3, 0.3)
  stage_steps = [math.ceil(f * steps) for f in fractions]
  stage_steps.append(steps - sum(stage_steps))
  delta = threat.l1_project(x, rng.normal(key, x.shape, x.dtype), 3 * eps)
  result = None
  for scale, n in zip((3.0, 2.0, 1.0), stage_steps):
    result = apgd_run(logits_fn, x, y, key, eps=scale * eps, norm='l1', loss_fn=loss_fn,
                      steps=max(n, 1), delta_init=delta, unroll=unroll, eot_iter=eot_iter)
    delta = result.x_best - x
  return result


def _combine(total: RunResult, new: RunResult) -> RunResult:
  """Keeps a fooling point once found; otherwise the higher-loss point."""
  higher = new.best_loss > total.best_loss
  take_new = ~total.fooled & (new.fooled | higher)
  pe = lambda m: threat.per_example(m, total.x_adv)
  return RunResult(jnp.where(pe(take_new), new.x_adv, total.x_adv), total.fooled | new.fooled,
                   jnp.where(higher, new.best_loss, total.best_loss),
                   jnp.where(pe(higher), new.x_best, total.x_best))


def _repeat(n: int, run: Callable[[int], RunResult]) -> RunResult:
  """run(0), run(1), ... run(n - 1) combined (`_combine`); r is traced after run 0."""
  first = run(0)
  if n == 1:
    return first
  return jax.lax.fori_loop(1, n, lambda r, total: _combine(total, run(r)), first)


def _run_r(logits_fn, x, y, key, r, *, eps, norm, loss_fn, steps, large_eps_start, unroll,
           eot_iter=1) -> RunResult:
  """Run r (restart, or target x restart) with key fold_in(key, r); r may be traced."""
  k = rng.fold_in(key, r)
  if large_eps_start:
    assert norm == 'l1', 'large_eps_start is the APGD-l1 schedule'
    return _large_eps_run(logits_fn, x, y, k, eps=eps, loss_fn=loss_fn, steps=steps, unroll=unroll,
                          eot_iter=eot_iter)
  return apgd_run(logits_fn, x, y, k, eps=eps, norm=norm, loss_fn=loss_fn, steps=steps,
                  unroll=unroll, eot_iter=eot_iter)


def apgd_result(logits_fn, x, y, key, *, eps, norm='linf', loss='ce', steps=100, restarts=1,
                large_eps_start=False, unroll=1, eot_iter=1) -> RunResult:
  """`apgd` with what its runs found besides the point: which examples were fooled,
  the best loss and the best-loss point.

  Args:
    logits_fn, x, y, key, eps, norm, loss, steps, restarts, large_eps_start, unroll,
      eot_iter: as `apgd`.

  Returns:
    The `RunResult` of the restarts combined: a fooling point once one is found,
    else the higher-loss one.

  Raises:
    KeyError: an unknown loss. ValueError: as `apgd`.
  """
  loss_fn = losses.LOSSES[loss]
  return _repeat(
      restarts,
      lambda r: _run_r(logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=loss_fn, steps=steps,
                       large_eps_start=large_eps_start, unroll=unroll, eot_iter=eot_iter))


def apgd(logits_fn, x, y, key, *, eps, norm: str = 'linf', loss: str = 'ce', steps: int = 100,
         restarts: int = 1, large_eps_start: bool = False, unroll=1,
         eot_iter: int = 1) -> jax.Array:
  """APGD-CE (loss 'ce') or APGD-DLR (loss 'dlr'): the untargeted attack of AutoAttack.

  Each restart r runs with key fold_in(key, r); each example keeps a point that
  fooled the model once one is found, else its highest-loss point. Source:
  fra31/auto-attack `autopgd_base.py`.

  Args:
    logits_fn: the model, `logits_fn(x) -> logits [B, K]`.
    x: clean images [B, H, W, C], float in [0, 1].
    y: labels [B] int.
    key: one PRNG key, or one per example (`rng`).
    eps: the radius, pixel units of [0, 1] (e.g. 8/255 l-inf, 0.5 l2, 12 l1).
    norm: 'linf', 'l2' or 'l1'.
    loss: 'ce', 'dlr' or 'margin' (`losses.LOSSES`).
    steps: iterations per restart.
    restarts: independent runs.
    large_eps_start: APGD-l1's eps schedule 3 eps -> 2 eps -> eps (l1 only).
    unroll: the loop's unroll factor (same result).
    eot_iter: > 1 averages each gradient over that many draws of a randomised
      model, `logits_fn(x, key=k)` (one key, not one per example).

  Returns:
    x_adv [B, H, W, C], inside the eps-ball around x and [0, 1].

  Raises:
    ValueError: 'dlr' with fewer than 3 classes; eot_iter > 1 with per-example keys.
    AssertionError: large_eps_start outside l1.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from generalist_jax.attacks import apgd
    >>> w = jax.random.normal(jax.random.PRNGKey(1), (4 * 4 * 3, 10))
    >>> logits_fn = lambda x: x.reshape(len(x), -1) @ w        # a linear model
    >>> x = jax.random.uniform(jax.random.PRNGKey(2), (8, 4, 4, 3))
    >>> y = jnp.argmax(logits_fn(x), -1)                        # all correct when clean
    >>> x_adv = apgd.apgd(logits_fn, x, y, jax.random.PRNGKey(0), eps=8 / 255, steps=20)
    >>> bool(jnp.all(jnp.abs(x_adv - x) <= 8 / 255 + 1e-6)), x_adv.shape
    (True, (8, 4, 4, 3))
  """
  return apgd_result(logits_fn, x, y, key, eps=eps, norm=norm, loss=loss, steps=steps,
                     restarts=restarts, large_eps_start=large_eps_start, unroll=unroll,
                     eot_iter=eot_iter).x_adv


def target_classes(logits: jax.Array, n_targets: int) -> jax.Array:
  """The classes APGD-T aims at: the highest-scoring ones after the top one.

  Args:
    logits: [B, K] on the clean input.
    n_targets: how many, at most K - 1.

  Returns:
    [n_targets, B] int: row t holds each example's (t + 2)-th highest class.
  """
  order = jnp.argsort(logits, axis=-1)
  return jnp.stack([order[:, -(t + 2)] for t in range(n_targets)])


def _targeted_loss(logits_fn, x, n_targets: int, restarts: int) -> Callable:
  """r -> the targeted DLR loss towards the (r // restarts)-th target (r may be traced).
  Raises ValueError with < 4 classes or too many targets."""
  num_classes = logits_fn(x[:1]).shape[-1]
  if num_classes < 4 or n_targets > num_classes - 1:
    raise ValueError(f'APGD-T needs >= 4 classes and n_targets <= {num_classes - 1}; '
                     f'got {num_classes} classes, n_targets={n_targets}.')
  targets = target_classes(logits_fn(x), n_targets)
  return lambda r: (lambda logits, labels: losses.targeted_dlr(logits, labels, targets[r // restarts
                                                                                      ]))


def apgd_targeted_result(logits_fn, x, y, key, *, eps, norm='linf', steps=100, n_targets=9,
                         restarts=1, large_eps_start=False, unroll=1) -> RunResult:
  """`apgd_targeted` with what its runs found besides the point (as `apgd_result`).

  Args:
    logits_fn, x, y, key, eps, norm, steps, n_targets, restarts, large_eps_start,
      unroll: as `apgd_targeted`.

  Returns:
    The `RunResult` of the n_targets x restarts runs combined.

  Raises:
    ValueError: fewer than 4 classes, or n_targets > K - 1.
  """
  loss_for = _targeted_loss(logits_fn, x, n_targets, restarts)
  return _repeat(
      n_targets * restarts,
      lambda r: _run_r(logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=loss_for(r), steps=
                       steps, large_eps_start=large_eps_start, unroll=unroll))


def apgd_targeted(logits_fn, x, y, key, *, eps, norm: str = 'linf', steps: int = 100,
                  n_targets: int = 9, restarts: int = 1, large_eps_start: bool = False,
                  unroll=1) -> jax.Array:
  """APGD-T: APGD on the targeted DLR loss towards each of the top `n_targets` other
  classes in turn (`target_classes` of the clean logits), `restarts` runs each.

  Args:
    logits_fn, x, y, key, eps, norm, steps, large_eps_start, unroll: as `apgd`.
    n_targets: target classes, at most K - 1 (9 in AutoAttack 'standard', 5 for l1).
    restarts: runs per target; run r aims at target r // restarts.

  Returns:
    x_adv [B, H, W, C], inside the eps-ball around x and [0, 1].

  Raises:
    ValueError: fewer than 4 classes, or n_targets > K - 1.
  """
  return apgd_targeted_result(logits_fn, x, y, key, eps=eps, norm=norm, steps=steps,
                              n_targets=n_targets, restarts=restarts,
                              large_eps_start=large_eps_start, unroll=unroll).x_adv


# ----------------------------------------------------------------------------
# Stages: one run (restart, or target x restart) each. Runs are independent and a
# fooled example keeps its point (`_combine`), so an evaluation runs each stage
# only on the examples not yet fooled (`staged.Staged`).
# ----------------------------------------------------------------------------


def _start(logits_fn, x, y, key) -> RunResult:
  """The carry before the first stage: nothing fooled, loss -inf, x as the point."""
  del logits_fn, y, key
  return RunResult(x, jnp.zeros(x.shape[:1], bool), jnp.full(x.shape[:1], -jnp.inf, x.dtype), x)


def _stage_of(run_r: Callable) -> Callable:
  """stage(logits_fn, x, y, key, total, r) -> total after run r: run 0's result (as
  `_repeat`), later ones `_combine`d in."""

  def stage(logits_fn, x, y, key, total, r):
    new = run_r(logits_fn, x, y, key, r)
    return jax.tree.map(lambda a, b: jnp.where(r == 0, a, b), new, _combine(total, new))

  return stage


def apgd_staged(*, eps, norm='linf', loss='ce', steps=100, restarts=1, large_eps_start=False,
                unroll=1, eot_iter=1) -> staged.Staged:
  """`apgd` cut into its restarts, one stage each (`staged.Staged`).

  Args:
    eps, norm, loss, steps, restarts, large_eps_start, unroll, eot_iter: as `apgd`.

  Returns:
    The staged attack: running every stage on every example gives `apgd`'s x_adv;
    an example is done once fooled.
  """
  run_r = lambda logits_fn, x, y, key, r: _run_r(
      logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=losses.LOSSES[
          loss], steps=steps, large_eps_start=large_eps_start, unroll=unroll, eot_iter=eot_iter)
  return staged.Staged(restarts, _start, _stage_of(run_r), lambda t: t.x_adv, lambda t: t.fooled)


def apgd_targeted_staged(*, eps, norm='linf', steps=100, n_targets=9, restarts=1,
                         large_eps_start=False, unroll=1) -> staged.Staged:
  """`apgd_targeted` cut into its n_targets x restarts runs, one stage each (the
  targets are recomputed from the clean logits at each).

  Args:
    eps, norm, steps, n_targets, restarts, large_eps_start, unroll: as `apgd_targeted`.

  Returns:
    The staged attack (as `apgd_staged`).
  """
  run_r = lambda logits_fn, x, y, key, r: _run_r(
      logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=_targeted_loss(
          logits_fn, x, n_targets, restarts)
      (r), steps=steps, large_eps_start=large_eps_start, unroll=unroll)
  return staged.Staged(n_targets * restarts, _start, _stage_of(run_r), lambda t: t.x_adv,
                       lambda t: t.fooled)
