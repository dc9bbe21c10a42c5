"""AutoAttack (Croce & Hein, ICML 2020): its versions and the algebra of per-example flags.

A version is an ordered list of attacks (rows of `registry.ATTACKS`). A
composite runs them in order, each on the examples that every earlier one
failed to break; every table is computed from the per-example flags:

    robust (worst case)       = clean AND (flag of every attack)
    robust (union of norms)   = AND over norms of the per-norm worst case

'standard' = APGD-CE, APGD-T, FAB-T, Square, as AutoAttack's
`set_version('standard')` lists them for every norm (l1: APGD with 5 restarts /
5 targets and the 3 eps -> eps schedule, `registry.standard_settings`); 'plus' and
'rand' as AutoAttack's; 'fast' (ours) = APGD-CE, APGD-T.
"""
from __future__ import annotations

import numpy as np

from generalist_jax.attacks import registry

DEFAULT_EPS = {'linf': 8 / 255, 'l2': 0.5, 'l1': 12.0}  # the CIFAR-10 conventions

# version -> ((attack, settings that differ from its registry row's standard budget), ...)
# as AutoAttack's `_set_version` (fra31/auto-attack autoattack.py): 'plus' adds
# APGD-DLR and untargeted FAB with 5 restarts and raises APGD-CE to 5 restarts;
# 'rand' is APGD-CE and APGD-DLR with EOT over 20 draws of a randomised model.
VERSIONS = {
    'standard': (('apgd-ce', {}), ('apgd-t', {}), ('fab-t', {}), ('square', {})),
    'plus': (
        ('apgd-ce', {'restarts': 5}), ('apgd-dlr', {'restarts': 5}), ('fab', {'restarts': 5}),
        ('square', {}), ('apgd-t', {'restarts': 1,
                                    'n_targets': 9}), ('fab-t', {'restarts': 1, 'n_targets': 9})),
    'rand': (('apgd-ce', {'restarts': 1,
                          'eot_iter': 20}), ('apgd-dlr', {'restarts': 1, 'eot_iter': 20})),
    'fast': (('apgd-ce', {}), ('apgd-t', {})),
}


def version_attacks(version: str, norm: str) -> tuple[tuple[str, dict], ...]:
  """The attacks of an AutoAttack version that run in a threat model.

  Args:
    version: a key of VERSIONS ('standard', 'plus', 'rand', 'fast').
    norm: 'linf', 'l2' or 'l1'.

  Returns:
    ((attack, settings that differ from its standard budget), ...), in order.

  Raises:
    ValueError: an unknown version.
  """
  if version not in VERSIONS:
    raise ValueError(f'unknown version {version!r}; use one of {tuple(VERSIONS)} or a list')
  return tuple((a, dict(o)) for a, o in VERSIONS[version] if a in registry.implemented(norm))


def version_components(version: str, norm: str) -> tuple[str, ...]:
  """The names of `version_attacks`.

  Args:
    version: a key of VERSIONS.
    norm: the threat model.

  Returns:
    The attack names, in order.

  Raises:
    ValueError: an unknown version.
  """
  return tuple(a for a, _ in version_attacks(version, norm))


def missing_components(version: str, norm: str) -> tuple[str, ...]:
  """The attacks of a version that have no implementation in a threat model.

  Args:
    version: a version, or anything else (an attack list: nothing is missing).
    norm: the threat model.

  Returns:
    The attack names, in the version's order.
  """
  if version not in VERSIONS:
    return ()
  return tuple(a for a, _ in VERSIONS[version] if a not in registry.implemented(norm))


# ----------------------------------------------------------------------------
# Flags -> tables. int8 flags per attack: 1 robust, 0 fooled, -1 not run because
# an earlier attack (or the clean input) already broke the example, -2 pending.
# ----------------------------------------------------------------------------

ROBUST, FOOLED, SKIPPED, PENDING = 1, 0, -1, -2


def worst_case(clean: np.ndarray, attack_flags: list[np.ndarray]) -> np.ndarray:
  """Per example: correct on the clean input and not fooled by any attack.

  Args:
    clean: [N] bool, correct on the clean input.
    attack_flags: int8 [N] flags per attack (ROBUST, FOOLED, SKIPPED).

  Returns:
    [N] bool.

  Raises:
    ValueError: a flag is still PENDING.
  """
  out = np.asarray(clean, bool).copy()
  for flags in attack_flags:
    flags = np.asarray(flags)
    if np.any(flags == PENDING):
      raise ValueError('worst case asked for before every attack finished')
    out &= flags != FOOLED
  return out


def union_over_norms(per_norm_worst: dict) -> np.ndarray:
  """Robust to the union of threat models: per-example AND over norms.

  Args:
    per_norm_worst: norm -> [N] bool (`worst_case` per norm), at least one norm.

  Returns:
    [N] bool.
  """
  return np.logical_and.reduce([np.asarray(v, bool) for v in per_norm_worst.values()])


def still_robust(clean: np.ndarray, earlier: list[np.ndarray]) -> np.ndarray:
  """The examples the next attack of a sequence must still try: those correct on the
  clean input that no earlier attack fooled.

  Args:
    clean: [N] bool.
    earlier: the flags of the attacks that ran before, in its norm.

  Returns:
    [N] bool.

  Raises:
    ValueError: an earlier flag is still PENDING.
  """
  return worst_case(clean, earlier)
