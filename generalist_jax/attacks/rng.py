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
  """Whether `key` holds one key per example.

  Args:
    key: a typed key ([] one, [B] per example) or a raw one ([2] one, [B, 2] per
      example).

  Returns:
    True for a batch of keys.
  """
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim == 1
  return key.ndim == 2


def per_example_keys(key, ids) -> jax.Array:
  """Each example's key, from the column's key and the example's id.

  Args:
    key: one PRNG key.
    ids: [B] int example ids.

  Returns:
    [B] keys: fold_in(key, ids[b]).
  """
  return jax.vmap(jax.random.fold_in, (None, 0))(key, ids)


def fold_in(key, data):
  """`jax.random.fold_in` of one key, or of each key of a batch with the same data.

  Args:
    key: one key or one per example.
    data: an int (may be traced).

  Returns:
    A key of the same kind (one, or [B]).
  """
  if is_batch(key):
    return jax.vmap(jax.random.fold_in, (0, None))(key, data)
  return jax.random.fold_in(key, data)


def split(key, num: int = 2):
  """`jax.random.split` of one key, or of each key of a batch.

  Args:
    key: one key or one per example.
    num: how many keys to make.

  Returns:
    [num] keys, or [num, B] for per-example keys (so `a, b = split(key)` works for
    both).
  """
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
  """`jax.random.uniform` of shape [B, ...]; with per-example keys, row b is what
  key b gives for shape [1, ...].

  Args:
    key: one key or one per example.
    shape, dtype, minval, maxval: as `jax.random.uniform`.
    out_sharding: the result's sharding; used with one key only.

  Returns:
    The draw, of `shape`.
  """
  return _draw(key, shape, lambda k, s, **o: jax.random.uniform(k, s, dtype, minval, maxval, **o),
               out_sharding=out_sharding)


def normal(key, shape, dtype=float, out_sharding=None):
  """`jax.random.normal`, per example as `uniform`.

  Args:
    key: one key or one per example.
    shape, dtype: as `jax.random.normal`.
    out_sharding: as `uniform`.

  Returns:
    The draw, of `shape`.
  """
  return _draw(key, shape, lambda k, s, **o: jax.random.normal(k, s, dtype, **o),
               out_sharding=out_sharding)


def rademacher(key, shape, dtype=int):
  """`jax.random.rademacher` (+-1 with equal odds), per example as `uniform`.

  Args:
    key: one key or one per example.
    shape, dtype: as `jax.random.rademacher`.

  Returns:
    The draw, of `shape`.
  """
  return _draw(key, shape, lambda k, s: jax.random.rademacher(k, s, dtype))


def bernoulli(key, p, shape):
  """`jax.random.bernoulli`, per example as `uniform`.

  Args:
    key: one key or one per example.
    p: the probability of True.
    shape: as `jax.random.bernoulli`.

  Returns:
    bool, of `shape`.
  """
  return _draw(key, shape, lambda k, s: jax.random.bernoulli(k, p, s))


def randint(key, shape, minval, maxval):
  """`jax.random.randint` (minval <= value < maxval), per example as `uniform`.

  Args:
    key: one key or one per example.
    shape, minval, maxval: as `jax.random.randint`.

  Returns:
    int32, of `shape`.
  """
  return _draw(key, shape, lambda k, s: jax.random.randint(k, s, minval, maxval))
