"""Square Attack (Andriushchenko et al., ECCV 2020): score-based, no gradients; l-inf,
l2 and l1 (Croce & Hein 2021, "Mind the box", as AutoAttack runs it since March 2021).

l-inf: starts from vertical stripes of +-eps, then for `n_queries - 1`
iterations proposes, per example, a random square window whose every channel is
set to +-eps (a random sign each), and keeps the proposal if the margin loss
(true logit minus best other) went down.

l2: starts from a 5x5 grid of "eta" tiles (concentric squares of weight
1/(k+1)^2, positive in the top half, negative in the bottom, randomly
transposed) with a random sign per channel, on the eps-sphere. Each proposal
moves the mass of a second random window into a first one (a fresh eta tile
plus the old content of the first window, rescaled so the total l2 norm stays
eps), then rescales the whole perturbation to norm eps.

l1: the same moves with tiles of weight 1/(k+1)^4 and unit l1 mass; a proposal
spends the budget left (eps minus the current l1 norm) plus the mass of both
windows, and the point is projected onto the l1 ball of radius eps (1 - 1e-6)
intersected with the box (fra31/auto-attack `square.py`, its L1 branch).

The window side shrinks with the schedule p(i) of the paper. Examples already
misclassified stop changing. A black-box attack: if it beats the white-box
ones, suspect gradient masking.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax.attacks import losses
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged
from generalist_jax.attacks import threat

# p(i) = p_init / 2^j once i passes the j-th of these iteration counts (the paper's
# schedule for 10,000 queries; `rescale_schedule` maps other budgets onto it).
_P_KNOTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(i, p_init: float, n_queries: int, rescale_schedule: bool):
  """The share of the image a window covers at iteration i (the paper's schedule).

  Args:
    i: the iteration (may be traced).
    p_init: the share at the start.
    n_queries: the budget; with rescale_schedule the schedule's knots (set for
      10,000 queries) are stretched onto it.
    rescale_schedule: stretch the schedule onto n_queries.

  Returns:
    p_init / 2^j, j the number of knots (10, 50, 200, ..., 8000) that i has passed.
  """
  it = (i * 10000) // n_queries if rescale_schedule else i
  halvings = sum((it > k).astype(jnp.int32) for k in _P_KNOTS)
  return p_init / (2.0**halvings)


def _corner(key, shape, extent, s):
  """A window's first row (or column) as the reference draws it: uniform in
  0 .. extent - s - 1 (its `random_int(0, extent - s)` never returns the upper end,
  so the last row and column are never a window's start; 0 when s = extent). Kept
  for parity with AutoAttack's numbers."""
  return rng.randint(key, shape, 0, jnp.maximum(extent - s, 1))


def _margin(logits, y):
  """[B]: true logit minus the best other; Square lowers it until it is <= 0."""
  return -losses.margin(logits, y)  # > 0 while correctly classified


def _linf_parts(logits_fn, x, y, key, *, eps, n_queries, p_init, rescale_schedule):
  """(init() -> (x_best, margin_min), body(i, carry) -> carry) of Square l-inf."""
  b, h, w, c = x.shape
  init_key, loop_key = rng.split(key)
  rows = jnp.arange(h)[None, :, None, None]
  cols = jnp.arange(w)[None, None, :, None]

  def init():
    stripes = rng.rademacher(init_key, (b, 1, w, c), x.dtype)
    x_best = jnp.clip(x + eps * stripes, 0.0, 1.0)
    return x_best, _margin(logits_fn(x_best), y)

  def body(i, carry):
    x_best, margin_min = carry
    k_h, k_w, k_s = rng.split(rng.fold_in(loop_key, i), 3)
    p = p_schedule(i, p_init, n_queries, rescale_schedule)
    s = jnp.clip(jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32), 1, min(h, w))
    vh = _corner(k_h, (b, 1, 1, 1), h, s)
    vw = _corner(k_w, (b, 1, 1, 1), w, s)
    window = (rows >= vh) & (rows < vh + s) & (cols >= vw) & (cols < vw + s)
    signs = rng.rademacher(k_s, (b, 1, 1, c), x.dtype)
    x_new = jnp.where(window, x + eps * signs, x_best)
    x_new = jnp.clip(jnp.clip(x_new, x - eps, x + eps), 0.0, 1.0)
    margin_new = _margin(logits_fn(x_new), y)
    accept = (margin_min > 0) & (margin_new < margin_min)
    return (jnp.where(accept[:, None, None, None], x_new,
                      x_best), jnp.where(accept, margin_new, margin_min))

  return init, body


# ----------------------------------------------------------------------------
# l2 and l1: windows of mass moved.
# ----------------------------------------------------------------------------

# _INV_POW_CUMSUM[p][n] = sum_{k < n} 1 / (k + 1)^p: the weight a cell gets from the
# concentric squares k = k0 .. m-1 covering it is table[m] - table[k0] (p = 2 for l2,
# 4 for l1, as the reference's `eta_rectangles`).
_INV_POW_CUMSUM = {
    p: np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, 1025)**p)]) for p in (2, 4)
}
_TILE_POWER = {'l2': 2, 'l1': 4}


def _concentric(r, q, rows, cols, power: int = 2):
  """The unnormalised `eta_rectangles(rows, cols)` of the reference at offsets (r, q)
  inside the rectangle (0 outside): concentric squares around its centre, the
  k-th (k = 0, 1, ...) of half-width k and weight 1 / (k + 1)^power. Sizes may be traced."""
  rc, cc = rows // 2, cols // 2  # centre cell (x_c - 1 in the reference)
  m = jnp.maximum(rc, cc) + 1  # number of squares
  k0 = jnp.maximum(jnp.abs(r - rc), jnp.abs(q - cc))
  table = jnp.asarray(_INV_POW_CUMSUM[power], jnp.float32)
  value = table[m] - table[jnp.minimum(k0, m)]
  return jnp.where((r >= 0) & (r < rows) & (q >= 0) & (q < cols), value, 0.0)


def _mass(v, axes, norm: str):
  """v's l2 norm (or l1 mass) over `axes`, kept as size-1 axes."""
  if norm == 'l2':
    return jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True))
  return jnp.sum(jnp.abs(v), axis=axes, keepdims=True)


def _unit(v, axes, norm: str = 'l2'):
  """v scaled to unit l2 norm (or unit l1 mass) over `axes`."""
  return v / (_mass(v, axes, norm) + 1e-12)


def eta_tile(r, q, s, transpose, norm: str = 'l2'):
  """The reference's eta(s): the tile a Square l2 / l1 proposal writes into a window.

  Top half positive, bottom half negative, unit l2 norm (l1: unit l1 mass, tile
  weights 1/(k+1)^4); transposed where asked.

  Args:
    r, q: row and column offsets into the s x s window, broadcastable to (B, H, W).
    s: the window's side (may be traced).
    transpose: bool, broadcastable to (B, H, W).
    norm: 'l2' or 'l1'.

  Returns:
    (B, H, W) float32: the tile's value at each offset, 0 outside the window.
  """
  r, q = jnp.where(transpose, q, r), jnp.where(transpose, r, q)
  power = _TILE_POWER[norm]
  top = _unit(_concentric(r, q, s // 2, s, power), (-2, -1), norm)
  bottom = _unit(_concentric(r - s // 2, q, s - s // 2, s, power), (-2, -1), norm)
  return _unit(top - bottom, (-2, -1), norm)


def _tile_start(key, x, norm: str = 'l2'):
  """A grid of eta tiles of side h // 5 with a random sign per (example, tile, channel).

  A loop over the tiles, not one unrolled op chain per tile, which compiles several
  times slower (experiments/benchmarks/README.md, History). Tiles do not overlap, so
  the sum is the same in any order."""
  b, h, w, c = x.shape
  s = max(h // 5, 1)
  start = max((h - 5 * s) // 2, 0)
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  corners = jnp.asarray([(vh, vw)
                         for vh in range(start, h - s + 1, s)[:h // s]
                         for vw in range(start, w - s + 1, s)[:w // s]], jnp.int32)
  keys = rng.split(key, 2 * len(corners))

  def add_tile(i, delta):
    (vh, vw), transpose_key, sign_key = corners[i], keys[2 * i], keys[2 * i + 1]
    transpose = rng.bernoulli(transpose_key, 0.5, (b, 1, 1))
    tile = eta_tile(rows - vh, cols - vw, s, transpose, norm)
    signs = rng.rademacher(sign_key, (b, 1, 1, c), x.dtype)
    return delta + tile[..., None] * signs

  dtype = jnp.result_type(x.dtype, jnp.float32)  # the tiles are float32
  return jax.lax.fori_loop(0, len(corners), add_tile, jnp.zeros(x.shape, dtype))


def _odd_side(p, h, w, minimum):
  """The window side for share p: sqrt(p h w) rounded, at least `minimum`, made odd,
  at most min(h, w)."""
  s = jnp.maximum(jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32), minimum)
  s = s + (s % 2 == 0)
  return jnp.minimum(s, min(h, w))


def _window_budget(eps, mass_image, mass_windows, channels: int, norm: str):
  """What a proposal may spend in its window per channel: the radius left over,
  shared by the channels, plus what both windows held (the reference's l2 / l1)."""
  if norm == 'l2':
    return jnp.sqrt(jnp.maximum(eps**2 - mass_image**2, 0.0) / channels + mass_windows**2)
  return (jnp.maximum(eps - mass_image, 0.0) / channels + mass_windows) * channels


def _onto_threat_model(x, delta, eps, norm: str):
  """x + delta brought into the threat model: l2 onto the eps-sphere, then clipped to
  [0, 1]; l1 projected onto the ball of radius eps (1 - 1e-6) ∩ [0, 1]."""
  if norm == 'l2':
    return jnp.clip(x + _unit(delta, (1, 2, 3)) * eps, 0.0, 1.0)
  return x + threat.l1_project(x, delta, eps * (1.0 - 1e-6))


def _window_parts(logits_fn, x, y, key, *, eps, norm, n_queries, p_init, rescale_schedule):
  """(init, body) of Square l2 / l1 (fra31/auto-attack `square.py`, L2 and L1
  branches): each proposal moves the mass of two random windows into the first, as
  a fresh `eta_tile` plus the first window's old content, within the budget of
  `_window_budget`."""
  b, h, w, c = x.shape
  pe = lambda v: threat.per_example(v, x)
  onto = lambda delta: _onto_threat_model(x, delta, eps, norm)
  init_key, loop_key = rng.split(key)
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  mass = lambda v, axes: _mass(v, axes, norm)

  def init():
    x_best = onto(_tile_start(init_key, x, norm))
    return x_best, _margin(logits_fn(x_best), y)

  def body(i, carry):
    x_best, margin_min = carry
    k1, k2, kt, ks = rng.split(rng.fold_in(loop_key, i), 4)
    s = _odd_side(p_schedule(i, p_init, n_queries, rescale_schedule), h, w, 3)
    corner = lambda k: (_corner(k, (b, 1, 1), h, s), _corner(rng.fold_in(k, 1), (b, 1, 1), w, s))
    (vh, vw), (vh2, vw2) = corner(k1), corner(k2)
    in1 = ((rows >= vh) & (rows < vh + s) & (cols >= vw) & (cols < vw + s))[..., None]
    in2 = ((rows >= vh2) & (rows < vh2 + s) & (cols >= vw2) & (cols < vw2 + s))[..., None]
    delta = x_best - x
    mass_window1 = mass(delta * in1, (1, 2))  # per channel
    mass_windows = mass(delta * (in1 | in2), (1, 2))  # per channel, as the reference
    budget = _window_budget(eps, mass(delta, (1, 2, 3)), mass_windows, c, norm)
    transpose = rng.bernoulli(kt, 0.5, (b, 1, 1))
    signs = rng.rademacher(ks, (b, 1, 1, c), x.dtype)
    fresh = eta_tile(rows - vh, cols - vw, s, transpose, norm)[..., None] * signs
    moved = fresh + delta * in1 / (1e-12 + mass_window1)
    moved = _unit(moved, (1, 2), norm) * budget
    delta = jnp.where(in1, moved, jnp.where(in2, 0.0, delta))
    x_new = onto(delta)
    margin_new = _margin(logits_fn(x_new), y)
    accept = (margin_min > 0) & (margin_new < margin_min)
    return jnp.where(pe(accept), x_new, x_best), jnp.where(accept, margin_new, margin_min)

  return init, body


_PARTS = {
    'linf': _linf_parts, 'l2': functools.partial(_window_parts, norm='l2'),
    'l1': functools.partial(_window_parts, norm='l1')
}
SQUARE = tuple(_PARTS)

# Queries per stage of `square_staged`: an evaluation drops the broken examples
# between stages (as the official code queries only the unbroken ones).
QUERY_BLOCK = 500


def _parts(logits_fn, x, y, key, *, eps, norm, n_queries, p_init, rescale_schedule):
  """(init, body) of Square in `norm`; ValueError for a norm it has no version of."""
  if norm not in _PARTS:
    raise ValueError(f'Square is implemented for {SQUARE}, not {norm!r}.')
  return _PARTS[norm](logits_fn, x, y, key, eps=eps, n_queries=n_queries, p_init=p_init,
                      rescale_schedule=rescale_schedule)


def square(logits_fn, x, y, key, *, eps, norm: str, n_queries: int = 5000, p_init: float = 0.8,
           rescale_schedule: bool = False) -> jax.Array:
  """Square Attack: random square-window proposals, kept when they lower the margin.
  Source: fra31/auto-attack `square.py`.

  Args:
    logits_fn: the model, `logits_fn(x) -> logits [B, K]` (scores only).
    x: clean images [B, H, W, C], float in [0, 1].
    y: labels [B] int.
    key: one PRNG key, or one per example (`rng`).
    eps: the radius, pixel units of [0, 1].
    norm: 'linf', 'l2' or 'l1'.
    n_queries: model calls per example (the first is the initial point).
    p_init: the share of the image the first windows cover (`p_schedule`).
    rescale_schedule: stretch the window schedule onto n_queries.

  Returns:
    x_adv [B, H, W, C], inside the eps-ball around x and [0, 1].

  Raises:
    ValueError: a norm Square has no version of.
  """
  init, body = _parts(logits_fn, x, y, key, eps=eps, norm=norm, n_queries=n_queries, p_init=p_init,
                      rescale_schedule=rescale_schedule)
  x_best, _ = jax.lax.fori_loop(0, n_queries - 1, body, init())
  return x_best


def square_staged(*, eps, norm: str, n_queries: int = 5000, p_init: float = 0.8,
                  rescale_schedule: bool = False, query_block: int = QUERY_BLOCK) -> staged.Staged:
  """`square` cut into stages of `query_block` iterations.

  The carry is (x_best, margin_min) and the iteration index (so the window schedule
  p(i)) is the stage's offset plus the step within it, as in one loop. An example
  whose margin is <= 0 never changes again (done).

  Args:
    eps, norm, n_queries, p_init, rescale_schedule: as `square`.
    query_block: iterations per stage.

  Returns:
    The `staged.Staged` attack (at least one stage).

  Raises:
    ValueError: a norm Square has no version of (when a stage is traced).
  """
  iterations = n_queries - 1
  n_stages = max(-(-iterations // query_block), 1)
  parts = lambda logits_fn, x, y, key: _parts(logits_fn, x, y, key, eps=eps, norm=norm, n_queries=
                                              n_queries, p_init=p_init, rescale_schedule=
                                              rescale_schedule)

  def start(logits_fn, x, y, key):
    return parts(logits_fn, x, y, key)[0]()

  def stage(logits_fn, x, y, key, carry, j):
    lo = j * query_block
    return jax.lax.fori_loop(lo, jnp.minimum(lo + query_block, iterations),
                             parts(logits_fn, x, y, key)[1], carry)

  return staged.Staged(n_stages, start, stage, lambda c: c[0], lambda c: ~(c[1] > 0))
