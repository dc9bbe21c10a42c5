r"""Robustness evaluation of a trained run: AutoAttack-style, per-example, resumable.

  python -m generalist_jax.evaluate --workdir=runs/generalist_cifar10 \
      [--checkpoint=last|best|<step>] [--learner=global|<expert>] \
      [--attacks=standard|fast|apgd-ce,apgd-t,...] [--norm=linf[,l2,l1]] \
      [--eps=8/255[,0.5,12]] [--n_ex=1000] [--subset=random|first] [--save_adv] \
      [--batch_size=256] [--seed=0] [--name=NAME]

Restores the checkpoint, runs the attacks of every norm in order on the TEST
split (n_ex examples: a fixed random subset, or with --subset=first the first
n_ex as RobustBench's benchmark takes them), each attack only on the examples
that all earlier ones (for that norm) failed to break, and writes

  <workdir>/eval/<name>.json   accuracies, settings, seed, versions, sanity checks
  <workdir>/eval/<name>.csv    per-example flags (1 robust, 0 fooled, -1 not run:
                               already broken) and the worst cases
  <workdir>/eval/<name>.md     one column per attack, worst case per norm, union
  <workdir>/eval/<name>.adv.npz          with --save_adv (one norm): x_adv float32
                               NHWC (the clean image where no attack succeeded, as
                               AutoAttack's run_standard_evaluation), y, clean,
                               robust, example_ids
  <workdir>/eval/<name>.model_info.json  a RobustBench leaderboard entry, for a
                               single-norm 'standard' evaluation at the standard
                               budgets (otherwise the reason is printed)

The flags are saved after every batch (`<name>.state.npz`), so starting the
same command again continues where an interrupted evaluation stopped; batches
and keys are fixed by the flags of finished attacks, so the result is the same
as an uninterrupted run. (The work is `run.evaluate_run.evaluate_run`, through
`evaluation.pipeline.evaluate` as every evaluation.) Compiled attacks are kept in
XLA's persistent cache (`evaluation/compile_cache.py`: $GENERALIST_JAX_CACHE_DIR,
default ~/.cache/generalist_jax/xla; =0 turns it off).

A model trained elsewhere, as a PyTorch state_dict (ours, or RobustBench's
PreAct-ResNet-18 / ResNet-18 / WideResNet key names), is evaluated the same way:

  python -m generalist_jax.evaluate --torch_checkpoint=model.pt --arch=wrn-28-10 \
      --data=cifar10 [--data_dir=DIR | --data=/path/data.npz] [--mean=... --std=...] \
      --attacks=standard --norm=linf --eps=8/255 --n_ex=1000 --out=eval_wrn

(`evaluation/external.py`; --mean/--std: the normalisation inside the model, none by
default, as RobustBench's CIFAR models take [0, 1] inputs; resumable from
<out>/<name>.state.npz; --subset, --save_adv and the RobustBench entry as above.)

Every device of every process attacks: each attack's batch is split over the mesh
of all of them, and the per-example flags do not depend on the split. Several
processes start the same command with --coordinator_address=HOST:PORT
--num_processes=P --process_id=I (SLURM, Open MPI and TPU pods need none of them);
process 0 writes the files.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags

from generalist_jax import config
from generalist_jax.attacks import autoattack
from generalist_jax.evaluation import compile_cache
from generalist_jax.evaluation import external
from generalist_jax.evaluation import pipeline
from generalist_jax.run import cli
from generalist_jax.run import evaluate_run
from generalist_jax.run import process_flags

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (or --torch_checkpoint).')
_CHECKPOINT = flags.DEFINE_string('checkpoint', 'best', "'last', 'best' or a step")
_LEARNER = flags.DEFINE_string('learner', 'global', "'global' or an expert's name")
_ATTACKS = flags.DEFINE_string(
    'attacks', 'standard', "'standard', 'fast' or a list: apgd-ce,apgd-dlr,apgd-t,fab-t,"
    'square (linf, l2),pgd,pgd-cw,fgsm,mim')
_NORM = flags.DEFINE_string('norm', 'linf', 'linf, l2, l1 or a comma list (union)')
_EPS = flags.DEFINE_string(
    'eps', None, 'one per norm, e.g. 8/255,0.5 (default: the CIFAR '
    'conventions 8/255, 0.5, 12)')
_N_EX = flags.DEFINE_integer('n_ex', 1000, 'test examples (see --subset)')
_SUBSET = flags.DEFINE_enum(
    'subset', 'random', pipeline.SUBSETS,
    "'random': a fixed random n_ex of the test split; 'first': "
    'the first n_ex (as RobustBench)')
_SAVE_ADV = flags.DEFINE_boolean(
    'save_adv', False, 'also write the adversarial examples '
    '(<name>.adv.npz; one norm)')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'examples per attack batch')
_SEED = flags.DEFINE_integer('seed', 0, 'attack randomness')
_NAME = flags.DEFINE_string('name', None, 'output name (default: from the settings)')
_STEPS = flags.DEFINE_integer('steps', None,
                              'override iterations (APGD, PGD, MIM) / queries (Square)')
_N_TARGETS = flags.DEFINE_integer('n_targets', None, 'override APGD-T / FAB-T targets')
_RESTARTS = flags.DEFINE_integer('restarts', None, 'override APGD/PGD restarts')
_NO_PROGRESS = flags.DEFINE_boolean('no_progress', False, 'no progress bar')
_ALLOW_LARGE_EPS = flags.DEFINE_boolean(
    'allow_large_eps', False, 'run radii whose ball holds every image (l-inf >= 1, l2 > '
    'sqrt(d), l1 > d); refused by default: eps is in pixel units of [0, 1]')
_TORCH_CHECKPOINT = flags.DEFINE_string('torch_checkpoint', None,
                                        'a PyTorch state_dict to evaluate instead of a run')
_ARCH = flags.DEFINE_string(
    'arch', None, "with --torch_checkpoint: 'wrn-28-10', 'wrn-34-10', "
    "'preact_resnet18', 'resnet18'")
_DATA = flags.DEFINE_string('data', 'cifar10', 'with --torch_checkpoint: a TFDS name or an .npz')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 10, 'with --torch_checkpoint')
_MEAN = flags.DEFINE_string('mean', '0', 'per-channel mean inside the model, comma list')
_STD = flags.DEFINE_string('std', '1', 'per-channel std inside the model, comma list')
_OUT = flags.DEFINE_string('out', 'eval_torch', 'with --torch_checkpoint: output folder')


def evaluate():
  """Evaluates one learner of one run (flags above)."""
  process_flags.initialize_distributed()
  compile_cache.enable()
  norms = [n.strip() for n in _NORM.value.split(',')]
  eps = [config.parse_eps(e) for e in _EPS.value.split(',')] if _EPS.value else None
  overrides = {'steps': _STEPS.value, 'n_targets': _N_TARGETS.value, 'restarts': _RESTARTS.value}
  command = ' '.join([sys.executable, '-m', 'generalist_jax.evaluate'] + sys.argv[1:])
  if _TORCH_CHECKPOINT.value:
    if not _ARCH.value:
      raise app.UsageError('--torch_checkpoint needs --arch (e.g. wrn-28-10).')
    source = ({'source': 'npz', 'path': _DATA.value} if _DATA.value.endswith('.npz') else
              {'source': 'tfds', 'name': _DATA.value, 'data_dir': _DATA_DIR.value})
    external.evaluate_torch_checkpoint(
        _TORCH_CHECKPOINT.value, arch=_ARCH.value, data_config=dict(source,
                                                                    val_size=1), out_dir=_OUT.value,
        attacks=_ATTACKS.value, norms=norms, eps=eps or [autoattack.DEFAULT_EPS[n] for n in norms],
        n_ex=_N_EX.value, batch_size=_BATCH_SIZE.value, seed=_SEED.value,
        num_classes=_NUM_CLASSES.value, mean=[float(v) for v in _MEAN.value.split(',')],
        std=[float(v) for v in _STD.value.split(',')], overrides=overrides,
        allow_large_eps=_ALLOW_LARGE_EPS.value, progress=not _NO_PROGRESS.value, command=command,
        subset=_SUBSET.value, save_adv=_SAVE_ADV.value, name=_NAME.value)
    return
  if not _WORKDIR.value:
    raise app.UsageError('give --workdir (a run) or --torch_checkpoint.')
  evaluate_run.evaluate_run(_WORKDIR.value, checkpoint=_CHECKPOINT.value, learner=_LEARNER.value,
                            attacks=_ATTACKS.value, norms=norms, eps=eps, n_ex=_N_EX.value,
                            batch_size=_BATCH_SIZE.value, seed=_SEED.value, name=_NAME.value,
                            overrides=overrides, progress=not _NO_PROGRESS.value,
                            allow_large_eps=_ALLOW_LARGE_EPS.value, command=command,
                            subset=_SUBSET.value, save_adv=_SAVE_ADV.value)


if __name__ == '__main__':
  app.run(cli.flags_only(evaluate))
