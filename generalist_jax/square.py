"""Square Attack, l-inf (Andriushchenko et al., ECCV 2020): score-based, no gradients.

Starts from vertical stripes of +-eps, then for `n_queries - 1` iterations
proposes, per example, a random square window whose every channel is set to
+-eps (a random sign each), and keeps the proposal if the margin loss
(true logit minus best other) went down. The window side shrinks with the
schedule p(i) of the paper. Examples already misclassified stop changing.
A black-box attack: if it beats the white-box ones, suspect gradient masking.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from generalist_jax import attacks

# p(i) = p_init / 2^j once i passes the j-th of these iteration counts (the paper's
# schedule for 10,000 queries; `rescale_schedule` maps other budgets onto it).
_P_KNOTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(i, p_init: float, n_queries: int, rescale_schedule: bool):
  it = (i * 10000) // n_queries if rescale_schedule else i
  halvings = sum((it > k).astype(jnp.int32) for k in _P_KNOTS)
  return p_init / (2.0 ** halvings)


def _margin(logits, y):
  return -attacks.margin(logits, y)     # > 0 while correctly classified


def square_linf(logits_fn, x, y, key, *, eps, n_queries: int = 5000, p_init: float = 0.8,
                rescale_schedule: bool = False) -> jax.Array:
  b, h, w, c = x.shape
  init_key, loop_key = jax.random.split(key)
  stripes = jax.random.rademacher(init_key, (b, 1, w, c), x.dtype)
  x_best = jnp.clip(x + eps * stripes, 0.0, 1.0)
  margin_min = _margin(logits_fn(x_best), y)
  rows = jnp.arange(h)[None, :, None, None]
  cols = jnp.arange(w)[None, None, :, None]

  def body(i, carry):
    x_best, margin_min = carry
    k_h, k_w, k_s = jax.random.split(jax.random.fold_in(loop_key, i), 3)
    p = p_schedule(i, p_init, n_queries, rescale_schedule)
    s = jnp.clip(jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32), 1, min(h, w))
    vh = jax.random.randint(k_h, (b, 1, 1, 1), 0, h - s + 1)
    vw = jax.random.randint(k_w, (b, 1, 1, 1), 0, w - s + 1)
    window = (rows >= vh) & (rows < vh + s) & (cols >= vw) & (cols < vw + s)
    signs = jax.random.rademacher(k_s, (b, 1, 1, c), x.dtype)
    x_new = jnp.where(window, x + eps * signs, x_best)
    x_new = jnp.clip(jnp.clip(x_new, x - eps, x + eps), 0.0, 1.0)
    margin_new = _margin(logits_fn(x_new), y)
    accept = (margin_min > 0) & (margin_new < margin_min)
    return (jnp.where(accept[:, None, None, None], x_new, x_best),
            jnp.where(accept, margin_new, margin_min))

  x_best, _ = jax.lax.fori_loop(0, n_queries - 1, body, (x_best, margin_min))
  return x_best
