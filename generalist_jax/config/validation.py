"""Up-front config validation: runs before any data is read or anything
compiles, and names the field, what is wrong and what would be valid.

One function per concern (run, data, model, experts, meta-update, evaluation).
Allowed values come from the module that owns them (`attacks.registry`,
`method.tasks`, `method.schedules`, `models`, `data`, `evaluation.learners`);
this module only checks against them.
"""
from __future__ import annotations

import math

import jax
import numpy as np

from generalist_jax import attacks
from generalist_jax import data
from generalist_jax import models
from generalist_jax.attacks import losses
from generalist_jax.attacks import registry
from generalist_jax.attacks import threat
from generalist_jax.config.schema import ConfigError, check, check_config_schema, check_increasing
from generalist_jax.evaluation import learners as learner_eval
from generalist_jax.method import schedules
from generalist_jax.method import step as step_lib
from generalist_jax.method import tasks
from generalist_jax.method import timescale
from generalist_jax.models import cpu_ops

COMPUTE_DTYPES = ('float32', 'bfloat16')


def check_attack(attack, field: str) -> None:
  """An attack config (`builders.pgd_attack()`) that `attacks.make_attack` can build.

  Checks the norm, kind (registered, and implemented for the norm), loss, eps >= 0
  (and an l-inf eps's own limit; l2 / l1 limits need the image size, see
  `validate_for_data`), step_size >= 0, steps >= 1 and restarts >= 1.

  Args:
    attack: the attack config.
    field: its dotted path, for messages (e.g. 'eval.test_attack').

  Raises:
    ConfigError: naming the first field that is wrong.
  """
  check(attack.norm in attacks.NORMS, f'{field}.norm',
        f'{attack.norm!r} is unknown; use one of {tuple(attacks.NORMS)}.')
  kinds = sorted(registry.ATTACKS)
  check(attack.kind in kinds, f'{field}.kind', f'{attack.kind!r} is unknown; use one of {kinds}.')
  check(
      attack.kind in registry.implemented(attack.norm), f'{field}.kind',
      f'{attack.kind!r} is not implemented for norm {attack.norm!r}; with that norm use '
      f'one of {registry.implemented(attack.norm)} (or change {field}.norm).')
  check(attack.loss in attacks.LOSSES, f'{field}.loss',
        f'{attack.loss!r} is unknown; use one of {tuple(attacks.LOSSES)}.')
  check(attack.eps >= 0, f'{field}.eps', f'must be >= 0, got {attack.eps}.')
  if attack.norm == 'linf':  # l2 / l1 limits need the image size: validate_for_data
    problem = threat.eps_problem('linf', float(attack.eps), 1)
    check(problem is None, f'{field}.eps', problem or '')
  check(attack.step_size >= 0, f'{field}.step_size', f'must be >= 0, got {attack.step_size}.')
  check(attack.steps >= 1, f'{field}.steps', f'must be >= 1, got {attack.steps}.')
  check(attack.restarts >= 1, f'{field}.restarts', f'must be >= 1, got {attack.restarts}.')


def _check_attack_classes(attack, field: str, num_classes: int) -> None:
  """The attack's loss and targets against the data's classes (`registry.check_classes`);
  the error names `.loss` when the configured loss is the problem, else `.kind`."""
  settings = attacks.attack_settings(attack)
  try:
    registry.check_classes(attack.kind, settings, num_classes)
  except ValueError as e:
    loss_field = 'loss' in settings and losses.classes_problem(settings['loss'], num_classes)
    check(False, f"{field}.{'loss' if loss_field else 'kind'}", str(e))


def _check_run(c, devices: int) -> None:
  check(c.num_epochs >= 1, 'num_epochs', f'must be >= 1, got {c.num_epochs}.')
  check(c.batch_size >= 1, 'batch_size', f'must be >= 1, got {c.batch_size}.')
  check(c.batch_size % devices == 0, 'batch_size',
        f'{c.batch_size} does not split over {devices} devices; use a multiple of {devices}.')
  check(c.compute_dtype in COMPUTE_DTYPES, 'compute_dtype',
        f'{c.compute_dtype!r} is unknown; use one of {COMPUTE_DTYPES}.')
  check(c.mesh.data in (-1, devices), 'mesh.data',
        f'{c.mesh.data} does not match the {devices} visible devices; use -1 (all).')
  check(c.checkpoint.keep >= 1, 'checkpoint.keep', f'must be >= 1, got {c.checkpoint.keep}.')
  check(c.checkpoint.every_steps >= 0, 'checkpoint.every_steps', 'must be >= 0 (0: every epoch).')
  check(c.log_every_steps >= 1, 'log_every_steps', f'must be >= 1, got {c.log_every_steps}.')


def _check_data(d) -> None:
  check(d.source in data.SOURCES, 'data.source',
        f'{d.source!r} is unknown; use one of {tuple(data.SOURCES)}.')
  tfds_names = tuple(data.SUPPORTED_TFDS_DATASETS)
  if d.source == 'tfds':
    check(
        d.name in tfds_names, 'data.name', f'{d.name!r} is not supported; use one of {tfds_names} '
        "or data.source='npz' with data.path.")
  elif d.source == 'npz':
    check(bool(d.path), 'data.path', "data.source='npz' needs the path of an .npz file.")
  check(d.val_size >= 1, 'data.val_size',
        f'must be >= 1 (a validation split picks checkpoints), got {d.val_size}.')
  check(d.augment in data.AUGMENTATIONS, 'data.augment',
        f'{d.augment!r} is unknown; use one of {data.AUGMENTATIONS}.')
  check(
      d.get('downsample', 1) >= 1, 'data.downsample',
      f'must be >= 1 (1: full size, 2: 2x2 block means), got {d.get("downsample")}.')


def _check_init_from(c) -> None:
  source = c.get('init_from', None)
  if source is None or not source.workdir:
    return
  check(
      source.step >= 0, 'init_from.step',
      f'init_from.workdir={source.workdir!r} needs the step of one of its saved '
      f'checkpoints (>= 0), got {source.step}.')


def _check_model(m) -> None:
  check(m.name in models.MODEL_NAMES, 'model.name',
        f'{m.name!r} is unknown; use one of {models.MODEL_NAMES}.')
  check(m.width > 0, 'model.width', f'must be > 0, got {m.width}.')
  check(
      m.get('ops', 'auto') in cpu_ops.OPS, 'model.ops',
      f'{m.get("ops")!r} is unknown; use one of {cpu_ops.OPS}.')


def _check_optimizer(o, field: str, num_epochs: int) -> None:
  check(o.name == 'sgd', f'{field}.name', f"{o.name!r} is unknown; use 'sgd'.")
  check(o.weight_decay >= 0, f'{field}.weight_decay', f'must be >= 0, got {o.weight_decay}.')
  check(o.schedule in schedules.LR_SCHEDULES, f'{field}.schedule',
        f'{o.schedule!r} is unknown; use one of {tuple(schedules.LR_SCHEDULES)}.')
  if o.schedule == 'piecewise_linear':
    check(
        len(o.lr_epochs) == len(o.lr_values) >= 1, f'{field}.lr_values',
        f'needs one value per lr_epochs knot: {len(o.lr_epochs)} knots, '
        f'{len(o.lr_values)} values.')
    check_increasing(tuple(o.lr_epochs), f'{field}.lr_epochs')
    check(
        o.lr_epochs[0] == 0 and math.isclose(o.lr_epochs[-1], num_epochs), f'{field}.lr_epochs',
        f'knots {tuple(o.lr_epochs)} do not fit training: they must run from 0 to '
        f'num_epochs={num_epochs} (rescale them with the epochs, e.g. '
        '--config=FILE.py:epochs=N).')
    check(all(v >= 0 for v in o.lr_values), f'{field}.lr_values', 'must be >= 0.')
  else:
    check(o.lr >= 0, f'{field}.lr', f'must be >= 0, got {o.lr}.')


def _check_task(e, field: str) -> None:
  """The fields the expert's task reads (`tasks.TASKS[task].reads`)."""
  check(e.task in tasks.TASKS, f'{field}.task',
        f'{e.task!r} is unknown; registered tasks: {sorted(tasks.TASKS)}.')
  spec = tasks.TASKS[e.task]
  if 'attack' in spec.reads:
    check_attack(e.attack, f'{field}.attack')
  if 'beta' in spec.reads:
    check(e.beta >= 0, f'{field}.beta', f'must be >= 0, got {e.beta}.')
  if 'norms' in spec.reads:
    check(
        len(e.norms) >= 1 and len(set(e.norms)) == len(e.norms) and
        all(n in e.norm_attacks for n in e.norms), f'{field}.norms',
        f'task {e.task!r} needs distinct threat models from {sorted(e.norm_attacks)}, '
        f'got {tuple(e.norms)}.')
    for n in e.norms:
      check_attack(e.norm_attacks[n], f'{field}.norm_attacks.{n}')
      check(e.norm_attacks[n].norm == n, f'{field}.norm_attacks.{n}.norm',
            f'must be {n!r} (the key), got {e.norm_attacks[n].norm!r}.')
  problem = spec.check(e) if spec.check is not None else None
  check(problem is None, f'{field}.norm_attacks', problem or '')


def _check_experts(c) -> None:
  names = list(c.experts.keys())
  check(len(names) >= 1, 'experts', 'define at least one expert.')
  knots = tuple(c.meta.mix_epochs)
  check_increasing(knots, 'meta.mix_epochs')
  check(
      knots[0] == 0 and math.isclose(knots[-1], c.num_epochs), 'meta.mix_epochs',
      f'knots {knots} must run from 0 to num_epochs={c.num_epochs} (rescale them with '
      'the epochs, e.g. --config=FILE.py:epochs=N).')
  for name in names:
    e = c.experts[name]
    _check_task(e, f'experts.{name}')
    check(
        len(e.mix_values) == len(knots), f'experts.{name}.mix_values',
        f'needs one value per meta.mix_epochs knot ({len(knots)}), got {len(e.mix_values)}.')
    check(all(v >= 0 for v in e.mix_values), f'experts.{name}.mix_values',
          f'weights must be >= 0, got {tuple(e.mix_values)}.')
    _check_optimizer(e.optimizer, f'experts.{name}.optimizer', c.num_epochs)
  for i in range(len(knots)):
    total = sum(c.experts[n].mix_values[i] for n in names)
    check(
        math.isclose(total, 1.0, abs_tol=1e-6), 'experts.*.mix_values',
        f'mixing weights must sum to 1 at every knot; at epoch {knots[i]} they sum '
        f'to {total:.6g} ({ {n: c.experts[n].mix_values[i] for n in names} }).')


def _check_meta(c) -> None:
  s = c.meta.sync
  check(s.kind in schedules.SYNC_SCHEDULES, 'meta.sync.kind',
        f'{s.kind!r} is unknown; use one of {tuple(schedules.SYNC_SCHEDULES)}.')
  if s.kind != 'never':
    check(
        len(c.experts) >= 2, 'meta.sync.kind',
        "syncing one expert with its own EMA changes the baseline; use 'never'.")
    limit = c.num_epochs if s.kind == 'reference' else c.num_epochs - 1
    if c.meta.timescale == 'relative' and s.kind == 'reference':
      limit = s.virtual_epochs
    check(
        0 <= s.start_epoch <= limit, 'meta.sync.start_epoch',
        f'{s.start_epoch} is outside training (0..{limit} for num_epochs={c.num_epochs}); '
        'no sync would ever happen. Scale it with the epochs or use kind=\'never\'.')
    if s.kind == 'reference':
      check(s.every_epochs >= 1, 'meta.sync.every_epochs', f'must be >= 1, got {s.every_epochs}.')
      last = s.virtual_epochs if c.meta.timescale == 'relative' else c.num_epochs
      check(
          any(e % s.every_epochs == 0 for e in range(max(s.start_epoch, 1), last + 1)),
          'meta.sync.every_epochs', f'no epoch in {max(s.start_epoch, 1)}..{last} is a multiple of '
          f'{s.every_epochs}; no sync would ever happen.')
    else:
      check(s.every_steps >= 1, 'meta.sync.every_steps', f'must be >= 1, got {s.every_steps}.')
  check(0 < c.meta.ema_max_decay < 1, 'meta.ema_max_decay',
        f'must be in (0, 1), got {c.meta.ema_max_decay}.')
  check(c.meta.timescale in timescale.TIMESCALES, 'meta.timescale',
        f'{c.meta.timescale!r} is unknown; use one of {timescale.TIMESCALES}.')
  check(c.meta.clock in timescale.CLOCKS, 'meta.clock',
        f'{c.meta.clock!r} is unknown; use one of {timescale.CLOCKS}.')
  check(0 < c.meta.ema_horizon < 1, 'meta.ema_horizon',
        f'must be a share of the run in (0, 1), got {c.meta.ema_horizon}.')
  check(c.meta.drift_lr_scale > 0, 'meta.drift_lr_scale',
        f'must be > 0, got {c.meta.drift_lr_scale}.')
  check(1 <= s.window_epochs <= max(s.every_epochs, 1), 'meta.sync.window_epochs',
        f'must be in 1..every_epochs={s.every_epochs}, got {s.window_epochs}.')
  check(s.virtual_epochs >= 1, 'meta.sync.virtual_epochs', f'must be >= 1, got {s.virtual_epochs}.')
  if c.meta.timescale == 'relative' and s.kind == 'reference':
    check(
        s.start_epoch <= s.virtual_epochs, 'meta.sync.start_epoch',
        f'{s.start_epoch} is after the last of meta.sync.virtual_epochs='
        f'{s.virtual_epochs}; no sync would ever happen.')


def _check_eval(c, devices: int) -> None:
  ev = c.eval
  check(ev.every_epochs >= 1, 'eval.every_epochs', f'must be >= 1, got {ev.every_epochs}.')
  check(ev.batch_size >= 1 and ev.batch_size % devices == 0, 'eval.batch_size',
        f'must be a positive multiple of the device count {devices}, got {ev.batch_size}.')
  check_attack(ev.val_attack, 'eval.val_attack')
  check_attack(ev.test_attack, 'eval.test_attack')
  check(0 <= ev.clean_floor <= 1, 'eval.clean_floor',
        f'must be a clean accuracy in [0, 1], got {ev.clean_floor}.')
  learners = step_lib.learner_names_of(c.experts.keys())
  learner, _, metric = ev.best_metric.partition('/')
  check(
      learner in learners and metric in learner_eval.METRICS, 'eval.best_metric',
      f"{ev.best_metric!r}: use '<learner>/<metric>' with learner in {learners} and "
      f'metric in {learner_eval.METRICS}.')


def validate_config(c) -> None:
  """Raises ConfigError on the first impossible value of run config `c`, before any work.

  The schema, then one check per concern: run (against this process's device
  count), data, model, experts, meta-update, evaluation, init_from.

  Args:
    c: the run config.

  Raises:
    ConfigError: naming the field, what is wrong and what would be valid.
  """
  check_config_schema(c)
  devices = jax.device_count()
  _check_run(c, devices)
  _check_data(c.data)
  _check_model(c.model)
  _check_experts(c)
  _check_meta(c)
  _check_eval(c, devices)
  _check_init_from(c)


def attack_fields(c) -> dict:
  """'<field>' -> attack config, for every attack the run uses: eval.val_attack,
  eval.test_attack, and each expert's `attack` or `norm_attacks[norm]` where its
  task reads them (`tasks.TASKS[task].reads`).

  Args:
    c: the run config.

  Returns:
    dict of dotted field path -> attack ConfigDict.
  """
  out = {'eval.val_attack': c.eval.val_attack, 'eval.test_attack': c.eval.test_attack}
  for name in c.experts.keys():
    e = c.experts[name]
    reads = tasks.TASKS[e.task].reads
    if 'attack' in reads:
      out[f'experts.{name}.attack'] = e.attack
    if 'norms' in reads:
      out.update({f'experts.{name}.norm_attacks.{n}': e.norm_attacks[n] for n in e.norms})
  return out


def validate_for_data(c, clock, image_shape: tuple = (),
                      num_classes: int | None = None) -> list[str]:
  """Checks that need the dataset (its size; the image shape for eps in pixel units;
  the classes for attacks on DLR losses, which need >= 3, or targeted ones), known
  only once it is read. Also the timescale's fidelity (`timescale.fidelity_problems`)
  and that an 'every_steps' sync can happen before the run ends.

  Args:
    c: the run config.
    clock: the run's `method.clock.RunClock` (`Setup.clock`; its length and sync
      windows follow from the data's steps per epoch).
    image_shape: (H, W, C); () skips the l2 / l1 eps limits.
    num_classes: the dataset's classes; None skips the class checks.

  Returns:
    Warnings (a relative-timescale run short enough that some time constant covers
    only a few steps), which the caller prints.

  Raises:
    ConfigError: naming the first field that is wrong.
  """
  if image_shape:
    dim = int(np.prod(image_shape))
    for field, attack in attack_fields(c).items():
      problem = threat.eps_problem(attack.norm, float(attack.eps), dim)
      check(problem is None, f'{field}.eps', problem or '')
  if num_classes is not None:
    for field, attack in attack_fields(c).items():
      _check_attack_classes(attack, field, num_classes)
  s = c.meta.sync
  errors, warnings = timescale.fidelity_problems(c.meta, clock.total_steps, clock.sync_windows)
  check(not errors, 'meta.timescale', ' '.join(errors))
  if s.kind == 'every_steps':
    window = (c.num_epochs - s.start_epoch) * clock.steps_per_epoch
    check(
        s.every_steps <= window, 'meta.sync.every_steps',
        f'{s.every_steps} is longer than the {window} steps from epoch {s.start_epoch} '
        f'to the end ({clock.steps_per_epoch} steps an epoch); no sync would ever happen.')
  return warnings


__all__ = ['ConfigError', 'check_attack', 'validate_config', 'validate_for_data']
