"""Attacks: pure, jittable `attack(logits_fn, x, y, key) -> x_adv`.

The front door. Layout, from the bottom:

  losses.py      per-example losses on logits (CE, margin, DLR, targeted DLR)
  threat.py      threat models l-inf / l2 / l1: start, steepest step, exact projection
  ascent.py      the one ascent loop; PGD, FGSM, MIM
  apgd.py, fab.py, square.py   AutoAttack's components
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
from generalist_jax.attacks.registry import ATTACKS, build
from generalist_jax.attacks.threat import NORMS, lp_norm

# Config fields an attack config (`config.pgd_attack()`) can set; `make_attack`
# passes those the attack's registry row has.
_CONFIG_FIELDS = {'step_size': float, 'steps': int, 'loss': str, 'random_start': bool,
                  'restarts': int, 'unroll': lambda v: v}


def make_attack(attack_config) -> Callable:
  """Binds an attack config (ConfigDict or dict with `kind`, `norm`, `eps`, ...) into
  `attack(logits_fn, x, y, key) -> x_adv`.

  `kind` is any row of `registry.ATTACKS` ('pgd' by default); the config's
  fields that the row has (steps, step_size, loss, restarts, random_start,
  unroll) override its standard budget, the others are not read. Raises
  ValueError for an attack not implemented in `norm`.
  """
  fields = {k: cast(attack_config[k]) for k, cast in _CONFIG_FIELDS.items()
            if k in attack_config}
  return build(attack_config.get('kind', 'pgd'), norm=attack_config.get('norm', 'linf'),
               eps=float(attack_config['eps']), overrides=fields)


__all__ = ['ATTACKS', 'LOSSES', 'NORMS', 'build', 'cross_entropy', 'fgsm', 'lp_norm',
           'make_attack', 'mim', 'pgd', 'resolve_unroll']
