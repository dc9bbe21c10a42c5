"""Expert tasks: what an expert trains on. A task = (inputs, loss).

`inputs(logits_fn, x, y, key)` builds the training inputs (clean or
adversarial; `logits_fn` is the expert with BatchNorm in eval mode) and
`loss(logits, y)` is the mean loss on them, computed in train mode.

Adding a task is one factory below and one line in `TASKS`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import optax

from generalist_jax import attacks


@dataclasses.dataclass(frozen=True)
class Task:
  inputs: Callable[..., jax.Array]
  loss: Callable[[jax.Array, jax.Array], jax.Array]


def mean_cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def natural_task(expert_config) -> Task:
  del expert_config
  return Task(inputs=lambda logits_fn, x, y, key: x, loss=mean_cross_entropy)


def pgd_task(expert_config) -> Task:
  """Madry et al. adversarial training: CE on PGD examples."""
  return Task(inputs=attacks.make_attack(expert_config.attack),
              loss=mean_cross_entropy)


TASKS = {
    'natural': natural_task,
    'pgd': pgd_task,
}


def make_task(expert_config) -> Task:
  if expert_config.task not in TASKS:
    raise ValueError(f'task={expert_config.task!r} is unknown; registered tasks: '
                     f'{sorted(TASKS)}.')
  return TASKS[expert_config.task](expert_config)
