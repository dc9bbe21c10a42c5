"""The Generalist meta-update: expert EMAs, the global learner, redistribution.

All functions are pure maps over pytrees of identical structure
(`{'params': ..., 'batch_stats': ...}`), so BatchNorm statistics are averaged,
mixed and copied exactly like weights, as in the reference.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def ema_update(ema, new, decay):
  """One exponential-moving-average step, leaf by leaf.

  Args:
    ema: pytree of the running average.
    new: pytree of the same structure: the newest value.
    decay: scalar in [0, 1]; the weight kept on `ema`.

  Returns:
    decay * ema + (1 - decay) * new, a pytree like `ema`.
  """
  return jax.tree.map(lambda e, n: decay * e + (1.0 - decay) * n, ema, new)


def weighted_mix(trees: Sequence, weights: jnp.ndarray):
  """The weighted sum of pytrees of one structure, leaf by leaf.

  Args:
    trees: N pytrees of identical structure.
    weights: [N] mixing weights (the mix schedule's sum to 1; not checked here).

  Returns:
    sum_i weights[i] * trees[i].
  """
  return jax.tree.map(lambda *leaves: sum(w * l for w, l in zip(weights, leaves)), *trees)


def select(pred, on_true, on_false):
  """Pytree `where` with a scalar predicate (no host sync).

  Args:
    pred: scalar bool array (traced inside the jit).
    on_true, on_false: pytrees of identical structure.

  Returns:
    `on_true` where `pred`, else `on_false`, leaf by leaf.
  """
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def meta_update(experts: Sequence, emas: Sequence, global_learner, *, decay, weights, sync):
  """One step of the reference meta-update, after the experts' own updates.

  ema_i   <- ema(ema_i, expert_i)
  global  <- ema(global, sum_i w_i ema_i)
  expert_i <- global   where `sync` (optimizer states are left alone)

  Args:
    experts: N variable pytrees (`{'params', 'batch_stats'}`), already updated
      by this step's optimizer updates.
    emas: the N experts' EMA pytrees.
    global_learner: the global learner's variables.
    decay: scalar EMA decay, used for the experts' EMAs and the global learner
      alike (`schedules.ema_decay` of the step).
    weights: [N] mixing weights of the EMAs (`schedules.make_mix_schedule`).
    sync: scalar bool; True copies the new global learner into every expert.

  Returns:
    (experts, emas, global_learner): lists of N pytrees, and a pytree.

  Example:
    >>> import jax.numpy as jnp
    >>> from generalist_jax.method import meta
    >>> a, b = {'w': jnp.zeros(2)}, {'w': jnp.ones(2)}
    >>> experts, emas, g = meta.meta_update(
    ...     [a, b], [a, b], a, decay=0.5, weights=jnp.array([0.5, 0.5]),
    ...     sync=jnp.array(True))
    >>> g['w']            # 0.5 * 0 + 0.5 * (0.5 * 0 + 0.5 * 1)
    Array([0.25, 0.25], dtype=float32)
    >>> experts[1]['w']   # synced: every expert is now the global learner
    Array([0.25, 0.25], dtype=float32)
  """
  emas = [ema_update(e, x, decay) for e, x in zip(emas, experts)]
  global_learner = ema_update(global_learner, weighted_mix(emas, weights), decay)
  experts = [select(sync, global_learner, x) for x in experts]
  return experts, emas, global_learner
