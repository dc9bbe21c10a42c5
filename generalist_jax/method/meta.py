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
  """decay * ema + (1 - decay) * new, leaf by leaf."""
  return jax.tree.map(lambda e, n: decay * e + (1.0 - decay) * n, ema, new)


def weighted_mix(trees: Sequence, weights: jnp.ndarray):
  """sum_i weights[i] * trees[i]."""
  return jax.tree.map(lambda *leaves: sum(w * l for w, l in zip(weights, leaves)),
                      *trees)


def select(pred, on_true, on_false):
  """Pytree `where` with a scalar predicate (no host sync)."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def meta_update(experts: Sequence, emas: Sequence, global_learner, *,
                decay, weights, sync):
  """One step of the reference meta-update, after the experts' own updates.

  ema_i   <- ema(ema_i, expert_i)
  global  <- ema(global, sum_i w_i ema_i)
  expert_i <- global   where `sync` (optimizer states are left alone)
  Returns (experts, emas, global_learner).
  """
  emas = [ema_update(e, x, decay) for e, x in zip(emas, experts)]
  global_learner = ema_update(global_learner, weighted_mix(emas, weights), decay)
  experts = [select(sync, global_learner, x) for x in experts]
  return experts, emas, global_learner
