r"""Robustness evaluation of a trained run: AutoAttack-style, per-example, resumable.

  python -m generalist_jax.evaluate --workdir=runs/generalist_cifar10 \
      [--checkpoint=last|best|<step>] [--learner=global|<expert>] \
      [--attacks=standard|fast|apgd-ce,apgd-t,...] [--norm=linf[,l2,l1]] \
      [--eps=8/255[,0.5,12]] [--n_ex=1000] [--batch_size=256] [--seed=0] [--name=NAME]

Restores the checkpoint, runs the attacks of every norm in order on the TEST
split (a fixed random subset of n_ex examples), each attack only on the examples
that all earlier ones (for that norm) failed to break, and writes

  <workdir>/eval/<name>.json   accuracies, settings, seed, versions, sanity checks
  <workdir>/eval/<name>.csv    per-example flags (1 robust, 0 fooled, -1 not run:
                               already broken) and the worst cases
  <workdir>/eval/<name>.md     one column per attack, worst case per norm, union

The flags are saved after every batch (`<name>.state.npz`), so starting the
same command again continues where an interrupted evaluation stopped; batches
and keys are fixed by the flags of finished attacks, so the result is the same
as an uninterrupted run. (The work is `run.evaluate_run.evaluate_run`.)
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags

from generalist_jax import config
from generalist_jax.run import evaluate_run

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', 'best', "'last', 'best' or a step")
_LEARNER = flags.DEFINE_string('learner', 'global', "'global' or an expert's name")
_ATTACKS = flags.DEFINE_string(
    'attacks', 'standard', "'standard', 'fast' or a list: apgd-ce,apgd-dlr,apgd-t,fab-t,"
    'square (linf, l2),pgd,pgd-cw,fgsm,mim')
_NORM = flags.DEFINE_string('norm', 'linf', 'linf, l2, l1 or a comma list (union)')
_EPS = flags.DEFINE_string('eps', None, 'one per norm, e.g. 8/255,0.5 (default: the CIFAR '
                           'conventions 8/255, 0.5, 12)')
_N_EX = flags.DEFINE_integer('n_ex', 1000, 'test examples (a fixed random subset)')
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
flags.mark_flag_as_required('workdir')


def main(argv):
  """Evaluates one learner of one run (flags above)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  norms = [n.strip() for n in _NORM.value.split(',')]
  eps = [config.parse_eps(e) for e in _EPS.value.split(',')] if _EPS.value else None
  evaluate_run.evaluate_run(
      _WORKDIR.value, checkpoint=_CHECKPOINT.value, learner=_LEARNER.value,
      attacks=_ATTACKS.value, norms=norms, eps=eps, n_ex=_N_EX.value,
      batch_size=_BATCH_SIZE.value, seed=_SEED.value, name=_NAME.value,
      overrides={'steps': _STEPS.value, 'n_targets': _N_TARGETS.value,
                 'restarts': _RESTARTS.value},
      progress=not _NO_PROGRESS.value, allow_large_eps=_ALLOW_LARGE_EPS.value,
      command=' '.join([sys.executable, '-m', 'generalist_jax.evaluate'] + sys.argv[1:]))


if __name__ == '__main__':
  app.run(main)
