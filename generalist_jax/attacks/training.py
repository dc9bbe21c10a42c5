"""Training-time attacks beyond PGD: TRADES' KL attack, MART's start, and the
multi-norm attacks of the union-robustness baselines (AVG, MAX, MSD, E-AT), all
on the one ascent loop of `ascent.py` and the threat models of `threat.py`.

All are pure and jittable: `attack(logits_fn, x, y, key) -> x_adv` (or a tuple
of batches for AVG), `logits_fn` being the model in BatchNorm eval mode.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from generalist_jax.attacks import ascent
from generalist_jax.attacks import losses
from generalist_jax.attacks import threat

# TRADES and MART start from x + 0.001 * N(0, 1) (both official codes).
SMALL_START_STD = 1e-3


def small_start(key, x, norm: str, eps):
  """TRADES' and MART's start: a tiny Gaussian perturbation, projected.

  Args:
    key: one PRNG key.
    x: clean images [B, H, W, C] in [0, 1].
    norm: the threat model.
    eps: the radius (the projection is a no-op except for tiny radii).

  Returns:
    delta of x's shape: 0.001 N(0, 1) projected onto the ball ∩ box.
  """
  noise = SMALL_START_STD * jax.random.normal(key, x.shape, x.dtype)
  return threat.NORMS[norm].project(x, noise, eps)


def kl_divergence(p_logits, q_logits):
  """Per-example KL(softmax(p) || softmax(q)), as torch's
  KLDivLoss(log_softmax(q), softmax(p)) summed over classes.

  Args:
    p_logits, q_logits: [B, K].

  Returns:
    [B].
  """
  log_p = jax.nn.log_softmax(p_logits)
  return jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(q_logits)), axis=-1)


def trades_attack(logits_fn, x, y, key, *, eps, step_size, steps, norm='linf', unroll='auto'):
  """TRADES' inner maximisation (Zhang et al. 2019, yaodongyu/TRADES trades.py):
  maximise KL(f(x) || f(x')) from x + 0.001 N(0, 1).

  Args:
    logits_fn, x, key, eps, step_size, steps, norm, unroll: as `ascent.pgd`.
    y: unused (the loss needs no labels).

  Returns:
    x_adv [B, H, W, C], in the eps-ball around x and [0, 1].
  """
  del y
  clean = jax.lax.stop_gradient(logits_fn(x))
  delta = ascent.ascend(lambda xa: kl_divergence(clean, logits_fn(xa)), x,
                        small_start(key, x, norm, eps), norm=norm, eps=eps, step_size=step_size,
                        steps=steps, unroll=unroll)
  return x + delta


def ce_attack_small_start(logits_fn, x, y, key, *, eps, step_size, steps, norm='linf',
                          unroll='auto'):
  """MART's inner maximisation (Wang et al. 2020, YisenWang/MART mart.py): PGD on
  cross-entropy from x + 0.001 N(0, 1).

  Args:
    logits_fn, x, y, key, eps, step_size, steps, norm, unroll: as `ascent.pgd`.

  Returns:
    x_adv [B, H, W, C], in the eps-ball around x and [0, 1].
  """
  delta = ascent.ascend(lambda xa: losses.cross_entropy(logits_fn(xa), y), x,
                        small_start(key, x, norm, eps), norm=norm, eps=eps, step_size=step_size,
                        steps=steps, unroll=unroll)
  return x + delta


# ----------------------------------------------------------------------------
# Several threat models.
# ----------------------------------------------------------------------------


def per_norm_examples(per_norm_attacks: Sequence[Callable], logits_fn, x, y, key):
  """AVG's batches: one adversarial batch per threat model (independent attacks).

  Args:
    per_norm_attacks: k attacks `attack(logits_fn, x, y, key) -> x_adv`.
    logits_fn, x, y: as the attacks take them.
    key: attack j gets fold_in(key, j).

  Returns:
    [k, B, ...], stacked in the attacks' order.
  """
  return jnp.stack([
      attack(logits_fn, x, y, jax.random.fold_in(key, j))
      for j, attack in enumerate(per_norm_attacks)
  ])


def pick_per_example(candidates, index):
  """Per example, one of k candidate batches.

  Args:
    candidates: [k, B, ...].
    index: [B] ints in 0..k-1.

  Returns:
    [B, ...]: row b of candidate index[b].
  """
  index = index.reshape((1, -1) + (1,) * (candidates.ndim - 2))
  return jnp.take_along_axis(candidates, index, axis=0)[0]


def worst_per_example(logits_fn, candidates, y):
  """MAX (Tramer & Boneh 2019; Maini et al. 2020): per example, the candidate
  with the highest cross-entropy.

  Args:
    logits_fn: the model.
    candidates: [k, B, ...] adversarial batches.
    y: labels [B].

  Returns:
    (x_worst [B, ...], cross-entropies [k, B]).
  """
  per_candidate = jnp.stack([losses.cross_entropy(logits_fn(c), y) for c in candidates])
  return pick_per_example(candidates, jnp.argmax(per_candidate, axis=0)), per_candidate


def msd(logits_fn, x, y, key, *, norms: Sequence[str], eps: Sequence[float],
        step_sizes: Sequence[float], steps: int, unroll='auto'):
  """Multi Steepest Descent (Maini et al. 2020, locuslab/robust_union `msd_v0`).

  From delta = 0, every iteration takes ONE gradient of the cross-entropy and
  the steepest-ascent step of every threat model (each projected onto its own
  ball and the box), keeps per example the candidate with the highest loss,
  and returns the highest-loss point seen over all iterations.
  Differences from the reference: the exact projections of threat.py instead
  of project-then-clip, and the fixed-fraction sparse l1 step of
  `threat.l1_topk_step` (the reference draws k in 5..20% each iteration).

  Args:
    logits_fn, x, y: the model, clean images [B, H, W, C] in [0, 1], labels [B].
    key: unused (the reference starts at zero: deterministic).
    norms, eps, step_sizes: one threat model, radius and step size each.
    steps: iterations.
    unroll: as `ascent.resolve_unroll`.

  Returns:
    x_adv [B, H, W, C]: inside [0, 1] and the ball of the norm whose step made it.
  """
  del key  # deterministic: the reference starts at zero
  steps_per_norm = [
      ascent.projected_step(threat.NORMS[n], x, e, s) for n, s, e in zip(norms, step_sizes, eps)
  ]
  grad = ascent.input_gradient(lambda inputs: losses.cross_entropy(logits_fn(inputs), y), x)

  def body(carry):
    delta, best_delta, best_loss = carry
    g = grad(delta)
    candidates = jnp.stack([step(delta, g) for step in steps_per_norm])
    x_best, per_candidate = worst_per_example(logits_fn, x + candidates, y)
    delta = x_best - x
    loss = per_candidate.max(axis=0)
    better = loss > best_loss
    best_delta = jnp.where(better.reshape((-1,) + (1,) * (x.ndim - 1)), delta, best_delta)
    return delta, best_delta, jnp.maximum(loss, best_loss)

  zeros = jnp.zeros_like(x)
  init = (zeros, zeros, jnp.zeros(x.shape[:1], x.dtype))
  _, best_delta, _ = ascent.iterate(body, init, steps, unroll)
  return x + best_delta


def sampled_norm(key, num_norms: int):
  """E-AT: which threat model this batch is attacked in.

  Args:
    key: the step's key.
    num_norms: the threat models to choose from.

  Returns:
    A scalar int32, uniform in 0..num_norms-1 (from fold_in(key, 0x5EA7)).
  """
  return jax.random.randint(jax.random.fold_in(key, 0x5EA7), (), 0, num_norms)


def one_sampled_norm(per_norm_attacks: Sequence[Callable], logits_fn, x, y, key):
  """E-AT (Croce & Hein 2022): the whole batch is attacked in ONE threat model,
  drawn per batch (`sampled_norm`); only that attack runs (`lax.switch`).

  Args:
    per_norm_attacks: one attack per threat model.
    logits_fn, x, y, key: as the attacks take them.

  Returns:
    x_adv [B, ...] of the drawn attack.
  """
  branches = [lambda xx, yy, kk, a=a: a(logits_fn, xx, yy, kk) for a in per_norm_attacks]
  return jax.lax.switch(sampled_norm(key, len(branches)), branches, x, y, key)


def pgd_norm_indexed(logits_fn, x, y, key, *, norm_index, norms: Sequence[str], eps, step_size,
                     steps: int, random_start: bool = True, unroll='auto'):
  """CE-PGD whose threat model is data: `norms[norm_index]`, with eps and step
  size possibly traced. Same values as `ascent.pgd` (one restart, key
  fold_in(key, 0)) for that norm. Under `jax.vmap` over experts (stacked
  training) the index is batched, so `lax.switch` computes every listed norm's
  step and projection and selects; the model's gradient, the costly part, is
  still taken once per step for all experts together.

  Args:
    logits_fn, x, y, key, steps, random_start, unroll: as `ascent.pgd`.
    norm_index: an int (may be traced) into `norms`.
    norms: the threat models it may pick.
    eps, step_size: scalars (may be traced) for the picked norm.

  Returns:
    x_adv [B, H, W, C], in the eps-ball around x and [0, 1].
  """
  threats = [threat.NORMS[n] for n in norms]
  grad = ascent.input_gradient(lambda inputs: losses.cross_entropy(logits_fn(inputs), y), x)

  def pick(make):  # one branch per norm
    return lambda *args: jax.lax.switch(norm_index, [functools.partial(make, t)
                                                     for t in threats], *args)

  start = pick(lambda t, k: t.project(x, t.init(k, x, eps), eps))
  ascend_one = pick(lambda t, d, g: ascent.projected_step(t, x, eps, step_size)(d, g))
  delta = start(jax.random.fold_in(key, 0)) if random_start else jnp.zeros_like(x)
  delta = ascent.iterate(lambda d: ascend_one(d, grad(d)), delta, steps, unroll)
  return x + delta
