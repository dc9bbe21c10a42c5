"""Per-row searches without a sort, for the threat models (`threat.py`).

`bisect` brackets the point where a monotone predicate flips, one bracket per
example (the multiplier of the exact l2 / l1 projections); `kth_largest` is a radix
select (the threshold of the sparse l1 step), exactly what a sort gives. Both replaced
sorts that were slower on XLA:CPU (experiments/benchmarks/README.md, History).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_BISECTION_STEPS = 40  # l2 / l1 projections: halvings of the bracket (float32 ulp by ~30)
_BISECTION_ROWS = 8  # examples per chunk on CPU: their rows (~300 kB) stay in cache


def _halvings(too_small, lo, hi, operands, iterations: int):
  """Halves each example's bracket until no bracket changes (float resolution) or
  after `iterations`. A halving that changes nothing changes nothing ever after, so
  the result is bit for bit that of `iterations` halvings."""

  def halve(state):
    i, lo, hi, _ = state
    mid = 0.5 * (lo + hi)
    left = too_small(mid, *operands)
    new_lo, new_hi = jnp.where(left, mid, lo), jnp.where(left, hi, mid)
    changed = jnp.any((new_lo != lo) | (new_hi != hi))  # NaN != NaN: runs to the end
    return i + 1, new_lo, new_hi, changed

  keep_going = lambda state: (state[0] < iterations) & state[3]
  _, lo, hi, _ = jax.lax.while_loop(keep_going, halve, (0, lo, hi, jnp.array(True)))
  return lo, hi


def rows_per_chunk(batch: int) -> int:
  """How many examples `bisect` halves together, chunk by chunk.

  Args:
    batch: the examples B.

  Returns:
    The largest divisor of B up to _BISECTION_ROWS; 0 (no chunks: the whole batch
    at once) where that is below 4 or B itself, off the CPU (accelerators want the
    whole batch at once) or with several devices (a chunk loop would gather a
    sharded batch).
  """
  if jax.default_backend() != 'cpu' or jax.device_count() > 1 or batch < 4:
    return 0
  rows = max(d for d in range(1, min(batch, _BISECTION_ROWS) + 1) if batch % d == 0)
  return rows if 4 <= rows < batch else 0


def bisect(too_small, lo, hi, operands=(), iterations: int = _BISECTION_STEPS):
  """Per-example bisection of a monotone predicate (the l2 / l1 projections).

  On one CPU device it runs over chunks of examples (`rows_per_chunk`), each halved
  to the end while its rows are in cache (faster than one pass over the batch per
  halving: experiments/benchmarks/README.md, History); each example's result is
  the same. Nothing is differentiated through the search.

  Args:
    too_small: `too_small(t [b], *operands) -> [b] bool`, True left of the point
      where it flips (one row per example).
    lo, hi: [B], the bracket to start from.
    operands: arrays [B, ...], one row per example.
    iterations: at most this many halvings (fewer once no bracket changes).

  Returns:
    (lo, hi) [B]: the final bracket.
  """
  # A search: nothing is differentiated through the bracket (a while_loop cannot be).
  lo, hi, operands = jax.lax.stop_gradient((lo, hi, tuple(operands)))
  rows = rows_per_chunk(lo.shape[0])
  if not rows:
    return _halvings(too_small, lo, hi, operands, iterations)
  split = lambda a: a.reshape(a.shape[0] // rows, rows, *a.shape[1:])
  chunk = lambda args: _halvings(too_small, args[0], args[1], args[2:], iterations)
  lo, hi = jax.lax.map(chunk, tuple(map(split, (lo, hi, *operands))))
  return lo.reshape(-1), hi.reshape(-1)


def kth_largest(values: jax.Array, m) -> jax.Array:
  """The m-th largest value of each row, exactly what `lax.top_k(values, m)`'s last
  value or a sort gives, for values >= 0.

  A radix select: non-negative IEEE floats order as their bit patterns do, so the
  answer is built bit by bit from the top, keeping a bit where at least m values
  are >= the prefix (31 counting passes over the rows; NaN ranks above inf, as in
  a sort). Faster than top_k and a sort on XLA:CPU (experiments/benchmarks/README.md,
  History). Float64 rows (x64 mode) are sorted instead.

  Args:
    values: [B, n], >= 0 (it ranks |values|: pass magnitudes; -0.0 comes back as
      +0.0, an equal value).
    m: an int or [B] ints, clipped to 1..n.

  Returns:
    [B, 1], values' dtype.
  """
  n = values.shape[1]
  m = jnp.clip(jnp.broadcast_to(jnp.asarray(m, jnp.int32), values.shape[:1]), 1, n)
  if values.dtype.itemsize > 4:
    return jnp.take_along_axis(jnp.sort(values, axis=-1), (n - m)[:, None], -1)
  bits = jax.lax.bitcast_convert_type(jnp.abs(values.astype(jnp.float32)), jnp.int32)

  def keep_bit(b, prefix):
    candidate = prefix | jnp.left_shift(jnp.int32(1), 30 - b)
    enough = jnp.sum(bits >= candidate[:, None], -1, dtype=jnp.int32) >= m
    return jnp.where(enough, candidate, prefix)

  prefix = jax.lax.fori_loop(0, 31, keep_bit, jnp.zeros(values.shape[:1], jnp.int32))
  return jax.lax.bitcast_convert_type(prefix, jnp.float32)[:, None].astype(values.dtype)
