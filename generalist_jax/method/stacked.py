"""Stacked experts: every expert's update as ONE `jax.vmap` over a leading
expert axis, instead of a Python loop of per-expert updates in the same jit.

Possible when the experts run the same code on different data: tasks 'natural'
and 'pgd' (CE-PGD, one restart, the same number of steps; natural = PGD with
eps 0), optimizers of the same structure (per-expert weight decay and lr
schedule chosen by `lax.switch` on the expert index: cheap elementwise work).
The threat model is per-expert data (`attacks.training.pgd_norm_indexed`). Other
tasks (TRADES, MART, multi-norm baselines) keep the loop (`stack_spec` -> None).

The TrainState layout (tuples of per-expert trees) is unchanged, so checkpoints
do not depend on the switch; stacking happens inside the jitted step.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class StackSpec:
  """What the vmapped update of stacked experts needs, per expert as arrays over
  the expert axis (`stack_spec` builds it; `step.py` reads it)."""
  norms: tuple  # the distinct threat models, branch order
  norm_index: np.ndarray  # [N] int32, per expert
  eps: np.ndarray  # [N] float32 (0 for natural experts)
  step_size: np.ndarray  # [N] float32
  steps: int
  random_start: bool
  unroll: object


def stack_spec(expert_configs, optimizers, params) -> tuple[StackSpec | None, str]:
  """Whether the experts can be stacked, and how.

  Args:
    expert_configs: the experts' configs (`config.experts[name]`), in order.
    optimizers: their optax transformations, in the same order.
    params: the model's params (arrays or `jax.ShapeDtypeStruct`s), to compare
      the optimizers' state structures.

  Returns:
    (spec, '') when the experts can be stacked, else (None, why not): all are
    'natural' or 'pgd' with kind=pgd, loss=ce, restarts=1 and one value of
    steps and random_start, and the optimizers' states have one structure.
  """
  attacks_ = [e.attack for e in expert_configs if e.task == 'pgd']
  if any(e.task not in ('natural', 'pgd') for e in expert_configs):
    return None, 'only natural and pgd experts stack'
  if any(a.kind != 'pgd' or a.loss != 'ce' or a.restarts != 1 for a in attacks_):
    return None, 'stacked pgd experts need kind=pgd, loss=ce, restarts=1'
  if len({int(a.steps) for a in attacks_}) > 1 or len({bool(a.random_start) for a in attacks_}) > 1:
    return None, 'stacked pgd experts need the same steps and random_start'
  structures = {jax.tree.structure(jax.eval_shape(tx.init, params)) for tx in optimizers}
  if len(structures) > 1:
    return None, 'stacked experts need optimizers of the same structure'
  norms = tuple(sorted({a.norm for a in attacks_})) or ('linf',)
  index = [norms.index(e.attack.norm) if e.task == 'pgd' else 0 for e in expert_configs]
  eps = [float(e.attack.eps) if e.task == 'pgd' else 0.0 for e in expert_configs]
  step = [float(e.attack.step_size) if e.task == 'pgd' else 0.0 for e in expert_configs]
  return StackSpec(norms=norms, norm_index=np.asarray(index, np.int32),
                   eps=np.asarray(eps, np.float32), step_size=np.asarray(step, np.float32),
                   steps=int(attacks_[0].steps) if attacks_ else 1,
                   random_start=bool(attacks_[0].random_start) if attacks_ else False,
                   unroll=attacks_[0].unroll if attacks_ else 'auto'), ''


def stack(trees):
  """N pytrees of one structure -> one pytree on a new leading axis.

  Args:
    trees: N pytrees of one structure.

  Returns:
    One pytree of that structure, each leaf [N, ...].
  """
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree, n: int) -> tuple:
  """The inverse of `stack`.

  Args:
    tree: a pytree whose leaves have a leading axis of size >= n.
    n: how many pytrees to take.

  Returns:
    The n pytrees `tree[i]` (leaf by leaf), as a tuple.
  """
  return tuple(jax.tree.map(lambda leaf: leaf[i], tree) for i in range(n))
