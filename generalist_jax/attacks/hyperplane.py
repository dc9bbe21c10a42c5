"""FAB's projection: the minimal-norm step onto a hyperplane within the [0, 1] box,
in l-inf, l2 and l1 (`project_on_hyperplane`).

Each norm's KKT conditions leave one multiplier per row to find: a piecewise linear
(or quadratic) monotone equation in it, whose breakpoints fab_projections.py of the
reference sorts. Here a radix search over the float bit patterns finds the segment
(l1: the threshold) that holds the solution, without a sort; then the multiplier
comes in closed form.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from generalist_jax.attacks import threat


def _largest_float_where(holds, rows: int, dtype) -> jax.Array:
  """[rows]: per row, the largest float t >= 0 of `dtype` (float32 or float64) for which
  `holds(t)` ([rows] -> [rows] bool) is True, for a predicate True on [0, t*] and False
  above; 0 where it holds nowhere. A radix search, as search.kth_largest: non-negative
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
  tau = _largest_float_where(lambda t: (t <= top) & (capacity_from(t) >= c), absw.shape[0],
                             absw.dtype)[:, None]
  above = absw > tau
  tied = (absw == tau) & (cap > 0)
  rest = c[:, None] - jnp.sum(jnp.where(above, cap, 0.0), -1, keepdims=True)
  tied_cap = jnp.where(tied, cap, 0.0)
  # A cumsum costs several passes of the search and rows rarely tie at tau: only if needed.
  before = jax.lax.cond(jnp.any(jnp.sum(tied, -1) > 1), lambda: jnp.cumsum(tied_cap, -1) - tied_cap,
                        lambda: jnp.zeros_like(tied_cap))
  partial = jnp.clip((rest - before) / jnp.maximum(tau, 1e-30), 0.0, room)
  return jnp.where(above, room, jnp.where(tied, partial, 0.0)).astype(dtype)


def project_on_hyperplane(point: jax.Array, w: jax.Array, b: jax.Array, norm: str) -> jax.Array:
  """argmin ||d||_p subject to <w, point + d> = b and 0 <= point + d <= 1.

  If the box makes the hyperplane unreachable, the box corner that gets closest
  (every useful coordinate moved to its face), as the reference does.

  Args:
    point: [B, D] flat rows in [0, 1]; w: [B, D]; b: [B]; norm: 'linf', 'l2', 'l1'.

  Returns:
    d [B, D].

  Raises:
    ValueError: an unknown norm.
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
