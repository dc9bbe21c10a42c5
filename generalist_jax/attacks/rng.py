"""Random draws from one key, or from one key per example.

An attack takes `key`: one PRNG key (its draws cover the whole batch, as
`jax.random`'s) or a batch of keys, one per example ([B] typed keys or [B, 2]
raw ones). With a batch, every draw of shape [B, ...] gives example b the bits
that `jax.random` gives key b for shape [1, ...]: those of the attack run on
that example alone with its own key. So an evaluation runs the attack batched,
yet each example's randomness depends only on its own key (not on its batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def is_batch(key) -> bool:
  """Whether `key` holds one key per example."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim == 1
  return key.ndim == 2


def per_example_keys(key, ids) -> jax.Array:
  """[B] keys fold_in(key, ids[b]): example ids -> their keys."""
  return jax.vmap(jax.random.fold_in, (None, 0))(key, ids)


def fold_in(key, data):
  if is_batch(key):
    return jax.vmap(jax.random.fold_in, (0, None))(key, data)
  return jax.random.fold_in(key, data)


def split(key, num: int = 2):
  """[num] keys, or [num, B] for per-example keys (so `a, b = split(key)` works for both)."""
  if is_batch(key):
    return jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, num))(key), 0, 1)
  return jax.random.split(key, num)


def _draw(key, shape, draw, **single):
  """draw(key, shape) for one key (with `single`: keyword arguments only it takes,
  e.g. out_sharding); per example: draw(key[b], (1, ...)) stacked."""
  shape = tuple(shape)
  if not is_batch(key):
    return draw(key, shape, **single)
  one = (1,) + shape[1:]
  return jax.vmap(lambda k: draw(k, one))(key).reshape(shape)


def uniform(key, shape, dtype=float, minval=0.0, maxval=1.0, out_sharding=None):
  return _draw(key, shape, lambda k, s, **o: jax.random.uniform(k, s, dtype, minval, maxval, **o),
               out_sharding=out_sharding)


def normal(key, shape, dtype=float, out_sharding=None):
  return _draw(key, shape, lambda k, s, **o: jax.random.normal(k, s, dtype, **o),
               out_sharding=out_sharding)


def rademacher(key, shape, dtype=int):
  return _draw(key, shape, lambda k, s: jax.random.rademacher(k, s, dtype))


def bernoulli(key, p, shape):
  return _draw(key, shape, lambda k, s: jax.random.bernoulli(k, p, s))


def randint(key, shape, minval, maxval):
  return _draw(key, shape, lambda k, s: jax.random.randint(k, s, minval, maxval))
