"""Attacks: pure, jittable `attack(logits_fn, x, y, key) -> x_adv`.

The front door. Layout, from the bottom:

  rng.py         random draws from one key, or one key per example
  losses.py      per-example losses on logits (CE, margin, DLR, targeted DLR)
  search.py      per-row searches without a sort: bisection, radix select
  threat.py      threat models l-inf / l2 / l1: start, steepest step, exact projection
  ascent.py      the one ascent loop; PGD, FGSM, MIM
  apgd.py, fab.py, square.py   AutoAttack's components (apgd_loop.py: one APGD run;
                               hyperplane.py: FAB's projection)
  staged.py      an attack cut into stages (targets, restarts, query blocks) for evaluations
  training.py    training-time attacks (TRADES, MART, AVG / MAX / MSD / E-AT)
  registry.py    one row per attack: function, norms, standard budget, white/black box
  autoattack.py  AutoAttack's versions and the per-example flag algebra

`logits_fn(x) -> logits` is the model with its variables bound and BatchNorm in
eval mode; x [B, H, W, C] float32 in [0, 1]; y [B] int; eps in pixel units.
"""
from __future__ import annotations

from typing import Callable

from generalist_jax.attacks.ascent import fgsm, mim, pgd, resolve_unroll
from generalist_jax.attacks.losses import LOSSES, cross_entropy
from generalist_jax.attacks import registry
from generalist_jax.attacks.registry import ATTACKS, build
from generalist_jax.attacks.threat import NORMS, lp_norm

# Config fields an attack config (`config.pgd_attack()`) can set; `make_attack`
# passes those the attack's registry row has.
_CONFIG_FIELDS = {
    'step_size': float, 'steps': int, 'loss': str, 'random_start': bool, 'restarts': int,
    'unroll': lambda v: v
}


def make_attack(attack_config) -> Callable:
  """The attack a config describes (training's and validation's attacks).

  Args:
    attack_config: a ConfigDict or dict with `kind` (a row of `registry.ATTACKS`,
      default 'pgd'), `norm` (default 'linf'), `eps` (pixel units of [0, 1]) and
      budget fields; those the row has (steps, step_size, loss, restarts,
      random_start, unroll) override its standard budget, the others are not read.

  Returns:
    `attack(logits_fn, x, y, key) -> x_adv` (`registry.build`).

  Raises:
    ValueError: an attack not implemented in `norm`, a size below 1.
    KeyError: no eps.
  """
  return build(attack_config.get('kind', 'pgd'), norm=attack_config.get('norm', 'linf'),
               eps=float(attack_config['eps']), overrides=_config_fields(attack_config))


def _config_fields(attack_config) -> dict:
  """The budget fields the config sets, cast to their types."""
  return {k: cast(attack_config[k]) for k, cast in _CONFIG_FIELDS.items() if k in attack_config}


def attack_settings(attack_config) -> dict:
  """The settings `make_attack` binds, e.g. to check them against the data.

  Args:
    attack_config: as `make_attack` (eps is not read).

  Returns:
    Its kind's standard budget with the config's fields applied (`registry.settings`).

  Raises:
    KeyError: an unknown kind.
  """
  return registry.settings(attack_config.get('kind', 'pgd'), attack_config.get('norm', 'linf'),
                           _config_fields(attack_config))


__all__ = [
    'ATTACKS', 'LOSSES', 'NORMS', 'attack_settings', 'build', 'cross_entropy', 'fgsm', 'lp_norm',
    'make_attack', 'mim', 'pgd', 'resolve_unroll'
]
