"""One APGD run (Croce & Hein, ICML 2020): the loop, its checkpoints and step sizes.

Budget-aware PGD without a step-size to tune: the step starts at 2 * eps
(l-inf, l2; eps for l1), is halved at checkpoints p_j (p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in fractions of the
iterations) when the loss oscillated (it rose in at most rho = 75% of the steps
since the last checkpoint) or stalled, and then the iterate restarts from the
best point so far. A momentum of 0.75 mixes the new projected step with the
last move. Each example keeps its best (highest-loss) point and any point that
was misclassified, so more iterations never make the attack weaker.

l1 follows APGD-l1 ("Mind the box", Croce & Hein 2021): a sparse sign step on
the top-k coordinates of |grad| with k adapted at checkpoints, no momentum.

`apgd.py` runs it with restarts and targets (APGD-CE, APGD-DLR, APGD-T).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax.attacks import rng
from generalist_jax.attacks import threat

RHO = 0.75  # oscillation threshold
MOMENTUM = 0.75  # weight of the new step (1 - weight of the last move)


class RunResult(NamedTuple):
  """What an APGD run (or several, combined) found, per example: the point to report
  and what later runs need to merge into it (`_combine`)."""
  x_adv: jax.Array  # misclassified point if one was found, else the best-loss point
  fooled: jax.Array  # (B,) bool: some iterate was misclassified
  best_loss: jax.Array  # (B,) highest loss reached
  x_best: jax.Array  # highest-loss point


def checkpoint_schedule(steps: int, norm: str) -> tuple[np.ndarray, np.ndarray]:
  """When APGD checks its progress: after iteration i where is_checkpoint[i], over the
  last window[i] iterations.

  The windows shrink from 22% of the steps by 3% per check, down to 6% (the p_j of
  the module docstring); l1 uses a fixed window of 4% of the steps.

  Args:
    steps: the run's iterations.
    norm: the threat model ('l1' or another).

  Returns:
    (is_checkpoint bool [steps], window int32 [steps]), numpy (static).
  """
  is_check, window = np.zeros(steps, bool), np.zeros(steps, np.int32)
  if norm == 'l1':
    k, shrink, k_min = max(int(0.04 * steps), 1), 0, 1
  else:
    k, shrink, k_min = max(int(0.22 * steps), 1), max(int(0.03 * steps),
                                                      1), max(int(0.06 * steps), 1)
  since = 0
  for i in range(steps):
    since += 1
    if since == k:
      is_check[i], window[i] = True, k
      k, since = max(k - shrink, k_min), 0
  return is_check, window


def _l0(delta):
  """Per-example count of the non-zero coordinates of delta (its sparsity)."""
  return jnp.sum(threat.flat(delta) != 0, -1).astype(delta.dtype)


def _loss_and_grad_fn(logits_fn, x, y, key, loss_fn: Callable, eot_iter: int) -> Callable:
  """loss_and_grad(delta, i=-1) -> (per-example loss, fooled, grad) at x + delta; with
  eot_iter > 1 the gradient is the mean over draws of the model (keys from `key` and
  the iteration i), the loss and prediction those of the last draw."""
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

  return loss_and_grad


def _initial_state(threat_model, x, key, eps, *, alpha: float, n_features: int, delta_init,
                   loss_and_grad: Callable) -> dict:
  """The loop's carry before iteration 0: a random start (or `delta_init`) projected
  into the ball and box, its loss and gradient, the first step size alpha * eps."""
  if delta_init is None:
    delta = threat_model.project(x, threat_model.init(key, x, eps), eps)
    topk = jnp.full(x.shape[:1], 0.2, x.dtype)
    sparsity_old = jnp.full(x.shape[:1], float(n_features), x.dtype)
  else:
    delta = threat_model.project(x, delta_init, eps)
    topk = _l0(delta) / n_features / 1.5
    sparsity_old = _l0(delta)
  loss, fooled, grad = loss_and_grad(delta)
  return dict(delta=delta, prev=delta, grad=grad, best=delta, grad_best=grad, loss_best=loss,
              adv=delta, fooled=fooled, step=alpha * eps, loss_prev=loss,
              increases=jnp.zeros_like(loss), loss_best_last_check=loss,
              reduced_last_check=jnp.ones(x.shape[:1], bool), topk=topk, sparsity_old=sparsity_old)


def _iteration(threat_model, norm: str, x, eps, *, alpha: float, n_features: int, steps: int,
               loss_and_grad: Callable) -> Callable:
  """body(i, carry) -> carry of the loop: one (momentum, or l1 top-k) step, the best
  and fooling points kept per example, and at the checkpoints the step-size update."""
  pe = lambda v: threat.per_example(v, x)
  is_check, window = map(jnp.asarray, checkpoint_schedule(steps, norm))

  def body(i, s):
    delta = s['delta']
    if norm == 'l1':
      new = threat_model.project(x, threat.l1_topk_step(delta, s['grad'], s['step'], s['topk']),
                                 eps)
    else:
      a = jnp.where(i > 0, MOMENTUM, 1.0)
      z = threat_model.project(x, threat_model.step(delta, s['grad'], s['step']), eps)
      new = threat_model.project(x, delta + a * (z - delta) + (1 - a) * (delta - s['prev']), eps)
    loss, fooled_now, grad = loss_and_grad(new, i)
    improved = loss > s['loss_best']
    s = dict(s, prev=delta, delta=new, grad=grad, adv=jnp.where(pe(fooled_now), new, s['adv']),
             fooled=s['fooled'] | fooled_now, best=jnp.where(pe(improved), new, s['best']),
             grad_best=jnp.where(pe(improved), grad,
                                 s['grad_best']), loss_best=jnp.where(improved, loss,
                                                                      s['loss_best']),
             increases=s['increases'] + (loss > s['loss_prev']), loss_prev=loss)
    checked = _l1_checkpoint(s, x, eps, alpha, n_features) if norm == 'l1' else (_checkpoint(
        s, window[i]))
    return jax.tree.map(lambda c, u: jnp.where(is_check[i], c, u), checked, s)

  return body


def apgd_run(logits_fn, x, y, key, *, eps, norm: str, loss_fn: Callable, steps: int,
             delta_init=None, unroll=1, eot_iter: int = 1) -> RunResult:
  """One APGD run (no restarts) from a random start or from `delta_init`.

  Args:
    logits_fn: the model, `logits_fn(x) -> logits [B, K]`; with eot_iter > 1 a
      randomised one, `logits_fn(x, key=k)`.
    x: clean images [B, H, W, C] in [0, 1].
    y: labels [B] int.
    key: one PRNG key, or one per example (`rng`; not with eot_iter > 1).
    eps: the radius, a scalar or [B], pixel units of [0, 1].
    norm: 'linf', 'l2' or 'l1' (APGD-l1's sparse steps).
    loss_fn: `loss_fn(logits, y) -> [B]`, maximised.
    steps: iterations.
    delta_init: the start, x_adv - x (projected first); None for a random start.
    unroll: the loop's unroll factor (compile time against speed; same result).
    eot_iter: draws of the model averaged per gradient, as the official `eot_iter`;
      the loss and prediction are those of the last draw.

  Returns:
    The `RunResult`.

  Raises:
    ValueError: eot_iter > 1 with one key per example (the model draws take one).
  """
  if eot_iter > 1 and rng.is_batch(key):
    raise ValueError('APGD with eot_iter > 1 draws the model with one key, not one per example.')
  threat_model = threat.NORMS[norm]
  n_features = int(np.prod(x.shape[1:]))
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), x.shape[:1])
  alpha = 1.0 if norm == 'l1' else 2.0
  loss_and_grad = _loss_and_grad_fn(logits_fn, x, y, key, loss_fn, eot_iter)
  state = _initial_state(threat_model, x, key, eps, alpha=alpha, n_features=n_features,
                         delta_init=delta_init, loss_and_grad=loss_and_grad)
  body = _iteration(threat_model, norm, x, eps, alpha=alpha, n_features=n_features, steps=steps,
                    loss_and_grad=loss_and_grad)
  s = jax.lax.fori_loop(0, steps, body, state, unroll=unroll)
  adv = jnp.where(threat.per_example(s['fooled'], x), s['adv'], s['best'])
  return RunResult(x + adv, s['fooled'], s['loss_best'], x + s['best'])


def _restart_from_best(s, where):
  """Moves the iterate (and its gradient) back to the best point where `where` holds."""
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
           step=jnp.clip(step, alpha * eps / 10,
                         alpha * eps), increases=jnp.zeros_like(s['increases']))
  return _restart_from_best(s, sparser)
