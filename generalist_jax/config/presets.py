"""The scale switches of the config arg (`--config=FILE.py:smoke,epochs=N,...`:
`apply_arg`, `smoke`, `reference_clock`, `miniature`, `scale_attack_steps`), and
shortcuts that build the paper runs' experts for tests and benchmarks.

The files in `configs/` spell their numbers out and do not use the shortcuts
(`generalist_experts`, `single_expert_config`, `baseline_config`, `norm_experts`);
tests/test_config.py checks that each shortcut builds exactly the config file it
stands for.
"""
from __future__ import annotations

import ml_collections

from generalist_jax.config.builders import base_config, expert, norm_attacks, pgd_attack, sgd

# The reference schedules (README "The method, as implemented"), in epochs out of 120, as
# configs/generalist_cifar10.py sets them.
REFERENCE_EPOCHS = 120
RESNET_LR_EPOCHS = (0, 40, 80, 120)
RESNET_LR_VALUES = (0.01, 0.01, 0.001, 0.0001)
ROBUST_MIX = (1.0, 1.0, 1.0, 0.4)  # beta at (0, E/3, 2E/3, E)


def generalist_experts(lr_epochs=RESNET_LR_EPOCHS, lr_values=RESNET_LR_VALUES, robust_wd=3.5e-3,
                       natural_wd=5e-4) -> ml_collections.ConfigDict:
  """The CVPR'23 pair: a natural expert and an l-inf PGD-10 expert (the experts of
  configs/generalist_cifar10.py).

  Args:
    lr_epochs, lr_values: both experts' piecewise-linear lr knots (epochs) and
      values.
    robust_wd, natural_wd: each expert's weight decay.

  Returns:
    ConfigDict {'natural', 'robust'} of expert configs; mixing weights
    1 - ROBUST_MIX and ROBUST_MIX.
  """
  return ml_collections.ConfigDict(
      dict(
          natural=expert('natural', sgd(lr_epochs, lr_values, natural_wd),
                         mix_values=tuple(1.0 - b for b in ROBUST_MIX)),
          robust=expert('pgd', sgd(lr_epochs, lr_values, robust_wd), mix_values=ROBUST_MIX,
                        attack=pgd_attack(steps=10)),
      ))


def single_expert_config(name: str, best_metric: str,
                         expert_config=None) -> ml_collections.ConfigDict:
  """A plain single-model baseline: one expert (by default the one of the
  Generalist pair called `name`; same optimizer and budget), mixing weight 1,
  no sync; its 'global' learner is then just the EMA of that expert.

  Args:
    name: the expert's name, 'natural' or 'robust' unless `expert_config` is given.
    best_metric: `eval.best_metric`, e.g. 'robust/robust_acc'.
    expert_config: the expert to use instead of the pair's `name`.

  Returns:
    A full run config (`base_config()` with that one expert).
  """
  c = base_config()
  c.experts = generalist_experts()
  if expert_config is not None:
    c.experts[name] = expert_config
  for other in [n for n in c.experts.keys() if n != name]:
    del c.experts[other]
  c.meta.sync.kind = 'never'
  c.experts[name].mix_values = (1.0,) * len(c.meta.mix_epochs)
  c.eval.best_metric = best_metric
  return c


def robust_expert(task, attack=None, *, beta=6.0, norms=(),
                  per_norm=None) -> ml_collections.ConfigDict:
  """An expert with the robust expert's optimizer (reference lr, wd 3.5e-3) and
  mixing weights ROBUST_MIX.

  Args:
    task, attack, beta, norms, per_norm: as `builders.expert`.

  Returns:
    The expert's ConfigDict.
  """
  return expert(task, sgd(RESNET_LR_EPOCHS, RESNET_LR_VALUES, 3.5e-3), mix_values=ROBUST_MIX,
                attack=attack, beta=beta, norms=norms, per_norm=per_norm)


def baseline_config(task, attack=None, *, beta=6.0, norms=(),
                    per_norm=None) -> ml_collections.ConfigDict:
  """A one-expert baseline named 'robust' with task `task` and PGD-AT's budget,
  selected on 'robust/robust_acc'.

  Args:
    task, attack, beta, norms, per_norm: as `robust_expert`.

  Returns:
    A full run config (`single_expert_config`).
  """
  return single_expert_config(
      'robust', 'robust/robust_acc',
      robust_expert(task, attack, beta=beta, norms=norms, per_norm=per_norm))


def norm_experts(norms=('l1', 'l2', 'linf'), steps=10) -> ml_collections.ConfigDict:
  """Generalist++ reading: one PGD expert per threat model (name = norm), at
  MULTI_NORM_EPS, with the robust expert's optimizer; equal mixing weights.

  Args:
    norms: the threat models, each a key of `builders.norm_attacks`.
    steps: PGD steps of every expert's attack.

  Returns:
    ConfigDict norm -> expert config.
  """
  attacks_ = norm_attacks(steps)
  out = ml_collections.ConfigDict()
  for n in norms:
    out[n] = robust_expert('pgd', attacks_[n])
    out[n].mix_values = (1.0 / len(norms),) * len(ROBUST_MIX)
  return out


def scale_epochs(c, num_epochs: int) -> None:
  """Rescales every epoch knot (lr, mixing; the sync start unless the timescale is
  'relative', where the sync rule counts virtual epochs) to `num_epochs`.

  Args:
    c: the run config, changed in place (num_epochs too).
    num_epochs: the new number of epochs.
  """
  ratio = num_epochs / c.num_epochs
  c.num_epochs = num_epochs
  c.meta.mix_epochs = tuple(k * ratio for k in c.meta.mix_epochs)
  if c.meta.timescale != 'relative':
    c.meta.sync.start_epoch = int(round(c.meta.sync.start_epoch * ratio))
  for name in c.experts.keys():
    opt = c.experts[name].optimizer
    opt.lr_epochs = tuple(k * ratio for k in opt.lr_epochs)


def miniature(c, num_epochs: int) -> None:
  """A run-relative miniature of `c` in `num_epochs`: the run-relative timescale (EMA
  horizon and sync rule as shares of the run's steps, the sync rule on the
  reference's 120 virtual epochs) and every epoch knot rescaled.

  Args:
    c: the run config, changed in place.
    num_epochs: the miniature's epochs.
  """
  c.meta.timescale = 'relative'
  scale_epochs(c, num_epochs)


def smoke(c, num_epochs: int = 10, train_size: int = 5000) -> None:
  """CPU scale: a CIFAR-10 subset (5,000 images), a narrow BN SmallCNN, 10 epochs
  (390 steps), as a `miniature`: an EMA horizon of 8 steps, sync windows of 3-4 steps.
  Also 500 validation and 1,000 test images, batch 128, and a 5-step validation
  attack.

  Args:
    c: the run config, changed in place.
    num_epochs: the miniature's epochs.
    train_size: training images.
  """
  c.data.train_size = train_size
  c.data.val_size = 500
  c.data.test_size = 1000
  c.model.name = 'small_cnn'
  c.model.batch_norm = True
  c.model.width = 0.5
  c.batch_size = 128
  miniature(c, num_epochs)
  c.eval.batch_size = 500
  c.eval.val_attack.steps = 5
  c.eval.val_attack.step_size = 2.5 * c.eval.val_attack.eps / 5
  c.log_every_steps = 10


def reference_clock(c) -> None:
  """The reference's schedule in steps, unscaled, on a model and images small enough
  for one CPU core (why: experiments/reference_clock_cifar10_cpu/README.md).

  Kept as the reference (PKU-ML/Generalist `main.py`): 120 epochs of batch 128 (all
  49,000 training images left after 1,000 held out for validation: 382 steps an
  epoch, T = 45,840, every time constant within 2.3% of the reference's 46,920),
  EMA decay min(0.999, (t+1)/(t+10)), sync on every step of epochs 75, 80, ..., 120,
  lr and mixing knots at epochs 0 / 40 / 80 / 120, the integer clock (schedules
  read at the epoch counted from 1), l-inf PGD-10 at 8/255, step 2/255.
  Shrunk: CIFAR-10 as 16x16 block means (`data.downsample=2`), a BN SmallCNN of
  width 0.5. Validation: PGD-10 on the 1,000 held-out images, every 2 epochs and
  around every sync window.

  Args:
    c: the run config, changed in place.
  """
  c.data.val_size = 1000
  c.data.train_size = None
  c.data.test_size = None
  c.data.downsample = 2
  c.model.name = 'small_cnn'
  c.model.batch_norm = True
  c.model.width = 0.5
  c.batch_size = 128
  c.num_epochs = REFERENCE_EPOCHS
  c.meta.timescale = 'epochs'
  c.meta.clock = 'integer'
  c.meta.ema_max_decay = 0.999
  c.eval.batch_size = 500
  c.eval.every_epochs = 2
  c.log_every_steps = 382


def parse_arg(arg: str | None, known: tuple) -> dict:
  """'a,b=2' -> {'a': '1', 'b': '2'}.

  Args:
    arg: the config arg (comma-separated keys and key=value pairs), or None.
    known: the keys allowed (at least two: the message gives an example).

  Returns:
    key -> value string ('1' for a bare key).

  Raises:
    ValueError: a key not in `known`.
  """
  opts = dict(
      part.split('=', 1) if '=' in part else (part, '1') for part in (arg or '').split(',') if part)
  unknown = set(opts) - set(known)
  if unknown:
    raise ValueError(f'unknown config arg keys {sorted(unknown)}; use '
                     f"{', '.join(known)} (e.g. \":{known[0]},{known[1]}=10\").")
  return opts


def scale_attack_steps(c, steps: int) -> None:
  """Every training attack of every expert (`attack` and `norm_attacks`) to
  `steps` iterations, the step size scaled by old/new steps (same path length:
  l-inf PGD-10 at 2/255 becomes PGD-5 at 4/255).

  Args:
    c: the run config, changed in place.
    steps: the new number of attack iterations.
  """
  for name in c.experts.keys():
    e = c.experts[name]
    for a in [e.attack] + [e.norm_attacks[n] for n in e.norm_attacks.keys()]:
      a.step_size = a.step_size * a.steps / steps
      a.steps = steps


def apply_arg(c, arg: str | None):
  """The config arg after ':' in --config=file.py:ARG, big_vision style:
  comma-separated 'smoke' and key=value pairs, e.g. 'smoke,epochs=10,train_size=10000'.

  smoke: the CPU scale of `smoke()`; reference_clock: the reference's schedule in
  steps on 16x16 images and a small model (`reference_clock()`); epochs=N makes a
  `miniature` of N epochs;
  train_size=N and test_size=N subset the data (test_size=0: the full test set);
  attack_steps=N sets every training attack to N steps (`scale_attack_steps`).

  Args:
    c: the run config, changed in place.
    arg: the config arg, or None.

  Returns:
    `c`.

  Raises:
    ValueError: an unknown key, or 'reference_clock' with 'smoke' or 'epochs'.
  """
  opts = parse_arg(
      arg, ('smoke', 'epochs', 'train_size', 'test_size', 'attack_steps', 'reference_clock'))
  if 'reference_clock' in opts:
    if {'smoke', 'epochs'} & set(opts):
      raise ValueError("the config arg 'reference_clock' keeps the reference's 120 epochs; "
                       "drop 'smoke' / 'epochs' from it.")
    reference_clock(c)
  if 'attack_steps' in opts:
    scale_attack_steps(c, int(opts['attack_steps']))
  if 'smoke' in opts:
    smoke(c, num_epochs=int(opts.get('epochs', 10)), train_size=int(opts.get('train_size', 5000)))
  elif 'epochs' in opts:
    miniature(c, int(opts['epochs']))
  if 'train_size' in opts and 'smoke' not in opts:
    c.data.train_size = int(opts['train_size'])
  if 'test_size' in opts:
    c.data.test_size = int(opts['test_size']) or None
  return c
