"""Every attack, one row each: its function, the threat models it runs in,
AutoAttack's 'standard' budget and whether it needs gradients (white box) or
only scores (black box).

`build(name, norm=, eps=, overrides=)` binds a row into
`attack(logits_fn, x, y, key) -> x_adv`; settings not given take the row's
standard budget (`standard_settings`). `build_staged` gives the same attack cut
into stages (`staged.Staged`) where the row has them, for evaluations that drop
broken examples between stages. Adding an attack is one function
`fn(logits_fn, x, y, key, *, eps, norm, **settings) -> x_adv` and one row in
`ATTACKS`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from generalist_jax.attacks import apgd
from generalist_jax.attacks import ascent
from generalist_jax.attacks import fab
from generalist_jax.attacks import losses
from generalist_jax.attacks import square
from generalist_jax.attacks import staged
from generalist_jax.attacks import threat

ALL_NORMS = tuple(threat.NORMS)


@dataclasses.dataclass(frozen=True)
class Attack:
  """One row of the registry: an attack's function, where it runs, its standard
  budget, and what an evaluation needs to know about it (fields below)."""
  fn: Callable  # fn(logits_fn, x, y, key, *, eps, norm, **settings)
  norms: tuple  # threat models it is implemented for
  standard: Callable[[str], dict]  # norm -> AutoAttack's 'standard' settings
  box: str  # 'white' (gradients) or 'black' (scores only)
  # settings -> whether the attack draws random numbers with these settings (then an
  # evaluation gives every example its own key; a key-free attack runs batched).
  uses_key: Callable[[dict], bool] = lambda settings: True
  # settings -> the loss it ascends (`losses.MIN_CLASSES` says how many classes it needs).
  loss: Callable[[dict], str] = lambda settings: settings.get('loss', 'ce')
  # stages(*, eps, norm, **settings) -> staged.Staged: the attack cut at its targets,
  # restarts or query blocks; None: one stage.
  stages: Callable | None = None


def _pgd(logits_fn, x, y, key, *, eps, norm, steps, restarts, step_size, loss, random_start,
         unroll):
  """PGD; step_size None: 2.5 eps / steps (Madry et al.'s rule)."""
  step_size = 2.5 * eps / steps if step_size is None else step_size
  return ascent.pgd(logits_fn, x, y, key, eps=eps, norm=norm, steps=steps, restarts=restarts,
                    step_size=step_size, loss=loss, random_start=random_start, unroll=unroll)


def _mim(logits_fn, x, y, key, *, eps, norm, steps, decay, step_size, loss, random_start, unroll):
  """MIM; step_size None: eps / steps (Dong et al.)."""
  step_size = eps / steps if step_size is None else step_size
  return ascent.mim(logits_fn, x, y, key, eps=eps, norm=norm, steps=steps, decay=decay,
                    step_size=step_size, loss=loss, random_start=random_start, unroll=unroll)


def _apgd_settings(norm: str) -> dict:
  """APGD-CE's / APGD-DLR's standard budget in `norm`."""
  l1 = norm == 'l1'  # APGD-l1: 5 restarts and the 3 eps -> eps schedule
  return dict(steps=100, restarts=5 if l1 else 1, large_eps_start=l1, eot_iter=1)


def _pgd_settings(loss: str) -> Callable[[str], dict]:
  """norm -> PGD's budget on `loss` (20 steps, random start; the same in every norm)."""
  return lambda norm: dict(steps=20, restarts=1, step_size=None, loss=loss, random_start=True,
                           unroll=1)


ATTACKS = {
    'apgd-ce': Attack(functools.partial(apgd.apgd, loss='ce'), ALL_NORMS, _apgd_settings, 'white',
                      stages=functools.partial(apgd.apgd_staged, loss='ce')),
    'apgd-dlr': Attack(functools.partial(apgd.apgd, loss='dlr'), ALL_NORMS, _apgd_settings, 'white',
                       loss=lambda s: 'dlr', stages=functools.partial(apgd.apgd_staged,
                                                                      loss='dlr')),
    'apgd-t': Attack(
        apgd.apgd_targeted, ALL_NORMS,
        lambda norm: dict(steps=100, restarts=1, n_targets=5
                          if norm == 'l1' else 9, large_eps_start=norm == 'l1'), 'white',
        loss=lambda s: 'targeted_dlr', stages=apgd.apgd_targeted_staged),
    'fab-t': Attack(
        fab.fab_targeted,
        ALL_NORMS,
        lambda norm: dict(steps=100, restarts=1, n_targets=9),
        'white',
        uses_key=lambda s: s['restarts'] > 1,  # restarts > 1: random starts
        stages=fab.fab_targeted_staged),
    'fab': Attack(fab.fab_untargeted, ALL_NORMS, lambda norm: dict(steps=100, restarts=5), 'white',
                  uses_key=lambda s: s['restarts'] > 1, stages=fab.fab_untargeted_staged),
    'pgd': Attack(_pgd, ALL_NORMS, _pgd_settings('ce'), 'white',
                  uses_key=lambda s: s['random_start']),
    'pgd-cw': Attack(_pgd, ALL_NORMS, _pgd_settings('margin'), 'white',
                     uses_key=lambda s: s['random_start']),
    'fgsm': Attack(ascent.fgsm, ALL_NORMS, lambda norm: dict(loss='ce'), 'white',
                   uses_key=lambda s: False),
    'mim': Attack(
        _mim, ALL_NORMS, lambda norm: dict(steps=20, decay=1.0, step_size=None, loss='ce',
                                           random_start=False, unroll=1), 'white',
        uses_key=lambda s: s['random_start']),
    'square': Attack(square.square, square.SQUARE, lambda norm: dict(n_queries=5000, p_init=0.8),
                     'black', stages=square.square_staged),
}


def implemented(norm: str) -> tuple[str, ...]:
  """The attacks that run in a threat model.

  Args:
    norm: 'linf', 'l2' or 'l1'.

  Returns:
    Their names, in registry order (() for an unknown norm).
  """
  return tuple(name for name, row in ATTACKS.items() if norm in row.norms)


def standard_settings(name: str, norm: str) -> dict:
  """AutoAttack's 'standard' budget of an attack.

  Args:
    name: a key of ATTACKS.
    norm: the threat model.

  Returns:
    Its settings (steps, restarts, ...), a fresh dict.

  Raises:
    KeyError: an unknown attack.
  """
  return dict(ATTACKS[name].standard(norm))


def settings(name: str, norm: str, overrides: dict | None = None) -> dict:
  """An attack's settings: its standard budget with `overrides` applied.

  Args:
    name: a key of ATTACKS.
    norm: the threat model.
    overrides: {setting: value}. A key the attack does not have is ignored (so a
      shared override such as n_targets changes only the attacks that have it);
      `steps` sets Square's `n_queries` unless n_queries is given too; None keeps
      the standard value.

  Returns:
    The settings, a fresh dict (eps and norm not included).

  Raises:
    KeyError: an unknown attack.
  """
  out = standard_settings(name, norm)
  overrides = overrides or {}
  for key, value in overrides.items():
    if key == 'steps' and 'n_queries' in out:
      if overrides.get('n_queries') is not None:
        continue  # an explicit n_queries wins over the shared steps
      key = 'n_queries'
    if key in out and value is not None:
      out[key] = value
  return out


# Settings that count something (iterations, runs, targets, draws): 0 or fewer is a typo.
SIZE_SETTINGS = ('steps', 'restarts', 'n_targets', 'n_queries', 'eot_iter')


def check_positive(sizes: dict) -> None:
  """Refuses sizes that count something and are below 1 (a negative n_ex, 0 steps,
  an empty batch).

  Args:
    sizes: {name: value}; None values are skipped.

  Raises:
    ValueError: naming the first value that is not an integer >= 1 (bools too).
  """
  for name, value in sizes.items():
    if value is None:
      continue
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
      raise ValueError(f'{name}={value!r}: must be an integer >= 1.')


def check_classes(name: str, settings: dict, num_classes: int) -> None:
  """Refuses an attack that cannot work on a model of `num_classes` classes.

  Args:
    name: a key of ATTACKS.
    settings: its settings (`settings`): the loss and n_targets count.
    num_classes: K.

  Raises:
    ValueError, naming the fix: its loss needs more classes (DLR 3, targeted DLR 4:
      `losses.MIN_CLASSES`), or it asks for more target classes than the K - 1
      there are.
  """
  problem = losses.classes_problem(ATTACKS[name].loss(settings), num_classes)
  if problem:
    raise ValueError(f'attack {name!r}: {problem}')
  n_targets = settings.get('n_targets')
  if n_targets is not None and n_targets > num_classes - 1:
    raise ValueError(
        f'attack {name!r}: n_targets={n_targets} target classes, but a model of '
        f'{num_classes} classes has only {num_classes - 1} other classes; set n_targets <= '
        f'{num_classes - 1} (--n_targets, or overrides={{"n_targets": {num_classes - 1}}}).')


def check_available(name: str, norm: str) -> None:
  """Refuses an attack that does not run in a threat model.

  Args:
    name: an attack name.
    norm: the threat model.

  Raises:
    ValueError: an unknown attack or norm, or an attack without that norm; the
      message names the attacks available in it.
  """
  if name not in ATTACKS or norm not in ATTACKS[name].norms:
    raise ValueError(f'attack {name!r} is not available for norm {norm!r}; '
                     f'available: {implemented(norm) if norm in ALL_NORMS else ()}')


def build(name: str, *, norm: str, eps: float, overrides: dict | None = None) -> Callable:
  """An attack of the registry, bound to a threat model, a radius and a budget.

  Args:
    name: a key of ATTACKS ('apgd-ce', 'apgd-t', 'fab-t', 'square', 'pgd', ...).
    norm: 'linf', 'l2' or 'l1'.
    eps: the radius, pixel units of [0, 1].
    overrides: budget changes (`settings`); the rest is AutoAttack's standard budget.

  Returns:
    `attack(logits_fn, x, y, key) -> x_adv`: x [B, H, W, C] in [0, 1], y [B] int,
    key one PRNG key or one per example; x_adv inside the eps-ball and [0, 1].

  Raises:
    ValueError: an attack not available in `norm`, a size setting below 1.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from generalist_jax.attacks import registry
    >>> attack = registry.build('pgd', norm='l2', eps=0.5, overrides={'steps': 10})
    >>> w = jax.random.normal(jax.random.PRNGKey(1), (4 * 4 * 3, 10))
    >>> logits_fn = lambda x: x.reshape(len(x), -1) @ w
    >>> x = jax.random.uniform(jax.random.PRNGKey(2), (8, 4, 4, 3))
    >>> x_adv = attack(logits_fn, x, jnp.argmax(logits_fn(x), -1), jax.random.PRNGKey(0))
    >>> bool(jnp.all(jnp.linalg.norm((x_adv - x).reshape(8, -1), axis=-1) <= 0.5 + 1e-5))
    True
  """
  check_available(name, norm)
  bound = settings(name, norm, overrides)
  check_positive({k: v for k, v in bound.items() if k in SIZE_SETTINGS})
  return functools.partial(_bound, ATTACKS[name].fn, dict(bound, eps=eps, norm=norm))


def _bound(fn, kwargs, logits_fn, x, y, key):
  """`build`'s attack: fn called with the settings it bound."""
  return fn(logits_fn, x, y, key, **kwargs)


def build_staged(name: str, *, norm: str, eps: float, overrides: dict | None = None,
                 query_block: int | None = None) -> staged.Staged:
  """`build`'s attack cut into stages (`staged.Staged`), for evaluations that drop
  the broken examples between stages.

  Args:
    name, norm, eps, overrides: as `build`.
    query_block: iterations per stage of a query-based attack (Square); None for
      its default.

  Returns:
    The staged attack: the row's stages, or the whole attack as one stage.

  Raises:
    ValueError: as `build`.
  """
  attack = build(name, norm=norm, eps=eps, overrides=overrides)
  row = ATTACKS[name]
  if row.stages is None:
    return staged.single(attack)
  kwargs = dict(settings(name, norm, overrides), eps=eps, norm=norm)
  if query_block is not None and 'n_queries' in kwargs:
    kwargs['query_block'] = query_block
  return row.stages(**kwargs)
