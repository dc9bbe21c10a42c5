"""The jitted per-batch functions of an evaluation (`runner.run_evaluation`).

Each is compiled once per predictor, attack, mesh and batch size: the functions
are cached here (`_COMPILED`), so a resumed or repeated evaluation reuses them. A
predictor is `apply_fn(params, x [B, H, W, C] in [0, 1]) -> logits [B, K]`; every
function takes the batch split over the devices of a 'data' mesh and returns one
value per example, split likewise.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from generalist_jax import attacks
from generalist_jax import models
from generalist_jax import parallel
from generalist_jax.attacks import registry
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged

_COMPILED = {}


def model_apply_fn(model) -> Callable:
  """The predictor of a flax model of `models`, BatchNorm in eval mode.

  One function object per model (by its repr), so the evaluations compiled for
  it are reused.

  Args:
    model: a flax module made by `models.create_model`.

  Returns:
    `apply_fn(variables, x [B, H, W, C] in [0, 1]) -> logits [B, K]`.
  """
  key = ('apply', repr(model))
  if key not in _COMPILED:
    _COMPILED[key] = lambda variables, x: models.apply_model(model, variables, x, train=False)[0]
  return _COMPILED[key]


def bind(apply_fn, params) -> Callable:
  """The `logits_fn` an attack takes, from a predictor and its weights.

  Args:
    apply_fn: the predictor; a randomised one also takes a key,
      `apply_fn(params, x, key)`.
    params: its weights.

  Returns:
    `logits_fn(x, key=None)`: the key reaches the predictor only when an attack
    draws the model (EOT).
  """
  return lambda inputs, key=None: (apply_fn(params, inputs)
                                   if key is None else apply_fn(params, inputs, key))


def _jit(fn, mesh, in_specs):
  """jit with the batch split over the mesh ('b' arguments) and the rest replicated;
  every output is per example, split likewise."""
  shardings = {'b': parallel.batch_sharded(mesh), 'r': parallel.replicated(mesh)}
  return jax.jit(fn, in_shardings=tuple(shardings[c] for c in in_specs),
                 out_shardings=shardings['b'], compiler_options=models.compiler_options())


def clean_batch_fn(apply_fn, mesh) -> Callable:
  """The clean pass: prediction and input gradient of every example of a batch.

  Args:
    apply_fn: the predictor.
    mesh: the 'data' mesh the batch is split over.

  Returns:
    `jit(params, x [B, H, W, C], y [B]) -> {'correct', 'grad_zero',
    'grad_nonfinite'}`, each [B] bool: the clean prediction is right; the
    cross-entropy's input gradient is all zero / not all finite (gradient
    attacks cannot work there).
  """
  key = ('clean', apply_fn, mesh)
  if key not in _COMPILED:

    def clean(params, x, y):
      logits_fn = bind(apply_fn, params)
      grad = jax.grad(lambda v: attacks.cross_entropy(logits_fn(v), y).sum())(x)
      flat = grad.reshape(grad.shape[0], -1)
      return {
          'correct': jnp.argmax(logits_fn(x), -1) == y, 'grad_zero': jnp.all(flat == 0, -1),
          'grad_nonfinite': ~jnp.all(jnp.isfinite(flat), -1)
      }

    _COMPILED[key] = _jit(clean, mesh, 'rbb')
  return _COMPILED[key]


# ----------------------------------------------------------------------------
# Attacks in stages, each on the examples not yet broken.
# ----------------------------------------------------------------------------


def runs_per_example(spec) -> bool:
  """Whether the attack runs on each example alone rather than batched.

  Alone is `staged.per_example`: a batch of one under `jax.vmap`. Both give every
  example its own random draws (key fold_in(column, id)); batched compiles
  faster. l-inf runs batched: its arithmetic comes out bit for bit as one
  example alone. l2 / l1 run alone: XLA:CPU rounds their projections' row sums
  differently in the two layouts, which would move results at float rounding.
  EOT (eot_iter > 1) runs alone: each example draws the randomised model with its
  own key. A key-free attack always runs batched.

  Args:
    spec: a `runner.AttackSpec`.

  Returns:
    True to run it example by example.
  """
  settings = registry.settings(spec.name, spec.norm, dict(spec.overrides))
  if not registry.ATTACKS[spec.name].uses_key(settings):
    return False  # key-free: batched
  return spec.norm != 'linf' or settings.get('eot_iter', 1) > 1


def attack_stages(spec, query_block: int | None = None) -> staged.Staged:
  """The attack of a column cut into stages (`registry.build_staged`), run example
  by example where `runs_per_example` says so.

  Args:
    spec: a `runner.AttackSpec`.
    query_block: Square's queries per stage; None for its default.

  Returns:
    The `staged.Staged` attack.
  """
  attack = registry.build_staged(spec.name, norm=spec.norm, eps=spec.eps,
                                 overrides=dict(spec.overrides), query_block=query_block)
  return staged.per_example(attack) if runs_per_example(spec) else attack


def _flags(logits_fn, spec, x, y, x_adv):
  """What an evaluation keeps of an attack's points: 'correct' (still classified
  right), 'inside' (in the eps-ball and the [0, 1] box, to a float margin), 'x_adv'."""
  norm = attacks.lp_norm(x_adv - x, spec.norm)
  inside = (norm <= spec.eps * (1 + 1e-4) + 1e-6) & jnp.all(
      (x_adv >= 0) & (x_adv <= 1), axis=tuple(range(1, x.ndim)))
  return {'correct': jnp.argmax(logits_fn(x_adv), -1) == y, 'inside': inside, 'x_adv': x_adv}


class StageFn(NamedTuple):
  """A column's stages, compiled (`stage_fn`)."""
  run: Callable  # the jitted stage
  attack: staged.Staged
  start: Callable  # (params, x, y, column, ids) -> carry before stage 0


def stage_fn(apply_fn, spec, mesh, query_block: int | None = None) -> StageFn:
  """One stage of a column's attack on a batch, jitted with the batch split over `mesh`.

  Args:
    apply_fn: the predictor.
    spec: the column, a `runner.AttackSpec`.
    mesh: the 'data' mesh.
    query_block: Square's queries per stage (`attack_stages`).

  Returns:
    StageFn: `run` is jit(params, x [B, ...], y [B], column key, ids [B], carry, j)
    -> (carry, out), stage j of the attack (`attack_stages`) with example b's key
    fold_in(column, ids[b]); stage 0 ignores the carry passed (any of its shape).
    out: 'correct' and 'inside' (ball and box) of x_adv, 'x_adv', and 'done' (no
    later stage changes this example). `start` gives the carry's shapes
    (`jax.eval_shape`).
  """
  key = ('stage', apply_fn, spec, mesh, query_block)
  if key not in _COMPILED:
    attack = attack_stages(spec, query_block)

    def run(params, x, y, column, ids, carry, j):
      logits_fn = bind(apply_fn, params)
      keys = rng.per_example_keys(column, ids)
      carry = jax.lax.cond(j == 0, lambda: attack.start(logits_fn, x, y, keys), lambda: carry)
      carry = attack.stage(logits_fn, x, y, keys, carry, j)
      out = _flags(logits_fn, spec, x, y, attack.output(carry))
      return carry, dict(out, done=attack.done(carry))

    def start(params, x, y, column, ids):  # the carry's shapes (jax.eval_shape)
      return attack.start(bind(apply_fn, params), x, y, rng.per_example_keys(column, ids))

    _COMPILED[key] = StageFn(_jit(run, mesh, 'rbbrbbr'), attack, start)
  return _COMPILED[key]


def attack_batch_fn(apply_fn, spec, mesh=None) -> Callable:
  """Every stage of a column's attack on every example of a batch: what an
  evaluation computes, without dropping the broken examples (benchmarks).

  Args:
    apply_fn: the predictor.
    spec: the column, a `runner.AttackSpec`.
    mesh: the 'data' mesh; None for every device (`parallel.make_mesh`).

  Returns:
    jit(params, x [B, ...], y [B], column key, ids [B]) -> {'correct', 'inside',
    'x_adv'}, as `stage_fn`'s out.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  key = ('attack', apply_fn, spec, mesh)
  if key not in _COMPILED:
    attack = attack_stages(spec)

    def run(params, x, y, column, ids):
      logits_fn = bind(apply_fn, params)
      x_adv = staged.run_all(attack, logits_fn, x, y, rng.per_example_keys(column, ids))
      return _flags(logits_fn, spec, x, y, x_adv)

    _COMPILED[key] = _jit(run, mesh, 'rbbrb')
  return _COMPILED[key]
