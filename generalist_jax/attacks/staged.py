"""An attack cut into stages, so that an evaluation runs each stage only on the
examples that are still unbroken (as the official AutoAttack re-filters them
between targets, restarts and Square's queries).

`stage(logits_fn, x, y, key, carry, j) -> carry` runs stage j (a traced int) on
a batch; the carry holds each example's state (one row per example), so a stage
may run on any subset of the examples in any batch. Stage 0 starts from
`start(logits_fn, x, y, key)`. Once `done(carry)` holds for an example, no later stage changes
its `output(carry)`: the evaluation drops it. Running every stage on every
example gives the attack's own output, bit for bit.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Staged(NamedTuple):
  """An attack as `n_stages` stages and the functions that run them (the module
  docstring says how an evaluation uses them)."""
  n_stages: int
  start: Callable  # (logits_fn, x, y, key) -> carry before stage 0
  stage: Callable  # (logits_fn, x, y, key, carry, j) -> carry
  output: Callable  # carry -> x_adv [B, ...]
  done: Callable  # carry -> [B] bool: the output is final


def single(attack: Callable) -> Staged:
  """A whole attack as one stage: for the attacks with nothing to cut at.

  Args:
    attack: `attack(logits_fn, x, y, key) -> x_adv`.

  Returns:
    The `Staged` attack: its carry is x_adv (x before the stage), every example
    done after it.
  """
  return Staged(1, lambda logits_fn, x, y, key: x,
                lambda logits_fn, x, y, key, carry, j: attack(logits_fn, x, y, key),
                lambda carry: carry, lambda carry: jnp.ones(carry.shape[:1], bool))


def per_example(attack: Staged) -> Staged:
  """The attack run on each example alone: a batch of one with its own key, under
  `jax.vmap` (for attacks whose results would otherwise depend on the batch).

  Args:
    attack: a `Staged` attack whose `output` and `done` only pick fields of the
      carry, row by row.

  Returns:
    The `Staged` attack taking [B] per-example keys.
  """
  add = lambda tree: jax.tree.map(lambda a: a[None], tree)
  drop = lambda tree: jax.tree.map(lambda a: a[0], tree)

  def start(logits_fn, x, y, key):
    return jax.vmap(lambda xi, yi, ki: drop(attack.start(logits_fn, xi[None], yi[None], ki)))(x, y,
                                                                                              key)

  def stage(logits_fn, x, y, key, carry, j):
    return jax.vmap(
        lambda xi, yi, ki, ci: drop(attack.stage(logits_fn, xi[None], yi[None], ki, add(ci), j)))(
            x, y, key, carry)

  return Staged(attack.n_stages, start, stage, attack.output, attack.done)


def run_all(attack: Staged, logits_fn, x, y, key) -> jax.Array:
  """Every stage on every example: the whole attack's output (tests, benchmarks).

  Args:
    attack: the `Staged` attack.
    logits_fn, x, y, key: as the attack takes them.

  Returns:
    x_adv [B, ...].
  """
  carry = attack.start(logits_fn, x, y, key)
  for j in range(attack.n_stages):
    carry = attack.stage(logits_fn, x, y, key, carry, jnp.int32(j))
  return attack.output(carry)
