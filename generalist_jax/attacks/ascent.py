"""The one ascent loop of every gradient attack, and PGD, FGSM and MIM on it.

An attack maximises a per-example loss of `logits_fn(x + delta)` over delta in a
threat model (`threat.NORMS`): each iteration takes the input gradient, the
norm's steepest-ascent step and the exact projection onto the eps-ball and the
[0, 1] box. The loop is a `lax.fori_loop` inside the caller's jit, unrolled where
that measures faster (`resolve_unroll`).

`logits_fn(x) -> logits` is the model with its variables bound and BatchNorm in
eval mode, so attacks never move running statistics. Shapes: x [B, H, W, C] in
[0, 1], y [B] int; eps and step sizes in pixel units.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from generalist_jax.attacks import losses
from generalist_jax.attacks import rng
from generalist_jax.attacks import threat

LogitsFn = Callable[[jax.Array], jax.Array]


def resolve_unroll(unroll) -> int | bool:
  """The unroll factor of an attack loop.

  'auto' unrolls fully on CPU, where a rolled loop measured slower for training
  steps (experiments/benchmarks/README.md, History); elsewhere the loop stays
  rolled. Evaluation attacks pass unroll=1 (their compile time matters more).

  Args:
    unroll: 'auto', or what `lax.fori_loop` takes (an int, or a bool).

  Returns:
    `lax.fori_loop`'s unroll: True (fully) or False for 'auto', else `unroll`.
  """
  if unroll == 'auto':
    return jax.default_backend() == 'cpu'
  return unroll


def iterate(body: Callable, init, steps: int, unroll='auto'):
  """A loop inside the caller's jit.

  Args:
    body: carry -> carry.
    init: the first carry (any pytree).
    steps: how many times to apply body.
    unroll: as `resolve_unroll`.

  Returns:
    body applied `steps` times to init.
  """
  return jax.lax.fori_loop(0, steps, lambda _, carry: body(carry), init,
                           unroll=resolve_unroll(unroll))


def input_gradient(per_example_loss: Callable, x: jax.Array) -> Callable:
  """The input gradient of a per-example loss: each example's gradient is its own
  loss's (the sum couples nothing).

  Args:
    per_example_loss: inputs [B, ...] -> [B].
    x: the clean batch.

  Returns:
    delta -> d/d delta of sum_b per_example_loss(x + delta)_b, shaped as delta.
  """
  return jax.grad(lambda delta: per_example_loss(x + delta).sum())


def projected_step(norm: threat.Norm, x: jax.Array, eps, step_size) -> Callable:
  """One step of a threat model, projected.

  Args:
    norm: the `threat.Norm`.
    x: the clean batch [B, ...] in [0, 1].
    eps: the radius, a scalar or [B].
    step_size: a scalar or [B].

  Returns:
    (delta, direction) -> the steepest step along `direction`, projected back onto
    the eps-ball and the [0, 1] box around x.
  """
  return lambda delta, direction: norm.project(x, norm.step(delta, direction, step_size), eps)


def ascend(per_example_loss: Callable, x: jax.Array, delta: jax.Array, *, norm: str, eps, step_size,
           steps: int, unroll='auto') -> jax.Array:
  """Projected steepest ascent of a per-example loss.

  Args:
    per_example_loss: inputs [B, ...] -> [B], maximised.
    x: the clean batch [B, H, W, C] in [0, 1].
    delta: the start.
    norm: 'linf', 'l2' or 'l1'.
    eps: the radius, a scalar or [B].
    step_size: a scalar or [B].
    steps: iterations.
    unroll: as `resolve_unroll`.

  Returns:
    delta after `steps` steps, in the eps-ball and with x + delta in [0, 1].
  """
  grad = input_gradient(per_example_loss, x)
  step = projected_step(threat.NORMS[norm], x, eps, step_size)
  return iterate(lambda d: step(d, grad(d)), delta, steps, unroll)


def start_point(norm: threat.Norm, x, key, eps, random: bool = True) -> jax.Array:
  """Where an attack starts.

  Args:
    norm: the `threat.Norm`.
    x: the clean batch [B, H, W, C] in [0, 1].
    key: one key or one per example (`rng`).
    eps: the radius, a scalar or [B].
    random: draw a random start; False starts at x.

  Returns:
    delta of a random point of the ball ∩ box, or zeros.
  """
  if random:
    return norm.project(x, norm.init(key, x, eps), eps)
  return jnp.zeros_like(x)


def _keep_better(best, new):
  """Per example, the restart to keep: a misclassifying one over any other (a point
  is robust only if no restart fools it), then the higher loss (as the reference
  `attack_pgd`). best, new: (delta, loss [B], fooled [B])."""
  (b_delta, b_loss, b_fooled), (n_delta, n_loss, n_fooled) = best, new
  take = ~b_fooled & (n_fooled | (n_loss >= b_loss))
  return (jnp.where(threat.per_example(take, b_delta), n_delta,
                    b_delta), jnp.where(take, n_loss, b_loss), b_fooled | n_fooled)


def pgd(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, key: jax.Array, *, eps: float,
        step_size: float, steps: int, norm: str = 'linf', loss: str = 'ce',
        random_start: bool = True, restarts: int = 1, unroll='auto') -> jax.Array:
  """Projected gradient ascent on `loss` (Madry et al. 2018).

  With several restarts (restart r with key fold_in(key, r)), each example keeps a
  restart that misclassifies it if one does, else the one with the highest loss.
  Only input gradients are taken.

  Args:
    logits_fn: the model, `logits_fn(x) -> logits [B, K]`.
    x: clean images [B, H, W, C], float in [0, 1].
    y: labels [B] int.
    key: one PRNG key, or one per example (`rng`).
    eps: the radius, pixel units of [0, 1].
    step_size: pixel units (l2 / l1: the step's norm).
    steps: iterations per restart.
    norm: 'linf', 'l2' or 'l1'.
    loss: a key of `losses.LOSSES` ('ce', 'margin', 'dlr').
    random_start: start from a random point of the ball ∩ box, else from x.
    restarts: independent runs.
    unroll: as `resolve_unroll`.

  Returns:
    x_adv [B, H, W, C], in the eps-ball around x and [0, 1].

  Raises:
    KeyError: an unknown norm or loss.
  """
  threat_model = threat.NORMS[norm]
  loss_fn = losses.LOSSES[loss]
  per_example_loss = lambda inputs: loss_fn(logits_fn(inputs), y)

  def one_restart(restart_key):
    delta = start_point(threat_model, x, restart_key, eps, random_start)
    delta = ascend(per_example_loss, x, delta, norm=norm, eps=eps, step_size=step_size, steps=steps,
                   unroll=unroll)
    if restarts == 1:  # nothing to choose between (training: skip the extra forward)
      return delta, None, None
    logits = logits_fn(x + delta)
    return delta, loss_fn(logits, y), jnp.argmax(logits, -1) != y

  best = one_restart(rng.fold_in(key, 0))
  for r in range(1, restarts):
    best = _keep_better(best, one_restart(rng.fold_in(key, r)))
  return x + best[0]


def fgsm(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, key: jax.Array, *, eps: float,
         norm: str = 'linf', loss: str = 'ce') -> jax.Array:
  """FGSM (Goodfellow et al. 2015): one steepest-ascent step of the full radius from
  x; for l2 / l1 the normalised-gradient / sparse step of size eps.

  Args:
    logits_fn, x, y, eps, norm, loss: as `pgd`.
    key: unused (FGSM draws nothing).

  Returns:
    x_adv [B, H, W, C], in the eps-ball around x and [0, 1].
  """
  del key
  return pgd(logits_fn, x, y, jax.random.PRNGKey(0), eps=eps, step_size=eps, steps=1, norm=norm,
             loss=loss, random_start=False)


def mim(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, key: jax.Array, *, eps: float,
        step_size: float, steps: int, norm: str = 'linf', loss: str = 'ce', decay: float = 1.0,
        random_start: bool = False, unroll='auto') -> jax.Array:
  """Momentum Iterative Method (Dong et al. 2018): g <- decay * g + grad / ||grad||_1,
  then the norm's steepest step along g and the projection.

  Args:
    logits_fn, x, y, key, eps, step_size, steps, norm, loss, unroll: as `pgd`.
    decay: the momentum's decay.
    random_start: start from a random point of the ball ∩ box, else from x.

  Returns:
    x_adv [B, H, W, C] after `steps` momentum steps (one run, no restarts).

  Raises:
    KeyError: an unknown norm or loss (as `pgd`).
  """
  threat_model = threat.NORMS[norm]
  loss_fn = losses.LOSSES[loss]
  grad = input_gradient(lambda inputs: loss_fn(logits_fn(inputs), y), x)
  step = projected_step(threat_model, x, eps, step_size)

  def body(carry):
    delta, momentum = carry
    g = grad(delta)
    g = g * threat.per_example(1.0 / (threat.lp_norm(g, 'l1') + 1e-12), g)
    momentum = decay * momentum + g
    return step(delta, momentum), momentum

  delta = start_point(threat_model, x, key, eps, random_start)
  delta, _ = iterate(body, (delta, jnp.zeros_like(x)), steps, unroll)
  return x + delta
