"""Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and targeted APGD-T.

Budget-aware PGD without a step-size to tune: the step starts at 2 * eps
(l-inf, l2; eps for l1), is halved at checkpoints p_j (p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in fractions of the
iterations) when the loss oscillated (it rose in at most rho = 75% of the steps
since the last checkpoint) or stalled, and then the iterate restarts from the
best point so far. A momentum of 0.75 mixes the new projected step with the
last move. Each example keeps its best (highest-loss) point and any point that
was misclassified, so more iterations never make the attack weaker.

l1 follows APGD-l1 ("Mind the box", Croce & Hein 2021): a sparse sign step on
the top-k coordinates of |grad| with k adapted at checkpoints, no momentum, and
optionally the eps schedule 3 eps -> 2 eps -> eps (`large_eps_start`).

Pure and jittable: restarts and targets are `lax.fori_loop`s, so the compiled
size does not grow with them; `apgd_staged` / `apgd_targeted_staged` cut them into
stages that an evaluation runs on the examples not yet fooled.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax.attacks import losses
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged
from generalist_jax.attacks import threat

RHO = 0.75        # oscillation threshold
MOMENTUM = 0.75   # weight of the new step (1 - weight of the last move)


class RunResult(NamedTuple):
  x_adv: jax.Array       # misclassified point if one was found, else the best-loss point
  fooled: jax.Array      # (B,) bool: some iterate was misclassified
  best_loss: jax.Array   # (B,) highest loss reached
  x_best: jax.Array      # highest-loss point


def checkpoint_schedule(steps: int, norm: str) -> tuple[np.ndarray, np.ndarray]:
  """Static (is_checkpoint[i], window[i]): after iteration i, check the window of
  the last window[i] iterations. l1 uses a fixed window of 4% of the steps."""
  is_check, window = np.zeros(steps, bool), np.zeros(steps, np.int32)
  if norm == 'l1':
    k, shrink, k_min = max(int(0.04 * steps), 1), 0, 1
  else:
    k, shrink, k_min = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(
        int(0.06 * steps), 1)
  since = 0
  for i in range(steps):
    since += 1
    if since == k:
      is_check[i], window[i] = True, k
      k, since = max(k - shrink, k_min), 0
  return is_check, window


def _l0(delta):
  return jnp.sum(threat.flat(delta) != 0, -1).astype(delta.dtype)


def apgd_run(logits_fn, x, y, key, *, eps, norm: str, loss_fn: Callable, steps: int,
             delta_init=None, unroll=1, eot_iter: int = 1) -> RunResult:
  """One APGD run from a random start (or `delta_init`); `loss_fn(logits, y)` per example.

  eot_iter > 1 (randomised models, AutoAttack's 'rand'): the gradient is the mean
  over `eot_iter` draws of the model, `logits_fn(x, key=k)`, as the official
  `eot_iter`; the loss and prediction are those of the last draw. `key`: one key
  or one per example (`rng`; not with eot_iter > 1, whose model draws take one)."""
  if eot_iter > 1 and rng.is_batch(key):
    raise ValueError('APGD with eot_iter > 1 draws the model with one key, not one per example.')
  threat_model = threat.NORMS[norm]
  pe = lambda v: threat.per_example(v, x)
  n_features = int(np.prod(x.shape[1:]))
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), x.shape[:1])
  alpha = 1.0 if norm == 'l1' else 2.0

  eot_key = rng.fold_in(key, 0xE07)

  def one_draw(delta, draw_key):
    def total(d):
      logits = logits_fn(x + d) if draw_key is None else logits_fn(x + d, key=draw_key)
      per_example = loss_fn(logits, y)
      return per_example.sum(), (per_example, logits)
    (_, (per_example, logits)), grad = jax.value_and_grad(total, has_aux=True)(delta)
    return per_example, logits, grad

  def loss_and_grad(delta, i=-1):
    if eot_iter == 1:
      per_example, logits, grad = one_draw(delta, None)
    else:
      def draw(total_grad, k):
        per_example, logits, grad = one_draw(delta, k)
        return total_grad + grad, (per_example, logits)
      keys = jax.random.split(jax.random.fold_in(eot_key, i + 1), eot_iter)
      grad, (per_example, logits) = jax.lax.scan(draw, jnp.zeros_like(delta), keys)
      grad, per_example, logits = grad / eot_iter, per_example[-1], logits[-1]
    return per_example, jnp.argmax(logits, -1) != y, grad

  if delta_init is None:
    delta = threat_model.project(x, threat_model.init(key, x, eps), eps)
    topk = jnp.full(x.shape[:1], 0.2, x.dtype)
    sparsity_old = jnp.full(x.shape[:1], float(n_features), x.dtype)
  else:
    delta = threat_model.project(x, delta_init, eps)
    topk = _l0(delta) / n_features / 1.5
    sparsity_old = _l0(delta)
  loss, fooled, grad = loss_and_grad(delta)
  is_check, window = map(jnp.asarray, checkpoint_schedule(steps, norm))

  state = dict(
      delta=delta, prev=delta, grad=grad, best=delta, grad_best=grad, loss_best=loss,
      adv=delta, fooled=fooled, step=alpha * eps, loss_prev=loss,
      increases=jnp.zeros_like(loss), loss_best_last_check=loss,
      reduced_last_check=jnp.ones(x.shape[:1], bool), topk=topk, sparsity_old=sparsity_old)

  def body(i, s):
    delta = s['delta']
    if norm == 'l1':
      new = threat_model.project(x, threat.l1_topk_step(delta, s['grad'], s['step'], s['topk']), eps)
    else:
      a = jnp.where(i > 0, MOMENTUM, 1.0)
      z = threat_model.project(x, threat_model.step(delta, s['grad'], s['step']), eps)
      new = threat_model.project(x, delta + a * (z - delta) + (1 - a) * (delta - s['prev']), eps)
    loss, fooled_now, grad = loss_and_grad(new, i)
    improved = loss > s['loss_best']
    s = dict(s, prev=delta, delta=new, grad=grad,
             adv=jnp.where(pe(fooled_now), new, s['adv']), fooled=s['fooled'] | fooled_now,
             best=jnp.where(pe(improved), new, s['best']),
             grad_best=jnp.where(pe(improved), grad, s['grad_best']),
             loss_best=jnp.where(improved, loss, s['loss_best']),
             increases=s['increases'] + (loss > s['loss_prev']), loss_prev=loss)
    checked = _l1_checkpoint(s, x, eps, alpha, n_features) if norm == 'l1' else (
        _checkpoint(s, window[i]))
    return jax.tree.map(lambda c, u: jnp.where(is_check[i], c, u), checked, s)

  s = jax.lax.fori_loop(0, steps, body, state, unroll=unroll)
  adv = jnp.where(pe(s['fooled']), s['adv'], s['best'])
  return RunResult(x + adv, s['fooled'], s['loss_best'], x + s['best'])


def _restart_from_best(s, where):
  w = threat.per_example(where, s['delta'])
  return dict(s, delta=jnp.where(w, s['best'], s['delta']),
              grad=jnp.where(w, s['grad_best'], s['grad']))


def _checkpoint(s, window):
  """Halve the step where the loss oscillated or the best loss stalled."""
  oscillated = s['increases'] <= window * RHO
  stalled = ~s['reduced_last_check'] & (s['loss_best_last_check'] >= s['loss_best'])
  reduce = oscillated | stalled
  s = dict(s, step=jnp.where(reduce, s['step'] / 2, s['step']), reduced_last_check=reduce,
           loss_best_last_check=s['loss_best'], increases=jnp.zeros_like(s['increases']))
  return _restart_from_best(s, reduce)


def _l1_checkpoint(s, x, eps, alpha, n_features):
  """APGD-l1: shrink k to the sparsity of the best point; reset the step where
  the best point got sparser, else divide it by 1.5 (floor: alpha * eps / 10)."""
  sparsity = _l0(s['best'])
  sparser = sparsity / s['sparsity_old'] < 0.95
  step = jnp.where(sparser, alpha * eps, s['step'] / 1.5)
  s = dict(s, topk=sparsity / n_features / 1.5, sparsity_old=sparsity,
           step=jnp.clip(step, alpha * eps / 10, alpha * eps),
           increases=jnp.zeros_like(s['increases']))
  return _restart_from_best(s, sparser)


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
    return _large_eps_run(logits_fn, x, y, k, eps=eps, loss_fn=loss_fn, steps=steps,
                          unroll=unroll, eot_iter=eot_iter)
  return apgd_run(logits_fn, x, y, k, eps=eps, norm=norm, loss_fn=loss_fn, steps=steps,
                  unroll=unroll, eot_iter=eot_iter)


def apgd_result(logits_fn, x, y, key, *, eps, norm='linf', loss='ce', steps=100,
                restarts=1, large_eps_start=False, unroll=1, eot_iter=1) -> RunResult:
  loss_fn = losses.LOSSES[loss]
  return _repeat(restarts, lambda r: _run_r(
      logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=loss_fn, steps=steps,
      large_eps_start=large_eps_start, unroll=unroll, eot_iter=eot_iter))


def apgd(logits_fn, x, y, key, *, eps, norm: str = 'linf', loss: str = 'ce', steps: int = 100,
         restarts: int = 1, large_eps_start: bool = False, unroll=1,
         eot_iter: int = 1) -> jax.Array:
  """APGD on 'ce' (APGD-CE) or 'dlr' (APGD-DLR); returns x_adv [B, ...].

  x [B, H, W, C] in [0, 1], y [B]; eps in pixel units; `large_eps_start` is
  APGD-l1's 3 eps -> eps schedule (l1 only); eot_iter > 1 averages gradients over
  draws of a randomised `logits_fn(x, key=k)`. Source: fra31/auto-attack
  `autopgd_base.py`."""
  return apgd_result(logits_fn, x, y, key, eps=eps, norm=norm, loss=loss, steps=steps,
                     restarts=restarts, large_eps_start=large_eps_start, unroll=unroll,
                     eot_iter=eot_iter).x_adv


def target_classes(logits: jax.Array, n_targets: int) -> jax.Array:
  """(n_targets, B): the 2nd, 3rd, ... highest-scoring classes on the clean input."""
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
  return lambda r: (lambda logits, labels: losses.targeted_dlr(logits, labels,
                                                               targets[r // restarts]))


def apgd_targeted_result(logits_fn, x, y, key, *, eps, norm='linf', steps=100,
                         n_targets=9, restarts=1, large_eps_start=False,
                         unroll=1) -> RunResult:
  """APGD-T: APGD on the targeted DLR loss towards each of the top `n_targets`
  other classes in turn (1 restart each in AutoAttack 'standard')."""
  loss_for = _targeted_loss(logits_fn, x, n_targets, restarts)
  return _repeat(n_targets * restarts, lambda r: _run_r(
      logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=loss_for(r), steps=steps,
      large_eps_start=large_eps_start, unroll=unroll))


def apgd_targeted(logits_fn, x, y, key, *, eps, norm: str = 'linf', steps: int = 100,
                  n_targets: int = 9, restarts: int = 1, large_eps_start: bool = False,
                  unroll=1) -> jax.Array:
  """APGD-T (targeted DLR towards each of the top `n_targets` other classes);
  returns x_adv [B, ...]. Raises ValueError with < 4 classes or too many targets."""
  return apgd_targeted_result(logits_fn, x, y, key, eps=eps, norm=norm, steps=steps,
                              n_targets=n_targets, restarts=restarts,
                              large_eps_start=large_eps_start, unroll=unroll).x_adv


# ----------------------------------------------------------------------------
# Stages: one run (restart, or target x restart) each. Runs are independent and a
# fooled example keeps its point (`_combine`), so an evaluation runs each stage
# only on the examples not yet fooled (`staged.Staged`).
# ----------------------------------------------------------------------------

def _start(logits_fn, x, y, key) -> RunResult:
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
  """`apgd` as `restarts` stages."""
  run_r = lambda logits_fn, x, y, key, r: _run_r(
      logits_fn, x, y, key, r, eps=eps, norm=norm, loss_fn=losses.LOSSES[loss], steps=steps,
      large_eps_start=large_eps_start, unroll=unroll, eot_iter=eot_iter)
  return staged.Staged(restarts, _start, _stage_of(run_r), lambda t: t.x_adv,
                       lambda t: t.fooled)


def apgd_targeted_staged(*, eps, norm='linf', steps=100, n_targets=9, restarts=1,
                         large_eps_start=False, unroll=1) -> staged.Staged:
  """`apgd_targeted` as n_targets x restarts stages (the targets are recomputed from
  the clean logits at each)."""
  run_r = lambda logits_fn, x, y, key, r: _run_r(
      logits_fn, x, y, key, r, eps=eps, norm=norm,
      loss_fn=_targeted_loss(logits_fn, x, n_targets, restarts)(r), steps=steps,
      large_eps_start=large_eps_start, unroll=unroll)
  return staged.Staged(n_targets * restarts, _start, _stage_of(run_r), lambda t: t.x_adv,
                       lambda t: t.fooled)
