"""Building blocks for `configs/*.py` and the up-front config validation.

Every field that decides a run lives in one `ml_collections.ConfigDict`; the
files in `configs/` only change values. `validate_config` runs before any data
is read or anything compiles, and names the field and what would be valid.
"""
from __future__ import annotations

import math

import ml_collections

EPS_8 = 8 / 255
STEP_2 = 2 / 255



def pgd_attack(eps=EPS_8, step_size=STEP_2, steps=10, norm='linf', loss='ce',
               restarts=1) -> ml_collections.ConfigDict:
  """An attack config (PGD by default; `kind` selects another)."""
  return ml_collections.ConfigDict(dict(
      kind='pgd',            # 'pgd' | 'fgsm' | 'mim' or any autoattack.IMPLEMENTED[norm]
      norm=norm,             # threat model: 'linf' | 'l2' | 'l1'
      eps=eps,               # radius, pixel units in [0, 1]
      step_size=step_size,   # per-step size
      steps=steps,           # iterations K
      loss=loss,             # 'ce' or 'margin' (CW)
      random_start=True,     # uniform start in the ball
      restarts=restarts,     # keep the highest-loss restart per example
      unroll='auto',         # 'auto': unroll on CPU (faster there), else rolled
  ))


def sgd(lr_epochs=(0, 40, 80, 120), lr_values=(0.01, 0.01, 0.001, 0.0001),
        weight_decay=5e-4, schedule='piecewise_linear', lr=0.1,
        momentum=0.9) -> ml_collections.ConfigDict:
  """An SGD config with its learning-rate schedule (knots in epochs)."""
  return ml_collections.ConfigDict(dict(
      name='sgd',
      momentum=momentum,
      nesterov=False,
      weight_decay=weight_decay,  # coupled, added to the gradient (PyTorch SGD)
      schedule=schedule,          # 'piecewise_linear' | 'cosine' | 'constant'
      lr_epochs=lr_epochs,        # piecewise_linear knots, in epochs
      lr_values=lr_values,        # piecewise_linear values at the knots
      lr=lr,                      # peak lr for 'cosine' and 'constant'
  ))


# The CIFAR-10 radii of the multi-norm literature (Maini et al. 2020; Croce & Hein 2022).
MULTI_NORM_EPS = {'linf': 8 / 255, 'l2': 0.5, 'l1': 12.0}


def norm_attacks(steps=10) -> ml_collections.ConfigDict:
  """One PGD per threat model at MULTI_NORM_EPS, step 2.5 eps / steps (Madry et
  al.'s rule; 2/255 for l-inf PGD-10); l1 takes attacks.py's sparse top-k step."""
  return ml_collections.ConfigDict({
      n: pgd_attack(eps=e, step_size=2.5 * e / steps, steps=steps, norm=n)
      for n, e in MULTI_NORM_EPS.items()})


def expert(task, optimizer, mix_values, attack=None, *, beta=6.0, norms=(),
           per_norm=None) -> ml_collections.ConfigDict:
  """One expert: its task, optimizer, mixing weights and (for attack tasks) attack."""
  cfg = ml_collections.ConfigDict(dict(
      task=task,              # key of generalist_jax.tasks.TASKS
      optimizer=optimizer,
      mix_values=mix_values,  # mixing weight at each of meta.mix_epochs
      beta=beta,              # trades / mart: weight of the KL term
      norms=tuple(norms),     # avg / max / msd / eat: threat models (keys of norm_attacks)
  ))
  cfg.attack = attack if attack is not None else pgd_attack()   # pgd / trades / mart
  cfg.norm_attacks = per_norm if per_norm is not None else norm_attacks()
  return cfg


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every config; one line per field."""
  c = ml_collections.ConfigDict()
  c.seed = 0                          # init, attacks, data order
  c.batch_size = 128                  # global batch
  c.num_epochs = 120

  c.data = ml_collections.ConfigDict(dict(
      source='tfds',                  # 'tfds', 'npz' or 'sklearn_digits' (offline 8x8)
      name='cifar10',                 # tfds name (or a label for npz)
      data_dir=ml_collections.FieldReference(None, field_type=str),  # tfds data dir
      path='',                        # .npz file (source='npz')
      val_size=1000,                  # held out from train for model selection
      split_seed=0,                   # fixes the validation split across runs
      train_size=ml_collections.FieldReference(None, field_type=int),  # subset
      test_size=ml_collections.FieldReference(None, field_type=int),   # subset
      augment='crop_flip',            # 'crop_flip' | 'crop' | 'none'
      num_classes=ml_collections.FieldReference(None, field_type=int),  # npz: default max label + 1
      num_threads=2,                  # grain reader threads
      prefetch=4,                     # batches prepared ahead of the device
  ))

  c.model = ml_collections.ConfigDict(dict(
      name='resnet18',                # one of models.MODEL_NAMES
      width=1.0,                      # channel multiplier (small CPU runs)
      depth=34,                       # wide_resnet only
      widen_factor=10,                # wide_resnet only
      batch_norm=True,                # small_cnn and mlp only
      ops='auto',                     # conv/max-pool formulation: 'auto' (= 'cpu' on
                                      # the CPU backend, else 'xla'), 'xla', 'cpu';
                                      # same values, see cpu_ops.py
  ))

  c.experts = ml_collections.ConfigDict()   # name -> expert(); sorted by name

  c.meta = ml_collections.ConfigDict(dict(
      ema_max_decay=0.999,            # EMA decay min(max, (t+1)/(t+10))
      stack_experts=False,            # one vmapped update for natural/pgd experts
                                      # (stacked.py); the loop measured faster on CPU
      mix_epochs=(0, 40, 80, 120),    # knots of every expert's mix_values
      sync=ml_collections.ConfigDict(dict(
          kind='reference',           # 'reference' | 'every_steps' | 'never'
          start_epoch=75,             # first epoch that may sync
          every_epochs=5,             # reference: epochs e with e % this == 0
          every_steps=100,            # every_steps: period in steps
      )),
  ))

  c.eval = ml_collections.ConfigDict(dict(
      every_epochs=1,                 # validation interval
      batch_size=256,
      val_attack=pgd_attack(steps=10),    # model selection attack
      test_attack=pgd_attack(steps=20),   # final test attack (PGD-20)
      best_metric='global/pgd_acc',   # validation metric that picks 'best'
      final_test=True,                # test last and best-on-val at the end
  ))

  c.checkpoint = ml_collections.ConfigDict(dict(
      keep=3,                         # last N checkpoints kept (+ best)
      every_steps=0,                  # 0: at the end of every epoch
  ))
  c.mesh = ml_collections.ConfigDict(dict(
      data=-1,                        # devices on the 'data' axis (-1: all)
  ))
  c.compute_dtype = 'float32'         # 'bfloat16': bf16 compute, f32 params/opt/loss
  c.log_every_steps = 50
  c.progress_bar = True
  return c


# ----------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------

class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""


def _check(ok: bool, field: str, message: str):
  if not ok:
    raise ConfigError(f'config.{field}: {message}')


def _check_attack(attack, field: str):
  # Local imports: configs stay free of a jax import.
  from generalist_jax import attacks
  from generalist_jax import autoattack
  _check(attack.norm in attacks.NORMS, f'{field}.norm',
         f'{attack.norm!r} is unknown; use one of {tuple(attacks.NORMS)}.')
  kinds = sorted(set().union(*autoattack.IMPLEMENTED.values()))
  _check(attack.kind in kinds, f'{field}.kind', f'{attack.kind!r} is unknown; use one of {kinds}.')
  _check(attack.kind in autoattack.IMPLEMENTED[attack.norm], f'{field}.kind',
         f'{attack.kind!r} is not implemented for norm {attack.norm!r}; with that norm use '
         f'one of {autoattack.IMPLEMENTED[attack.norm]} (or change {field}.norm).')
  _check(attack.loss in attacks.LOSSES, f'{field}.loss',
         f'{attack.loss!r} is unknown; use one of {tuple(attacks.LOSSES)}.')
  _check(attack.eps >= 0, f'{field}.eps', f'must be >= 0, got {attack.eps}.')
  _check(attack.step_size >= 0, f'{field}.step_size', f'must be >= 0, got {attack.step_size}.')
  _check(attack.steps >= 1, f'{field}.steps', f'must be >= 1, got {attack.steps}.')
  _check(attack.restarts >= 1, f'{field}.restarts', f'must be >= 1, got {attack.restarts}.')


def _check_increasing(values, field: str):
  _check(all(b > a for a, b in zip(values, values[1:])), field,
         f'knots must increase strictly, got {tuple(values)}.')


def _type_name(value) -> str:
  return type(value).__name__


def _compatible(value, ref) -> bool:
  if ref is None or value is None:
    return True
  if isinstance(ref, bool) or isinstance(value, bool):
    return isinstance(value, bool) == isinstance(ref, bool)
  if isinstance(ref, int):
    return isinstance(value, int)
  if isinstance(ref, float):     # an int where a float is expected is fine
    return isinstance(value, (int, float))
  if isinstance(ref, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(ref))


def _check_schema(c, ref, path: str) -> None:
  """Every field of `c` exists in the reference config, with a compatible type."""
  for key in c.keys():
    field = f'{path}{key}'
    if key not in ref:
      close = [k for k in ref.keys() if k[:3] == key[:3]]
      _check(False, field, f'unknown field{"; did you mean " + close[0] + "?" if close else ""} '
             f'Known fields here: {sorted(ref.keys())}.')
    value, expected = c[key], ref[key]
    if isinstance(expected, ml_collections.ConfigDict):
      _check(isinstance(value, ml_collections.ConfigDict), field,
             f'must be a ConfigDict, got {_type_name(value)}.')
      _check_schema(value, expected, field + '.')
    else:
      _check(_compatible(value, expected), field,
             f'must be a {_type_name(expected)}, got {_type_name(value)} ({value!r}).')


def _reference_schema() -> ml_collections.ConfigDict:
  ref = base_config()
  del ref.experts
  return ref


def validate_config(c) -> None:
  """Raises ConfigError on the first impossible value, before any work."""
  schema = _reference_schema()
  _check_schema(ml_collections.ConfigDict({k: c[k] for k in c.keys() if k != 'experts'}),
                schema, '')
  template = expert('natural', sgd(), mix_values=())
  for name in c.experts.keys():
    _check_schema(c.experts[name], template, f'experts.{name}.')

  # Local imports: configs import this module and should stay light.
  from generalist_jax import cpu_ops, data, models, tasks
  tfds_names = tuple(data.SUPPORTED_TFDS_DATASETS)

  _check(c.num_epochs >= 1, 'num_epochs', f'must be >= 1, got {c.num_epochs}.')
  _check(c.batch_size >= 1, 'batch_size', f'must be >= 1, got {c.batch_size}.')
  import jax  # local: keep config files free of a jax import
  devices = jax.device_count()
  _check(c.batch_size % devices == 0, 'batch_size',
         f'{c.batch_size} does not split over {devices} devices; use a multiple of {devices}.')
  _check(c.data.source in ('tfds', 'npz', 'sklearn_digits'), 'data.source',
         f"{c.data.source!r} is unknown; use 'tfds', 'npz' or 'sklearn_digits'.")
  if c.data.source == 'tfds':
    _check(c.data.name in tfds_names, 'data.name',
           f'{c.data.name!r} is not supported; use one of {tfds_names} '
           "or data.source='npz' with data.path.")
  elif c.data.source == 'npz':
    _check(bool(c.data.path), 'data.path', "data.source='npz' needs the path of an .npz file.")
  _check(c.data.val_size >= 1, 'data.val_size',
         f'must be >= 1 (a validation split picks checkpoints), got {c.data.val_size}.')
  _check(c.data.augment in data.AUGMENTATIONS, 'data.augment',
         f'{c.data.augment!r} is unknown; use one of {data.AUGMENTATIONS}.')
  _check(c.model.name in models.MODEL_NAMES, 'model.name',
         f'{c.model.name!r} is unknown; use one of {models.MODEL_NAMES}.')
  _check(c.model.width > 0, 'model.width', f'must be > 0, got {c.model.width}.')
  _check(c.model.get('ops', 'auto') in cpu_ops.OPS, 'model.ops',
         f'{c.model.get("ops")!r} is unknown; use one of {cpu_ops.OPS}.')

  names = list(c.experts.keys())
  _check(len(names) >= 1, 'experts', 'define at least one expert.')
  knots = tuple(c.meta.mix_epochs)
  _check_increasing(knots, 'meta.mix_epochs')
  _check(knots[0] == 0 and math.isclose(knots[-1], c.num_epochs), 'meta.mix_epochs',
         f'knots {knots} must run from 0 to num_epochs={c.num_epochs} (rescale them with '
         'the epochs, e.g. --config=FILE.py:epochs=N).')
  for name in names:
    e = c.experts[name]
    _check(e.task in tasks.TASKS, f'experts.{name}.task',
           f'{e.task!r} is unknown; registered tasks: {sorted(tasks.TASKS)}.')
    if e.task in tasks.SINGLE_ATTACK_TASKS:
      _check_attack(e.attack, f'experts.{name}.attack')
    if e.task in ('trades', 'mart'):
      _check(e.beta >= 0, f'experts.{name}.beta', f'must be >= 0, got {e.beta}.')
    if e.task in tasks.MULTI_NORM_TASKS:
      _check(len(e.norms) >= 1 and len(set(e.norms)) == len(e.norms)
             and all(n in e.norm_attacks for n in e.norms), f'experts.{name}.norms',
             f'task {e.task!r} needs distinct threat models from {sorted(e.norm_attacks)}, '
             f'got {tuple(e.norms)}.')
      for n in e.norms:
        _check_attack(e.norm_attacks[n], f'experts.{name}.norm_attacks.{n}')
        _check(e.norm_attacks[n].norm == n, f'experts.{name}.norm_attacks.{n}.norm',
               f'must be {n!r} (the key), got {e.norm_attacks[n].norm!r}.')
      if e.task == 'msd':
        steps = {e.norm_attacks[n].steps for n in e.norms}
        _check(len(steps) == 1, f'experts.{name}.norm_attacks',
               f'msd takes one step of every norm per iteration: give the norms in '
               f'{tuple(e.norms)} the same steps, got {sorted(steps)}.')
    _check(len(e.mix_values) == len(knots), f'experts.{name}.mix_values',
           f'needs one value per meta.mix_epochs knot ({len(knots)}), got {len(e.mix_values)}.')
    _check(all(v >= 0 for v in e.mix_values), f'experts.{name}.mix_values',
           f'weights must be >= 0, got {tuple(e.mix_values)}.')
    o = e.optimizer
    field = f'experts.{name}.optimizer'
    _check(o.name == 'sgd', f'{field}.name', f"{o.name!r} is unknown; use 'sgd'.")
    _check(o.weight_decay >= 0, f'{field}.weight_decay', f'must be >= 0, got {o.weight_decay}.')
    _check(o.schedule in ('piecewise_linear', 'cosine', 'constant'), f'{field}.schedule',
           f"{o.schedule!r} is unknown; use 'piecewise_linear', 'cosine' or 'constant'.")
    if o.schedule == 'piecewise_linear':
      _check(len(o.lr_epochs) == len(o.lr_values) >= 1, f'{field}.lr_values',
             f'needs one value per lr_epochs knot: {len(o.lr_epochs)} knots, '
             f'{len(o.lr_values)} values.')
      _check_increasing(tuple(o.lr_epochs), f'{field}.lr_epochs')
      _check(o.lr_epochs[0] == 0 and math.isclose(o.lr_epochs[-1], c.num_epochs),
             f'{field}.lr_epochs',
             f'knots {tuple(o.lr_epochs)} do not fit training: they must run from 0 to '
             f'num_epochs={c.num_epochs} (rescale them with the epochs, e.g. '
             '--config=FILE.py:epochs=N).')
      _check(all(v >= 0 for v in o.lr_values), f'{field}.lr_values', 'must be >= 0.')
    else:
      _check(o.lr >= 0, f'{field}.lr', f'must be >= 0, got {o.lr}.')
  for i in range(len(knots)):
    total = sum(c.experts[n].mix_values[i] for n in names)
    _check(math.isclose(total, 1.0, abs_tol=1e-6), 'experts.*.mix_values',
           f'mixing weights must sum to 1 at every knot; at epoch {knots[i]} they sum '
           f'to {total:.6g} ({ {n: c.experts[n].mix_values[i] for n in names} }).')

  s = c.meta.sync
  _check(s.kind in ('reference', 'every_steps', 'never'), 'meta.sync.kind',
         f"{s.kind!r} is unknown; use 'reference', 'every_steps' or 'never'.")
  if s.kind != 'never':
    _check(len(names) >= 2, 'meta.sync.kind',
           "syncing one expert with its own EMA changes the baseline; use 'never'.")
    limit = c.num_epochs if s.kind == 'reference' else c.num_epochs - 1
    _check(0 <= s.start_epoch <= limit, 'meta.sync.start_epoch',
           f'{s.start_epoch} is outside training (0..{limit} for num_epochs={c.num_epochs}); '
           'no sync would ever happen. Scale it with the epochs or use kind=\'never\'.')
    if s.kind == 'reference':
      _check(s.every_epochs >= 1, 'meta.sync.every_epochs', f'must be >= 1, got {s.every_epochs}.')
      _check(any(e % s.every_epochs == 0 for e in range(max(s.start_epoch, 1), c.num_epochs + 1)),
             'meta.sync.every_epochs',
             f'no epoch in {max(s.start_epoch, 1)}..{c.num_epochs} is a multiple of '
             f'{s.every_epochs}; no sync would ever happen.')
    else:
      _check(s.every_steps >= 1, 'meta.sync.every_steps', f'must be >= 1, got {s.every_steps}.')
  _check(0 < c.meta.ema_max_decay < 1, 'meta.ema_max_decay',
         f'must be in (0, 1), got {c.meta.ema_max_decay}.')

  _check(c.eval.every_epochs >= 1, 'eval.every_epochs', f'must be >= 1, got {c.eval.every_epochs}.')
  _check(c.eval.batch_size >= 1 and c.eval.batch_size % devices == 0, 'eval.batch_size',
         f'must be a positive multiple of the device count {devices}, got {c.eval.batch_size}.')
  _check(c.compute_dtype in ('float32', 'bfloat16'), 'compute_dtype',
         f"{c.compute_dtype!r} is unknown; use 'float32' or 'bfloat16'.")
  _check(c.mesh.data in (-1, devices), 'mesh.data',
         f'{c.mesh.data} does not match the {devices} visible devices; use -1 (all).')
  _check_attack(c.eval.val_attack, 'eval.val_attack')
  _check_attack(c.eval.test_attack, 'eval.test_attack')
  learner, _, metric = c.eval.best_metric.partition('/')
  _check(learner in names + ['global'] and metric in ('clean_acc', 'pgd_acc', 'sum_acc'),
         'eval.best_metric', f"{c.eval.best_metric!r}: use '<learner>/<metric>' with learner in "
         f"{names + ['global']} and metric in ('clean_acc', 'pgd_acc', 'sum_acc').")
  _check(c.checkpoint.keep >= 1, 'checkpoint.keep', f'must be >= 1, got {c.checkpoint.keep}.')
  _check(c.checkpoint.every_steps >= 0, 'checkpoint.every_steps', 'must be >= 0 (0: every epoch).')
  _check(c.log_every_steps >= 1, 'log_every_steps', f'must be >= 1, got {c.log_every_steps}.')


# ----------------------------------------------------------------------------
# Presets shared by the configs in configs/.
# ----------------------------------------------------------------------------

# The reference schedules (DESIGN.md section 2), in epochs out of 120.
REFERENCE_EPOCHS = 120
RESNET_LR_EPOCHS = (0, 40, 80, 120)
RESNET_LR_VALUES = (0.01, 0.01, 0.001, 0.0001)
ROBUST_MIX = (1.0, 1.0, 1.0, 0.4)      # beta at (0, E/3, 2E/3, E)


def generalist_experts(lr_epochs=RESNET_LR_EPOCHS, lr_values=RESNET_LR_VALUES,
                       robust_wd=3.5e-3, natural_wd=5e-4) -> ml_collections.ConfigDict:
  """The CVPR'23 pair: a natural expert and an l-inf PGD-10 expert."""
  return ml_collections.ConfigDict(dict(
      natural=expert('natural', sgd(lr_epochs, lr_values, natural_wd),
                     mix_values=tuple(1.0 - b for b in ROBUST_MIX)),
      robust=expert('pgd', sgd(lr_epochs, lr_values, robust_wd),
                    mix_values=ROBUST_MIX, attack=pgd_attack(steps=10)),
  ))


def single_expert_config(name: str, best_metric: str, expert_config=None
                         ) -> ml_collections.ConfigDict:
  """A plain single-model baseline: one expert (by default the one of the
  Generalist pair called `name`; same optimizer and budget), mixing weight 1,
  no sync; its 'global' learner is then just the EMA of that expert."""
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


def robust_expert(task, attack=None, **kwargs) -> ml_collections.ConfigDict:
  """An expert with the robust expert's optimizer (reference lr, wd 3.5e-3)."""
  return expert(task, sgd(RESNET_LR_EPOCHS, RESNET_LR_VALUES, 3.5e-3),
                mix_values=ROBUST_MIX, attack=attack, **kwargs)


def baseline_config(task, attack=None, **kwargs) -> ml_collections.ConfigDict:
  """A one-expert baseline named 'robust' with task `task` and PGD-AT's budget."""
  return single_expert_config('robust', 'robust/pgd_acc',
                              robust_expert(task, attack, **kwargs))


def norm_experts(norms=('l1', 'l2', 'linf'), steps=10) -> ml_collections.ConfigDict:
  """Generalist++ reading: one PGD expert per threat model (name = norm), at
  MULTI_NORM_EPS, with the robust expert's optimizer; equal mixing weights."""
  attacks_ = norm_attacks(steps)
  out = ml_collections.ConfigDict()
  for n in norms:
    out[n] = robust_expert('pgd', attacks_[n])
    out[n].mix_values = (1.0 / len(norms),) * len(ROBUST_MIX)
  return out


def scale_epochs(c, num_epochs: int) -> None:
  """Rescales every epoch knot (lr, mixing, sync start) to `num_epochs`."""
  ratio = num_epochs / c.num_epochs
  c.num_epochs = num_epochs
  c.meta.mix_epochs = tuple(k * ratio for k in c.meta.mix_epochs)
  c.meta.sync.start_epoch = int(round(c.meta.sync.start_epoch * ratio))
  for name in c.experts.keys():
    opt = c.experts[name].optimizer
    opt.lr_epochs = tuple(k * ratio for k in opt.lr_epochs)


def smoke(c, num_epochs: int = 3, train_size: int = 5000) -> None:
  """CPU scale: a CIFAR-10 subset (5,000 images), a narrow BN SmallCNN, 3 epochs.

  Sync becomes 'every_steps' (about half an epoch) from the rescaled start
  epoch, since the reference's 'every step of every 5th epoch' has no
  counterpart in a handful of epochs.
  """
  c.data.train_size = train_size
  c.data.val_size = 500
  c.data.test_size = 1000
  c.model.name = 'small_cnn'
  c.model.batch_norm = True
  c.model.width = 0.5
  c.batch_size = 128
  scale_epochs(c, num_epochs)
  if c.meta.sync.kind != 'never':
    c.meta.sync.kind = 'every_steps'
    c.meta.sync.every_steps = max(1, train_size // c.batch_size // 2)
  c.eval.batch_size = 500
  c.eval.val_attack.steps = 5
  c.eval.val_attack.step_size = 2.5 * c.eval.val_attack.eps / 5
  c.log_every_steps = 10


def parse_arg(arg: str | None, known: tuple) -> dict:
  """'a,b=2' -> {'a': '1', 'b': '2'}; raises on keys not in `known`."""
  opts = dict(part.split('=', 1) if '=' in part else (part, '1')
              for part in (arg or '').split(',') if part)
  unknown = set(opts) - set(known)
  if unknown:
    raise ValueError(f'unknown config arg keys {sorted(unknown)}; use '
                     f"{', '.join(known)} (e.g. \":{known[0]},{known[1]}=10\").")
  return opts


def scale_attack_steps(c, steps: int) -> None:
  """Every training attack of every expert (`attack` and `norm_attacks`) to
  `steps` iterations, the step size scaled by old/new steps (same path length:
  l-inf PGD-10 at 2/255 becomes PGD-5 at 4/255)."""
  for name in c.experts.keys():
    e = c.experts[name]
    for a in [e.attack] + [e.norm_attacks[n] for n in e.norm_attacks.keys()]:
      a.step_size = a.step_size * a.steps / steps
      a.steps = steps


def apply_arg(c, arg: str | None):
  """The config arg after ':' in --config=file.py:ARG, big_vision style:
  comma-separated 'smoke' and key=value pairs, e.g. 'smoke,epochs=10,train_size=10000'.

  smoke: the CPU scale of `smoke()`; epochs=N rescales every epoch knot;
  train_size=N and test_size=N subset the data (test_size=0: the full test set);
  attack_steps=N sets every training attack to N steps (`scale_attack_steps`).
  """
  opts = parse_arg(arg, ('smoke', 'epochs', 'train_size', 'test_size', 'attack_steps'))
  if 'attack_steps' in opts:
    scale_attack_steps(c, int(opts['attack_steps']))
  if 'smoke' in opts:
    smoke(c, num_epochs=int(opts.get('epochs', 3)),
          train_size=int(opts.get('train_size', 5000)))
  elif 'epochs' in opts:
    scale_epochs(c, int(opts['epochs']))
  if 'train_size' in opts and 'smoke' not in opts:
    c.data.train_size = int(opts['train_size'])
  if 'test_size' in opts:
    c.data.test_size = int(opts['test_size']) or None
  return c


def validate_for_data(c, steps_per_epoch: int) -> None:
  """Checks that need the dataset's size (known only once it is read)."""
  s = c.meta.sync
  if s.kind == 'every_steps':
    window = (c.num_epochs - s.start_epoch) * steps_per_epoch
    _check(s.every_steps <= window, 'meta.sync.every_steps',
           f'{s.every_steps} is longer than the {window} steps from epoch {s.start_epoch} '
           f'to the end ({steps_per_epoch} steps an epoch); no sync would ever happen.')
