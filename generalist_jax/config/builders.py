"""Config builders: every field that decides a run lives in one
`ml_collections.ConfigDict`.

`base_config()` lists every field with its default and a one-line comment: the one
base under every file in `configs/`, which then sets its run's numbers itself
(experts, optimizer, mixing, attacks, meta, best metric). It is also the schema
(`schema.py`) and the default of a field an older saved config lacks
(`run/run_config.py`), so it lives in the package, not in `configs/` (which is not a
package: absl loads those files by path). `pgd_attack`, `sgd` and `expert` build its
parts, with every number at the call site. Units: eps and step sizes are in pixel units
(images in [0, 1]): l-inf 8/255, l2 0.5, l1 12 on CIFAR-10.
"""
from __future__ import annotations

from absl import flags
import ml_collections

# The reference's EMA horizon, 1 / (1 - 0.999) steps, as a share of its 120 x 391 steps
# (method/timescale.py; kept here too so configs need no jax import).
REFERENCE_EMA_HORIZON = 1000 / (120 * 391)

EPS_8 = 8 / 255
STEP_2 = 2 / 255


def pgd_attack(eps=EPS_8, step_size=STEP_2, steps=10, norm='linf', loss='ce',
               restarts=1) -> ml_collections.ConfigDict:
  """An attack config (PGD by default; `kind` selects another).

  Args:
    eps: radius, pixel units of [0, 1].
    step_size: per-step size.
    steps: iterations.
    norm: threat model, 'linf' | 'l2' | 'l1'.
    loss: 'ce' or 'margin' (CW).
    restarts: random restarts (the highest-loss one is kept per example).

  Returns:
    The attack's ConfigDict (also random_start=True, unroll='auto').
  """
  return ml_collections.ConfigDict(
      dict(
          kind='pgd',  # any attacks.registry row for the norm (pgd, fgsm, mim, ...)
          norm=norm,  # threat model: 'linf' | 'l2' | 'l1'
          eps=eps,  # radius, pixel units in [0, 1]
          step_size=step_size,  # per-step size
          steps=steps,  # iterations K
          loss=loss,  # 'ce' or 'margin' (CW)
          random_start=True,  # uniform start in the ball
          restarts=restarts,  # keep the highest-loss restart per example
          unroll='auto',  # 'auto': unroll on CPU (faster there), else rolled
      ))


def sgd(lr_epochs=(0, 40, 80, 120), lr_values=(0.01, 0.01, 0.001, 0.0001), weight_decay=5e-4,
        schedule='piecewise_linear', lr=0.1, momentum=0.9) -> ml_collections.ConfigDict:
  """An SGD config with its learning-rate schedule (knots in epochs).

  Args:
    lr_epochs, lr_values: the piecewise-linear schedule's knots and values.
    weight_decay: coupled weight decay (added to the gradient, as PyTorch SGD).
    schedule: 'piecewise_linear' | 'cosine' | 'constant'.
    lr: the peak lr of 'cosine' and the lr of 'constant'.
    momentum: SGD momentum (0: none).

  Returns:
    The optimizer's ConfigDict (nesterov=False).
  """
  return ml_collections.ConfigDict(
      dict(
          name='sgd',
          momentum=momentum,
          nesterov=False,
          weight_decay=weight_decay,  # coupled, added to the gradient (PyTorch SGD)
          schedule=schedule,  # 'piecewise_linear' | 'cosine' | 'constant'
          lr_epochs=lr_epochs,  # piecewise_linear knots, in epochs
          lr_values=lr_values,  # piecewise_linear values at the knots
          lr=lr,  # peak lr for 'cosine' and 'constant'
      ))


# The CIFAR-10 radii of the multi-norm literature (Maini et al. 2020; Croce & Hein 2022).
MULTI_NORM_EPS = {'linf': 8 / 255, 'l2': 0.5, 'l1': 12.0}


def norm_attacks(steps=10) -> ml_collections.ConfigDict:
  """One PGD per threat model at MULTI_NORM_EPS, step 2.5 eps / steps (Madry et
  al.'s rule; 2/255 for l-inf PGD-10); l1 takes the sparse top-k step (`attacks/threat.py`).

  Args:
    steps: every attack's iterations.

  Returns:
    ConfigDict norm -> `pgd_attack` config, for 'linf', 'l2' and 'l1'.
  """
  return ml_collections.ConfigDict({
      n: pgd_attack(eps=e, step_size=2.5 * e / steps, steps=steps, norm=n)
      for n, e in MULTI_NORM_EPS.items()
  })


def expert(task, optimizer, mix_values, attack=None, *, beta=6.0, norms=(),
           per_norm=None) -> ml_collections.ConfigDict:
  """One expert: its task, optimizer, mixing weights and (for attack tasks) attack.

  Args:
    task: a key of `method.tasks.TASKS`.
    optimizer: its `sgd` config.
    mix_values: its mixing weight at each of `meta.mix_epochs`.
    attack: the attack of pgd / trades / mart tasks; None: `pgd_attack()`.
    beta: trades / mart: the weight of the KL term.
    norms: avg / max / msd / eat: the threat models (keys of `per_norm`).
    per_norm: the attack of each norm; None: `norm_attacks()`.

  Returns:
    The expert's ConfigDict.
  """
  cfg = ml_collections.ConfigDict(
      dict(
          task=task,  # key of generalist_jax.method.tasks.TASKS
          optimizer=optimizer,
          mix_values=mix_values,  # mixing weight at each of meta.mix_epochs
          beta=beta,  # trades / mart: weight of the KL term
          norms=tuple(norms),  # avg / max / msd / eat: threat models (keys of norm_attacks)
      ))
  cfg.attack = attack if attack is not None else pgd_attack()  # pgd / trades / mart
  cfg.norm_attacks = per_norm if per_norm is not None else norm_attacks()
  return cfg


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every config; one line per field, one function per section.

  Returns:
    A new ConfigDict of every field: the run's seed, batch and epochs, then the
    sections data, model, experts (empty: every config adds its own), meta, eval,
    init_from, checkpoint, mesh, and compute_dtype / log_every_steps / progress_bar.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0  # init, attacks, data order
  c.batch_size = 128  # global batch
  c.num_epochs = 120
  c.data = _data_section()
  c.model = _model_section()
  c.experts = ml_collections.ConfigDict()  # name -> expert(); sorted by name
  c.meta = _meta_section()
  c.eval = _eval_section()
  c.init_from = ml_collections.ConfigDict(
      dict(
          workdir='',  # fork: start from this run's checkpoint (run/fork.py)
          step=-1,  # ... at this saved step (required with workdir)
      ))
  c.checkpoint = ml_collections.ConfigDict(
      dict(
          keep=3,  # last N checkpoints kept (+ best)
          every_steps=0,  # 0: at the end of every epoch
      ))
  c.mesh = ml_collections.ConfigDict(dict(
      data=-1,  # devices on the 'data' axis (-1: all)
  ))
  c.compute_dtype = 'float32'  # 'bfloat16': bf16 compute, f32 params/opt/loss
  c.log_every_steps = 50
  c.progress_bar = True
  return c


def _data_section() -> ml_collections.ConfigDict:
  """`config.data`: where the images come from, the splits, augmentation, reading."""
  return ml_collections.ConfigDict(
      dict(
          source='tfds',  # 'tfds', 'npz' or 'sklearn_digits' (offline 8x8)
          name='cifar10',  # tfds name (or a label for npz)
          data_dir=ml_collections.FieldReference(None, field_type=str),  # tfds data dir
          path='',  # .npz file (source='npz')
          val_size=1000,  # held out from train for model selection
          split_seed=0,  # fixes the validation split across runs
          train_size=ml_collections.FieldReference(None, field_type=int),  # subset
          test_size=ml_collections.FieldReference(None, field_type=int),  # subset
          augment='crop_flip',  # 'crop_flip' | 'crop' | 'none'
          downsample=1,  # k > 1: every image -> the mean of its k x k blocks
          # (32x32 -> 16x16 at k=2), any source
          num_classes=ml_collections.FieldReference(None,
                                                    field_type=int),  # npz: default max label + 1
          num_threads=2,  # grain reader threads
          prefetch=4,  # batches prepared ahead of the device
      ))


def _model_section() -> ml_collections.ConfigDict:
  """`config.model`: the architecture and its size."""
  return ml_collections.ConfigDict(
      dict(
          name='resnet18',  # one of models.MODEL_NAMES
          width=1.0,  # channel multiplier (small CPU runs)
          depth=34,  # wide_resnet only
          widen_factor=10,  # wide_resnet only
          batch_norm=True,  # small_cnn and mlp only
          ops='auto',  # conv/max-pool/BN-gradient formulation: 'auto' (= 'cpu' on
          # the CPU backend, else 'xla'), 'xla', 'cpu';
          # same values, see cpu_ops.py
      ))


def _meta_section() -> ml_collections.ConfigDict:
  """`config.meta`: the meta-update's clock (method/clock.py) and its options."""
  return ml_collections.ConfigDict(
      dict(
          timescale='epochs',  # 'epochs': the constants below as set; 'relative':
          # EMA cap and sync are shares of the run's T steps
          # (method/timescale.py, docs/meta-update.md)
          clock='fractional',  # schedule time of a step: 'fractional' epoch after
          # it (TMLlib) or 'integer' epoch from 1 (main.py)
          ema_max_decay=0.999,  # EMA decay min(max, (t+1)/(t+10)) ('epochs')
          ema_horizon=REFERENCE_EMA_HORIZON,  # 'relative': 1 / (1 - cap) as a share of T
          drift_lr_scale=1.0,  # every expert's lr x this from the first sync on
          stack_experts=False,  # one vmapped update for natural/pgd experts
          # (stacked.py); the loop measured faster on CPU
          mix_epochs=(0, 40, 80, 120),  # knots of every expert's mix_values
          sync=ml_collections.ConfigDict(
              dict(
                  kind='reference',  # 'reference' | 'every_steps' | 'never'
                  start_epoch=75,  # first (virtual) epoch that may sync, from 1
                  every_epochs=5,  # reference: a window ends at every e % this == 0
                  window_epochs=1,  # reference: (virtual) epochs in each window
                  virtual_epochs=120,  # 'relative': epochs of T / this steps for the rule
                  every_steps=100,  # every_steps: period in steps
              )),
      ))


def _eval_section() -> ml_collections.ConfigDict:
  """`config.eval`: validation during training, model selection, the final test."""
  return ml_collections.ConfigDict(
      dict(
          every_epochs=1,  # validation interval
          around_sync=True,  # also validate just before / after every sync window
          batch_size=256,
          val_attack=pgd_attack(steps=10),  # model selection attack
          test_attack=pgd_attack(steps=20),  # final test attack (PGD-20)
          best_metric='global/robust_acc',  # validation metric that picks 'best'
          clean_floor=0.0,  # 'best' only among validations with clean acc >= this
          final_test=True,  # test last and best-on-val at the end
      ))


def parse_eps(text) -> float:
  """A radius given as a number or a fraction: '8/255' -> 0.0313..., '0.5' -> 0.5.

  Args:
    text: a number, or a string of a number or a fraction.

  Returns:
    The radius as a float.

  Raises:
    ValueError: `text` is not a number or a fraction.
  """
  if isinstance(text, (int, float)):
    return float(text)
  numerator, slash, denominator = str(text).partition('/')
  try:
    return float(numerator) / float(denominator) if slash else float(numerator)
  except (ValueError, ZeroDivisionError):
    raise ValueError(f'eps {text!r} is not a number or a fraction like 8/255.') from None


class FractionParser(flags.FloatParser):
  """An absl parser for float fields that also takes a fraction ('8/255')."""

  def parse(self, argument):
    """The flag's value.

    Args:
      argument: the command-line text ('8/255', '0.5') or a number.

    Returns:
      The float (`parse_eps` of a string).

    Raises:
      ValueError: text that is not a number or a fraction.
    """
    return parse_eps(argument) if isinstance(argument, str) else super().parse(argument)


def compare_config(name='suite', order=(), checkpoint='best', attacks='pgd,apgd-ce',
                   norms=('linf',), eps=(8 / 255,), steps=20, n_ex=1000,
                   batch_size=256) -> ml_collections.ConfigDict:
  """The `compare` field of a suite config (`run/suite.py`): how every run is
  evaluated and where the table goes.

  Args:
    name: the table's name.
    order: the runs' order in the table (others follow).
    checkpoint: which checkpoint of each run, 'best' or 'last'.
    attacks: comma-separated attack names.
    norms: the threat models.
    eps: one radius per norm, pixel units of [0, 1].
    steps: the attacks' iterations.
    n_ex: test examples evaluated.
    batch_size: the evaluation batch.

  Returns:
    The `compare` ConfigDict.
  """
  return ml_collections.ConfigDict(
      dict(name=name, order=tuple(order), checkpoint=checkpoint, attacks=attacks,
           norms=tuple(norms), eps=tuple(eps), steps=steps, n_ex=n_ex, batch_size=batch_size))
