"""Expert tasks: what an expert trains on. A task = (inputs, loss).

`inputs(logits_fn, x, y, key)` builds the training inputs (clean or
adversarial; `logits_fn` is the expert with BatchNorm in eval mode) and
`loss(logits, y)` is the mean loss on them, computed in train mode.

A task whose loss needs several forward passes (TRADES / MART: clean AND
adversarial logits; AVG: one batch per threat model) returns a TUPLE of
batches from `inputs`; the trainer runs them through the model in order, in
train mode (BatchNorm statistics updated after each, as consecutive PyTorch
forward calls), and `loss` receives the tuple of logits.

Adding a task is one factory below and one row in `TASKS`, which also says
which fields of the expert config the task reads (config validation checks
those), e.g.

    def clean_kl_task(expert_config) -> Task:
      return Task(inputs=lambda logits_fn, x, y, key: (x, x + 0.01),
                  loss=lambda logits, y: mean_cross_entropy(logits[0], y) + ...)
    TASKS['clean_kl'] = TaskSpec(clean_kl_task)
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from generalist_jax import attacks
from generalist_jax.attacks import training as training_attacks


@dataclasses.dataclass(frozen=True)
class Task:
  """What an expert trains on (module docstring): `inputs(logits_fn, x, y, key)`
  -> the batch, or a tuple of batches, to train on, with `logits_fn` the expert in
  BatchNorm eval mode; `loss(logits, y)` -> the scalar mean loss on their logits
  (a tuple of logits for a tuple of batches). x [B, H, W, C] float in [0, 1],
  y [B] int labels, key a PRNG key. Both run inside the jitted train step.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from generalist_jax.method.tasks import Task, mean_cross_entropy
    >>> brighter = Task(inputs=lambda logits_fn, x, y, key: jnp.clip(x + 0.1, 0, 1),
    ...                 loss=mean_cross_entropy)
    >>> x, y = jnp.full((2, 4, 4, 3), 0.5), jnp.array([0, 1])
    >>> logits_fn = lambda x: jnp.zeros((x.shape[0], 10))
    >>> float(brighter.inputs(logits_fn, x, y, jax.random.PRNGKey(0)).max())
    0.6...
    >>> float(brighter.loss(logits_fn(x), y))   # log(10)
    2.30...
  """
  inputs: Callable[..., jax.Array | tuple]
  loss: Callable[..., jax.Array]


def mean_cross_entropy(logits, labels):
  """The batch mean of softmax cross-entropy.

  Args:
    logits: [B, K] float.
    labels: [B] int class indices.

  Returns:
    Scalar float.
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def natural_task(expert_config) -> Task:
  """Natural training: CE on the clean batch.

  Args:
    expert_config: the expert's config (not read).

  Returns:
    The `Task`: the batch as it is, `mean_cross_entropy`.
  """
  del expert_config
  return Task(inputs=lambda logits_fn, x, y, key: x, loss=mean_cross_entropy)


def pgd_task(expert_config) -> Task:
  """Madry et al. adversarial training: CE on PGD examples.

  Args:
    expert_config: the expert's config (`config.experts[name]`); its `attack` is
      bound by `attacks.make_attack`.

  Returns:
    The expert's `Task`.
  """
  return Task(inputs=attacks.make_attack(expert_config.attack), loss=mean_cross_entropy)


# --- TRADES / MART: losses on (clean, adversarial) logits ---------------------


def trades_loss(logits, labels, beta):
  """TRADES (Zhang et al. 2019, yaodongyu/TRADES trades.py `trades_loss`):
  CE(f(x), y) + beta * mean_b KL(f(x) || f(x')); gradients through both terms.

  Args:
    logits: (clean, adversarial) logits, each [B, K].
    labels: [B] int.
    beta: the KL term's weight.

  Returns:
    Scalar loss.
  """
  clean, adv = logits
  return (mean_cross_entropy(clean, labels) +
          beta * training_attacks.kl_divergence(clean, adv).mean())


def mart_loss(logits, labels, beta):
  """MART (Wang et al. 2020, YisenWang/MART mart.py `mart_loss`), with the
  reference's constants:
    BCE = CE(f(x'), y) - log(1.0001 - p'_{y'} + 1e-12), y' = the most likely
          wrong class under f(x');
    + beta * mean_b [ KL(f(x) || f(x')) * (1.0000001 - p_y(x)) ]
  (the reference's KL takes log(p' + 1e-12)).

  Args:
    logits: (clean, adversarial) logits, each [B, K].
    labels: [B] int.
    beta: the weighted KL term's weight.

  Returns:
    Scalar loss.
  """
  clean, adv = logits
  adv_probs = jax.nn.softmax(adv)
  top2 = jnp.argsort(adv_probs, axis=-1)[:, -2:]
  wrong = jnp.where(top2[:, -1] == labels, top2[:, -2], top2[:, -1])
  p_wrong = jnp.take_along_axis(adv_probs, wrong[:, None], -1)[:, 0]
  bce = mean_cross_entropy(adv, labels) - jnp.log(1.0001 - p_wrong + 1e-12).mean()
  log_nat = jax.nn.log_softmax(clean)
  nat_probs = jnp.exp(log_nat)
  kl = jnp.sum(nat_probs * (log_nat - jnp.log(adv_probs + 1e-12)), -1)
  true_prob = jnp.take_along_axis(nat_probs, labels[:, None], -1)[:, 0]
  return bce + beta * jnp.mean(kl * (1.0000001 - true_prob))


def _attack_kwargs(attack_config) -> dict:
  return dict(eps=float(attack_config.eps), step_size=float(attack_config.step_size),
              steps=int(attack_config.steps), norm=attack_config.norm, unroll=attack_config.unroll)


def _pair_task(attack, loss, expert_config) -> Task:
  """A Task whose inputs are (clean, attacked) and whose loss takes the config's `beta`."""
  bound = functools.partial(attack, **_attack_kwargs(expert_config.attack))
  return Task(inputs=lambda logits_fn, x, y, key: (x, bound(logits_fn, x, y, key)),
              loss=functools.partial(loss, beta=float(expert_config.beta)))


def trades_task(expert_config) -> Task:
  """TRADES: the KL attack from x + 0.001 N(0, 1); loss `trades_loss`.

  Args:
    expert_config: the expert's config (`config.experts[name]`); reads `attack` (eps,
      step_size, steps, norm, unroll) and `beta`.

  Returns:
    The expert's `Task`.
  """
  return _pair_task(training_attacks.trades_attack, trades_loss, expert_config)


def mart_task(expert_config) -> Task:
  """MART: CE-PGD from x + 0.001 N(0, 1); loss `mart_loss`.

  Args:
    expert_config: as `trades_task` (its `attack` and `beta`).

  Returns:
    The expert's `Task`.
  """
  return _pair_task(training_attacks.ce_attack_small_start, mart_loss, expert_config)


# --- several threat models (config: `norms` and `norm_attacks`) --------------


def _per_norm_attacks(expert_config) -> list:
  return [attacks.make_attack(expert_config.norm_attacks[n]) for n in expert_config.norms]


def mean_over_batches_loss(logits, labels):
  """AVG: the mean of the per-batch mean cross-entropies.

  Args:
    logits: a tuple of [B, K] logits, one per batch.
    labels: [B] int, shared by all batches.

  Returns:
    Scalar loss.
  """
  return jnp.mean(jnp.stack([mean_cross_entropy(l, labels) for l in logits]))


def avg_task(expert_config) -> Task:
  """AVG (Tramer & Boneh 2019; Maini et al. 2020): one PGD batch per norm, loss
  the mean of their CEs (each batch a train-mode forward pass).

  Args:
    expert_config: the expert's config (`config.experts[name]`); reads `norms` and
      `norm_attacks[norm]` for each.

  Returns:
    The expert's `Task`.
  """
  per_norm = _per_norm_attacks(expert_config)
  return Task(
      inputs=lambda logits_fn, x, y, key: tuple(
          training_attacks.per_norm_examples(per_norm, logits_fn, x, y, key)),
      loss=mean_over_batches_loss)


def max_task(expert_config) -> Task:
  """MAX (Tramer & Boneh 2019; Maini et al. 2020): one PGD batch per norm; each
  example trains on the norm where its CE (BN eval mode) is highest.

  Args:
    expert_config: as `avg_task` (its `norms` and `norm_attacks`).

  Returns:
    The expert's `Task`.
  """
  per_norm = _per_norm_attacks(expert_config)

  def inputs(logits_fn, x, y, key):
    candidates = training_attacks.per_norm_examples(per_norm, logits_fn, x, y, key)
    return training_attacks.worst_per_example(logits_fn, candidates, y)[0]

  return Task(inputs=inputs, loss=mean_cross_entropy)


def msd_task(expert_config) -> Task:
  """MSD (Maini et al. 2020): CE on the multi-steepest-descent attack; eps and
  step size per norm from `norm_attacks`, steps from the first of `norms`.

  Args:
    expert_config: the expert's config (`config.experts[name]`); reads `norms` and
      `norm_attacks[norm]` (eps, step_size; steps and unroll of the first).

  Returns:
    The expert's `Task`.
  """
  cfgs = [expert_config.norm_attacks[n] for n in expert_config.norms]
  attack = functools.partial(training_attacks.msd, norms=tuple(expert_config.norms),
                             eps=[float(c.eps) for c in cfgs],
                             step_sizes=[float(c.step_size) for c in cfgs],
                             steps=int(cfgs[0].steps), unroll=cfgs[0].unroll)
  return Task(inputs=attack, loss=mean_cross_entropy)


def eat_task(expert_config) -> Task:
  """E-AT (Croce & Hein 2022, fra31/robust-finetuning train.py): each batch is
  attacked in one threat model drawn from `norms` (paper: l1 and l-inf, so l2
  comes for free). Drawn uniformly from the step key, which is the reference's
  rule until both norms have statistics; its later reweighting by 1 - running
  robust accuracy per norm needs state outside TrainState and is left out.

  Args:
    expert_config: as `avg_task` (its `norms` and `norm_attacks`).

  Returns:
    The expert's `Task`.
  """
  per_norm = _per_norm_attacks(expert_config)
  return Task(inputs=functools.partial(training_attacks.one_sampled_norm, per_norm),
              loss=mean_cross_entropy)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """A registry row: the factory and the expert-config fields it reads."""
  build: Callable[..., Task]  # expert config -> Task
  reads: tuple[str, ...] = ()  # 'attack', 'beta', 'norms' (+ 'norm_attacks')
  check: Callable[..., str | None] | None = None  # expert config -> what is wrong, or None


def _msd_check(expert_config) -> str | None:
  steps = {expert_config.norm_attacks[n].steps for n in expert_config.norms}
  if len(steps) > 1:
    return (f'msd takes one step of every norm per iteration: give the norms in '
            f'{tuple(expert_config.norms)} the same steps, got {sorted(steps)}.')
  return None


TASKS = {
    'natural': TaskSpec(natural_task),
    'pgd': TaskSpec(pgd_task, reads=('attack',)),
    'trades': TaskSpec(trades_task, reads=('attack', 'beta')),
    'mart': TaskSpec(mart_task, reads=('attack', 'beta')),
    'avg': TaskSpec(avg_task, reads=('norms',)),
    'max': TaskSpec(max_task, reads=('norms',)),
    'msd': TaskSpec(msd_task, reads=('norms',), check=_msd_check),
    'eat': TaskSpec(eat_task, reads=('norms',)),
}


def make_task(expert_config) -> Task:
  """The Task of an expert config.

  Args:
    expert_config: the expert's config; its `task` is a key of TASKS.

  Returns:
    The `Task` that TASKS' factory builds from it.

  Raises:
    ValueError: `task` is not in TASKS.
  """
  if expert_config.task not in TASKS:
    raise ValueError(f'task={expert_config.task!r} is unknown; registered tasks: '
                     f'{sorted(TASKS)}.')
  return TASKS[expert_config.task].build(expert_config)
