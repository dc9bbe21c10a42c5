"""AutoAttack-style evaluation (Croce & Hein 2020) from per-example flags.

Components are pure attacks `attack(logits_fn, x, y, key) -> x_adv` built by
`make_component(name, norm=..., eps=...)` with AutoAttack's 'standard' budgets
by default. A composite runs them in order, each on the examples that every
earlier one failed to break; every table is computed from the per-example
flags:

    robust (worst case)       = clean AND (flag of every attack)
    robust (union of norms)   = AND over norms of the per-norm worst case

Versions (per norm): 'standard' = APGD-CE, APGD-T, FAB-T, Square, as
AutoAttack's `set_version('standard')` lists them for every norm (l1: APGD with
5 restarts / 5 targets and the 3 eps -> eps schedule). AutoAttack's Square has
no l1 version (it asserts l-inf or l2), and neither does ours, so l1 'standard'
runs APGD-CE, APGD-T, FAB-T and every report says Square is missing
(`missing_components`). 'fast' = APGD-CE, APGD-T.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from generalist_jax import apgd
from generalist_jax import attacks
from generalist_jax import fab
from generalist_jax import square

DEFAULT_EPS = {'linf': 8 / 255, 'l2': 0.5, 'l1': 12.0}   # the CIFAR-10 conventions

AUTOATTACK_STANDARD = ('apgd-ce', 'apgd-t', 'fab-t', 'square')
WHITE_BOX = ('apgd-ce', 'apgd-dlr', 'apgd-t', 'fab-t', 'pgd', 'pgd-cw', 'fgsm', 'mim')
BLACK_BOX = ('square',)
# The one list of which attack runs in which threat model (config_lib checks against it).
IMPLEMENTED = {norm: WHITE_BOX + tuple(a for a in BLACK_BOX if norm in square.SQUARE)
               for norm in attacks.NORMS}


def version_components(version: str, norm: str) -> tuple[str, ...]:
  if version == 'standard':
    return tuple(a for a in AUTOATTACK_STANDARD if a in IMPLEMENTED[norm])
  if version == 'fast':
    return ('apgd-ce', 'apgd-t')
  raise ValueError(f"unknown version {version!r}; use 'standard', 'fast' or a list")


def missing_components(version: str, norm: str) -> tuple[str, ...]:
  if version != 'standard':
    return ()
  return tuple(a for a in AUTOATTACK_STANDARD if a not in IMPLEMENTED[norm])


def standard_settings(name: str, norm: str) -> dict:
  """AutoAttack 'standard' budgets (l1: 5 restarts, 5 targets, 3eps->eps schedule)."""
  l1 = norm == 'l1'
  return {
      'apgd-ce': dict(steps=100, restarts=5 if l1 else 1, large_eps_start=l1),
      'apgd-dlr': dict(steps=100, restarts=5 if l1 else 1, large_eps_start=l1),
      'apgd-t': dict(steps=100, restarts=1, n_targets=5 if l1 else 9, large_eps_start=l1),
      'fab-t': dict(steps=100, restarts=1, n_targets=9),
      'square': dict(n_queries=5000, p_init=0.8),
      'pgd': dict(steps=20, restarts=1),
      'pgd-cw': dict(steps=20, restarts=1),
      'fgsm': dict(),
      'mim': dict(steps=20, decay=1.0),
  }[name]


def make_component(name: str, *, norm: str, eps: float, **overrides) -> Callable:
  """`attack(logits_fn, x, y, key) -> x_adv`; `overrides` change the standard budget
  (`steps` also sets Square's `n_queries`)."""
  if name not in IMPLEMENTED.get(norm, ()):
    raise ValueError(f'attack {name!r} is not available for norm {norm!r}; '
                     f'available: {IMPLEMENTED.get(norm)}')
  settings = dict(standard_settings(name, norm))
  overrides = {k: v for k, v in overrides.items() if v is not None}
  if name == 'square' and 'steps' in overrides:
    overrides['n_queries'] = overrides.pop('steps')
  # A shared override (e.g. n_targets) only changes the attacks that have it.
  settings.update({k: v for k, v in overrides.items() if k in settings or k == 'step_size'})
  if name in ('apgd-ce', 'apgd-dlr'):
    loss = name.split('-')[1]
    return functools.partial(_bound, apgd.apgd, dict(settings, eps=eps, norm=norm, loss=loss))
  if name == 'apgd-t':
    return functools.partial(_bound, apgd.apgd_targeted, dict(settings, eps=eps, norm=norm))
  if name == 'fab-t':
    return functools.partial(_bound, fab.fab_targeted, dict(settings, eps=eps, norm=norm))
  if name == 'square':
    return functools.partial(_bound, square.SQUARE[norm], dict(settings, eps=eps))
  if name in ('pgd', 'pgd-cw'):
    steps = settings['steps']
    return functools.partial(_bound, attacks.pgd, dict(
        eps=eps, norm=norm, steps=steps, restarts=settings['restarts'],
        step_size=settings.get('step_size', 2.5 * eps / steps), unroll=1,
        loss='margin' if name == 'pgd-cw' else 'ce'))
  if name == 'fgsm':
    return functools.partial(_bound, attacks.fgsm, dict(eps=eps, norm=norm))
  steps = settings['steps']
  return functools.partial(_bound, attacks.mim, dict(
      eps=eps, norm=norm, steps=steps, decay=settings['decay'], unroll=1,
      step_size=settings.get('step_size', eps / steps)))


def _bound(fn, kwargs, logits_fn, x, y, key):
  return fn(logits_fn, x, y, key, **kwargs)


# ----------------------------------------------------------------------------
# Flags -> tables. int8 flags per attack: 1 robust, 0 fooled, -1 not run because
# an earlier attack (or the clean input) already broke the example, -2 pending.
# ----------------------------------------------------------------------------

ROBUST, FOOLED, SKIPPED, PENDING = 1, 0, -1, -2


def worst_case(clean: np.ndarray, attack_flags: list[np.ndarray]) -> np.ndarray:
  """Per-example AND: correct on the clean input and not fooled by any attack."""
  out = np.asarray(clean, bool).copy()
  for flags in attack_flags:
    flags = np.asarray(flags)
    if np.any(flags == PENDING):
      raise ValueError('worst case asked for before every attack finished')
    out &= flags != FOOLED
  return out


def union_over_norms(per_norm_worst: dict) -> np.ndarray:
  """Robust to the union of threat models: per-example AND over norms."""
  return np.logical_and.reduce([np.asarray(v, bool) for v in per_norm_worst.values()])


def still_robust(clean: np.ndarray, earlier: list[np.ndarray]) -> np.ndarray:
  """Examples that the next attack in the sequence must still try."""
  return worst_case(clean, earlier)
