"""Clean and adversarial accuracy of a run's learners under one attack from the
config (validation during training, the final test): per-example flags on the
device, summaries on the host.

Metrics of a learner (`summarize`): clean_acc, robust_acc (under the attack),
sum_acc = clean_acc + robust_acc (the reference's selection quantity), loss and
adv_loss (mean cross-entropy on clean and adversarial inputs).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax import attacks
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax import parallel

METRICS = ('clean_acc', 'robust_acc', 'sum_acc')  # what eval.best_metric may select on


def make_eval_fn(model, attack_config, mesh=None, compute_dtype=None) -> Callable:
  """(variables, x, y, key) -> per-example flags and losses (numpy, [B] each):
  'clean', 'adv' (correct on clean / attacked input), 'loss', 'adv_loss'.

  x, y: one host batch, the same on every process; each process feeds its rows
  to the jitted evaluation (batch sharded on 'data') and gets all flags back.

  Args:
    model: the flax module; learners run in BatchNorm eval mode.
    attack_config: the attack (`attacks.make_attack`), e.g. `config.eval.val_attack`.
    mesh: the device mesh; None for `parallel.make_mesh()`.
    compute_dtype: as `models.apply_model`.

  Returns:
    eval_fn(variables, x [B, H, W, C] float in [0, 1], y [B] int, key) -> dict of
    [B] numpy arrays.
  """
  attack = attacks.make_attack(attack_config)
  mesh = mesh if mesh is not None else parallel.make_mesh()

  @functools.partial(
      jax.jit,
      in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh),
                    parallel.batch_sharded(mesh), parallel.replicated(mesh)),
      out_shardings=parallel.batch_sharded(mesh),  # flags stay per row
      compiler_options=models.compiler_options())
  def evaluate_batch(variables, x, y, key):

    def logits_fn(inputs):
      return models.apply_model(model, variables, inputs, train=False,
                                compute_dtype=compute_dtype)[0]

    logits = logits_fn(x)
    adv_logits = logits_fn(attack(logits_fn, x, y, key))
    return {
        'clean': jnp.argmax(logits, -1) == y, 'adv': jnp.argmax(adv_logits, -1) == y,
        'loss': attacks.cross_entropy(logits, y), 'adv_loss': attacks.cross_entropy(adv_logits, y)
    }

  def evaluate_host_batch(variables, x, y, key):
    rows = len(x) // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    batch = parallel.global_batch({'x': x[mine], 'y': y[mine]}, mesh)
    return parallel.gather(evaluate_batch(variables, batch['x'], batch['y'], key))

  return evaluate_host_batch


def evaluate_flags(eval_fn, variables, images, labels, batch_size: int, seed: int) -> dict:
  """Per-example flags over a whole split (numpy, length = len(labels)).

  Args:
    eval_fn: from `make_eval_fn`.
    variables: the learner's {'params', 'batch_stats'}.
    images: uint8 [N, H, W, C]; labels: [N] int.
    batch_size: rows per call (the last batch is zero-padded, then cut).
    seed: batch b's attack key is fold_in(PRNGKey(seed), b).

  Returns:
    {'clean', 'adv', 'loss', 'adv_loss'} -> [N] numpy arrays.
  """
  key = jax.random.PRNGKey(seed)
  chunks = []
  for b, (x, y, n_valid) in enumerate(data_lib.eval_batches(images, labels, batch_size)):
    out = eval_fn(variables, x, y, jax.random.fold_in(key, b))
    chunks.append({k: np.asarray(v)[:n_valid] for k, v in out.items()})
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def summarize(flags: dict) -> dict:
  """A learner's metrics from its per-example results.

  Args:
    flags: `evaluate_flags`' dict (clean, adv, loss, adv_loss per example).

  Returns:
    {clean_acc, robust_acc, sum_acc (fractions in [0, 1]; sum_acc up to 2), loss,
    adv_loss (mean cross-entropy)}.
  """
  return {
      'clean_acc': float(flags['clean'].mean()), 'robust_acc': float(flags['adv'].mean()),
      'sum_acc': float(flags['clean'].mean() + flags['adv'].mean()),
      'loss': float(flags['loss'].mean()), 'adv_loss': float(flags['adv_loss'].mean())
  }


def evaluate_learners(eval_fn, learners: dict, split, batch_size: int, seed: int) -> dict:
  """{'<learner>/<metric>': value} for every learner on `split`.

  Args:
    eval_fn: from `make_eval_fn`.
    learners: name -> variables.
    split: (uint8 images, labels), e.g. `dataset.val`.
    batch_size, seed: as `evaluate_flags` (the same seed for every learner).

  Returns:
    A flat dict of floats, the metrics of `summarize`.
  """
  images, labels = split
  out = {}
  for name, variables in learners.items():
    summary = summarize(evaluate_flags(eval_fn, variables, images, labels, batch_size, seed))
    out.update({f'{name}/{k}': v for k, v in summary.items()})
  return out


def selection_value(metrics: dict, best_metric: str, clean_floor: float = 0.0,
                    prefix: str = 'val/') -> float | None:
  """The value `best_metric` ('<learner>/<metric>') has in one validation record,
  or None when that learner's clean accuracy is under `clean_floor` (the
  reference keeps the global learner only at >= 88% clean, on CIFAR-10 ResNet-18).

  Args:
    metrics: one validation record ('<prefix><learner>/<metric>' -> value).
    best_metric: `eval.best_metric`, '<learner>/<metric>'.
    clean_floor: the least clean accuracy, a fraction in [0, 1].
    prefix: the records' key prefix.

  Returns:
    The value, or None (also when the record lacks it).
  """
  learner = best_metric.split('/')[0]
  clean = metrics.get(f'{prefix}{learner}/clean_acc')
  value = metrics.get(f'{prefix}{best_metric}')
  if value is None or clean is None or clean < clean_floor:
    return None
  return value


def select_best(records, best_metric: str, clean_floor: float = 0.0,
                prefix: str = 'val/') -> tuple[int, float] | None:
  """(step, value) of the validation record with the highest `selection_value`
  (the first on ties), or None when no record qualifies.

  Args:
    records: validation records, each with a 'step'.
    best_metric, clean_floor, prefix: as `selection_value`.
  """
  best = None
  for r in records:
    value = selection_value(r, best_metric, clean_floor, prefix)
    if value is not None and (best is None or value > best[1]):
      best = (int(r['step']), value)
  return best
