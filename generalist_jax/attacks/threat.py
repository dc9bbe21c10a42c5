"""Threat models: for l-inf, l2 and l1, a random start, the steepest-ascent step
and the EXACT Euclidean projection onto {||delta||_p <= eps} intersected with the
[0, 1] box.

Every function takes and returns `delta = x_adv - x` with the shape of x
([B, H, W, C], pixels in [0, 1]); eps and step sizes are scalars or one value per
example ([B]), in pixel units (l-inf 8/255, l2 0.5, l1 12 on CIFAR-10). A random
start takes one key or one key per example (`rng`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from generalist_jax.attacks import rng
from generalist_jax.attacks import search


def flat(a: jax.Array) -> jax.Array:
  """One row per example.

  Args:
    a: [B, ...].

  Returns:
    [B, n], n the product of the other dimensions.
  """
  return a.reshape(a.shape[0], -1)


def per_example(value, like: jax.Array) -> jax.Array:
  """A scalar or one value per example, shaped to broadcast against a batch.

  Args:
    value: a scalar or [B] (eps, a step size, a mask).
    like: a batch [B, ...] whose rank and dtype the result takes.

  Returns:
    The scalar, or value reshaped to [B, 1, ..., 1].
  """
  value = jnp.asarray(value, like.dtype)
  if value.ndim == 0:
    return value
  return value.reshape((-1,) + (1,) * (like.ndim - 1))


def _clip_to_box(x: jax.Array, delta: jax.Array) -> jax.Array:
  """Smallest change keeping x + delta inside [0, 1]."""
  return jnp.clip(x + delta, 0.0, 1.0) - x


def _room(x: jax.Array, v: jax.Array) -> jax.Array:
  """How far each coordinate may move in the direction of sign(v) inside [0, 1]."""
  return jnp.where(v > 0, 1.0 - x, x)


def lp_norm(delta: jax.Array, norm: str) -> jax.Array:
  """Per-example norm of a perturbation.

  Args:
    delta: [B, ...].
    norm: 'linf', 'l2' or 'l1'.

  Returns:
    [B]: ||delta[b]||.

  Raises:
    ValueError: an unknown norm.
  """
  d = flat(delta)
  if norm == 'linf':
    return jnp.abs(d).max(axis=-1)
  if norm == 'l2':
    return jnp.sqrt(jnp.sum(d * d, axis=-1))
  if norm == 'l1':
    return jnp.abs(d).sum(axis=-1)
  raise ValueError(f'unknown norm {norm!r}; use one of {sorted(NORMS)}')


def eps_problem(norm: str, eps: float, input_dim: int) -> str | None:
  """Why `eps` cannot be meant in pixel units: the ball would hold every image.
  Catches radii typed in 0-255 units (8 for 8/255).

  Args:
    norm: 'linf', 'l2' or 'l1'.
    eps: the radius.
    input_dim: d, the values per input (H * W * C), each in [0, 1].

  Returns:
    The reason (l-inf eps >= 1, l2 eps > sqrt(d), l1 eps > d), or None.

  Raises:
    KeyError: an unknown norm.
  """
  limits = {
      'linf': (1.0, '1 (the whole [0, 1] box)'),
      'l2': (math.sqrt(input_dim), f'sqrt(d) = {math.sqrt(input_dim):.4g}'),
      'l1': (float(input_dim), f'd = {input_dim}')
  }
  limit, what = limits[norm]
  too_big = eps >= limit if norm == 'linf' else eps > limit
  if not too_big:
    return None
  return (f'{norm} eps={eps:g} reaches {what} for inputs of d={input_dim} values in [0, 1]: '
          'every image would be inside the ball. Radii are in pixel units of [0, 1] '
          '(l-inf 8/255 = 0.0314, not 8); a fraction like 8/255 is accepted.')


def _shrink_into_ball(delta, norm: str, eps) -> jax.Array:
  """Float-rounding guard: scales delta by <= 1 so ||delta|| <= eps holds.

  Scaling towards 0 keeps x + delta inside the box because 0 is inside it.
  """
  n = lp_norm(delta, norm)
  eps = jnp.broadcast_to(jnp.asarray(eps, delta.dtype), n.shape)
  scale = jnp.where(n > eps, eps / jnp.maximum(n, 1e-30), 1.0)
  return delta * per_example(scale, delta)


def _sharding(x: jax.Array):
  """Random starts take the batch's sharding, not the key's (replicated): under
  an explicit mesh the projections' selects mixing the two do not type-check."""
  return jax.typeof(x).sharding


# --- l-inf -------------------------------------------------------------------


def linf_init(key: jax.Array, x: jax.Array, eps: float) -> jax.Array:
  """A random start: uniform in the l-inf ball (not yet clipped to the box).

  Args:
    key: one key or one per example (`rng`).
    x: the clean batch [B, H, W, C].
    eps: a scalar or [B].

  Returns:
    delta of x's shape, uniform in [-eps, eps].
  """
  return rng.uniform(key, x.shape, x.dtype, -1.0, 1.0, out_sharding=_sharding(x)) * per_example(
      eps, x)


def linf_step(delta: jax.Array, grad: jax.Array, step_size) -> jax.Array:
  """Steepest ascent for l-inf: a step along the gradient's sign (not projected).

  Args:
    delta: the current perturbation [B, ...].
    grad: the loss's gradient, same shape.
    step_size: a scalar or [B].

  Returns:
    delta + step_size * sign(grad).
  """
  return delta + per_example(step_size, delta) * jnp.sign(grad)


def linf_project(x: jax.Array, delta: jax.Array, eps) -> jax.Array:
  """Exact Euclidean projection of delta onto {||d||_inf <= eps} ∩ {0 <= x+d <= 1}.

  The ball and the box are both coordinate-wise intervals, so clipping to one then
  the other is the exact projection onto both.

  Args:
    x: the clean batch [B, ...] in [0, 1].
    delta: a perturbation of x's shape.
    eps: a scalar or [B].

  Returns:
    The projected delta.
  """
  eps = per_example(eps, delta)
  return _clip_to_box(x, jnp.clip(delta, -eps, eps))


# --- l2 ----------------------------------------------------------------------


def l2_init(key: jax.Array, x: jax.Array, eps: float) -> jax.Array:
  """A random start: a Gaussian direction on the l2 sphere of radius eps (as
  AutoAttack; not yet projected onto the box).

  Args:
    key: one key or one per example (`rng`).
    x: the clean batch [B, H, W, C].
    eps: a scalar or [B].

  Returns:
    delta of x's shape.
  """
  t = rng.normal(key, x.shape, x.dtype, out_sharding=_sharding(x))
  return t * per_example(eps / (lp_norm(t, 'l2') + 1e-12), x)


def l2_step(delta: jax.Array, grad: jax.Array, step_size) -> jax.Array:
  """Steepest ascent for l2: a step along the gradient normalised to unit l2 norm
  (not projected).

  Args:
    delta: the current perturbation [B, ...].
    grad: the loss's gradient, same shape.
    step_size: a scalar or [B], the step's l2 length.

  Returns:
    delta + step_size * grad / ||grad||_2.
  """
  g = grad * per_example(1.0 / (lp_norm(grad, 'l2') + 1e-12), grad)
  return delta + per_example(step_size, delta) * g


def l2_project(x: jax.Array, delta: jax.Array, eps) -> jax.Array:
  """Exact Euclidean projection of delta onto {||d||_2 <= eps} ∩ {0 <= x+d <= 1}.

  KKT: d(mu) = clip(mu * v, lo, hi) for a mu in (0, 1], and ||d(mu)||_2 is
  increasing in mu and quadratic between the breakpoints mu_i = room_i / |v_i|
  where coordinate i reaches the box. Bisection finds the segment holding
  ||d(mu)|| = eps, then mu comes in closed form from the coordinates clipped
  there. (Sorting the breakpoints does the same without iterating, and is slower
  on XLA:CPU: experiments/benchmarks/README.md, History.)

  Args:
    x: the clean batch [B, ...] in [0, 1].
    delta: a perturbation of x's shape.
    eps: a scalar or [B].

  Returns:
    The projected delta (scaled into the ball against float rounding).
  """
  shape, v, xf = delta.shape, flat(delta), flat(x)
  lo, hi = -xf, 1.0 - xf
  eps_b = jnp.broadcast_to(jnp.asarray(eps, v.dtype), v.shape[:1])
  box_only = jnp.clip(v, lo, hi)
  inside = lp_norm(box_only, 'l2') <= eps_b

  absv, room = jnp.abs(v), _room(xf, v)
  v2, room2 = v * v, room * room
  # Coordinate i sits on the box for mu >= breaks_i (2.0: never, mu <= 1).
  breaks = jnp.where(absv > 0, jnp.minimum(room / jnp.maximum(absv, 1e-30), 2.0), 2.0)
  sq_norm = lambda mu, breaks, room2, v2: jnp.sum(
      jnp.where(breaks <= mu[:, None], room2, mu[:, None]**2 * v2), -1)
  mu_lo, mu_hi = search.bisect(lambda mu, eps_b, *rows: sq_norm(mu, *rows) < eps_b**2,
                               jnp.zeros_like(eps_b), jnp.ones_like(eps_b),
                               (eps_b, breaks, room2, v2))
  clipped = breaks <= (0.5 * (mu_lo + mu_hi))[:, None]
  on_box = jnp.sum(jnp.where(clipped, room2, 0.0), -1)
  free = jnp.sum(jnp.where(clipped, 0.0, v2), -1)
  mu = jnp.sqrt(jnp.maximum(eps_b**2 - on_box, 0.0) / jnp.maximum(free, 1e-30))
  mu = jnp.where(free > 0, jnp.clip(mu, mu_lo, mu_hi), mu_hi)
  projected = jnp.clip(mu[:, None] * v, lo, hi)
  d = jnp.where(inside[:, None], box_only, projected)
  return _shrink_into_ball(d.reshape(shape), 'l2', eps)


# --- l1 ----------------------------------------------------------------------

L1_TOPK_FRACTION = 0.05  # PGD-l1 moves the 5% of coordinates with largest |grad|


def l1_init(key: jax.Array, x: jax.Array, eps: float) -> jax.Array:
  """A random start: a Gaussian point projected onto the l1 ball ∩ box (as
  AutoAttack's APGD-l1).

  Args:
    key: one key or one per example (`rng`).
    x: the clean batch [B, H, W, C] in [0, 1].
    eps: a scalar or [B].

  Returns:
    delta of x's shape.
  """
  return l1_project(x, rng.normal(key, x.shape, x.dtype, out_sharding=_sharding(x)), eps)


def l1_topk_step(delta: jax.Array, grad: jax.Array, step_size, fraction=L1_TOPK_FRACTION):
  """Sparse l1 steepest ascent (SLIDE / APGD-l1): a sign step on the coordinates
  whose |grad| is in the top `fraction` (per example), scaled so the step has
  l1 norm `step_size`. Moving many coordinates a little beats moving one (the
  exact l1 steepest direction), which stalls at the box. NaN gradient coordinates
  are never moved (NaN >= threshold is false); the others still are. Not projected.

  Args:
    delta: the current perturbation [B, ...].
    grad: the loss's gradient, same shape.
    step_size: a scalar or [B], the step's l1 norm.
    fraction: the share of coordinates moved: a number, or [B] per example
      (APGD-l1's adaptive sparsity).

  Returns:
    The moved delta.
  """
  g = flat(grad)
  n = g.shape[1]
  if isinstance(fraction, (int, float)):
    kth = min(max(int((1.0 - fraction) * n), 0), n - 1)
  else:
    fraction = jnp.broadcast_to(jnp.asarray(fraction, g.dtype), g.shape[:1])
    kth = jnp.clip(((1.0 - fraction) * n).astype(jnp.int32), 0, n - 1)
  # The value at ascending position kth: the (n - kth)-th largest |g|.
  threshold = search.kth_largest(jnp.abs(g), n - kth)
  direction = jnp.sign(g) * (jnp.abs(g) >= threshold)
  count = jnp.sum(jnp.abs(direction), -1, keepdims=True)
  direction = direction / (count + 1e-10)
  return delta + per_example(step_size, delta) * direction.reshape(grad.shape)


def l1_project(x: jax.Array, delta: jax.Array, eps) -> jax.Array:
  """Exact Euclidean projection of delta onto {||d||_1 <= eps} ∩ {0 <= x+d <= 1}.

  Not project-then-clip. KKT: d_i = clip(soft_threshold(v_i, tau), lo_i, hi_i),
  i.e. |d_i| = min(max(|v_i| - tau, 0), room_i). Its l1 norm g(tau) is
  piecewise linear and decreasing, with breakpoints |v_i| (coordinate starts
  to move) and |v_i| - room_i (it leaves the box face). Bisection finds the
  linear piece holding g(tau) = eps, then tau comes in closed form from the
  coordinates moving there (a sort of the 2n breakpoints does the same, slower on
  XLA:CPU: experiments/benchmarks/README.md, History).

  Args:
    x, delta, eps: as `l2_project` (x [B, ...] in [0, 1], delta of its shape, eps
      a scalar or [B], the l1 radius).

  Returns:
    The projected delta, within the l1 ball (scaled in against float rounding).
  """
  shape, v, xf = delta.shape, flat(delta), flat(x)
  eps_b = jnp.broadcast_to(jnp.asarray(eps, v.dtype), v.shape[:1])
  absv, room = jnp.abs(v), _room(xf, v)
  box_only = jnp.minimum(absv, room)
  inside = jnp.sum(box_only, -1) <= eps_b

  l1_at = lambda tau, absv, room: jnp.sum(jnp.clip(absv - tau[:, None], 0.0, room), -1)
  # Examples inside the ball need no tau (box_only below): an empty bracket ends their search.
  tau_lo, tau_hi = search.bisect(lambda tau, eps_b, *rows: l1_at(tau, *rows) > eps_b,
                                 jnp.zeros_like(eps_b), jnp.where(inside, 0.0, jnp.max(absv, -1)),
                                 (eps_b, absv, room))
  mid = (0.5 * (tau_lo + tau_hi))[:, None]
  on_box = absv - room >= mid  # |d_i| = room_i
  moving = (absv > mid) & ~on_box  # |d_i| = |v_i| - tau
  n_moving = jnp.sum(moving, -1)
  tau = (jnp.sum(jnp.where(on_box, room, 0.0), -1) + jnp.sum(jnp.where(moving, absv, 0.0), -1) -
         eps_b) / jnp.maximum(n_moving, 1)
  tau = jnp.where(n_moving > 0, jnp.clip(tau, tau_lo, tau_hi), tau_hi)
  magnitude = jnp.minimum(jnp.maximum(absv - tau[:, None], 0.0), room)
  d = jnp.sign(v) * jnp.where(inside[:, None], box_only, magnitude)
  return _shrink_into_ball(d.reshape(shape), 'l1', eps)


@dataclasses.dataclass(frozen=True)
class Norm:
  """A threat model's parts, each on delta = x_adv - x: `init(key, x, eps)` a random
  start, `step(delta, grad, step_size)` the steepest-ascent step, `project(x, delta,
  eps)` the exact projection onto the ball ∩ box."""
  init: Callable[[jax.Array, jax.Array, float], jax.Array]
  step: Callable[[jax.Array, jax.Array, float], jax.Array]
  project: Callable[[jax.Array, jax.Array, float], jax.Array]


NORMS = {
    'linf': Norm(linf_init, linf_step, linf_project), 'l2': Norm(l2_init, l2_step, l2_project),
    'l1': Norm(l1_init, l1_topk_step, l1_project)
}
