"""AutoAttack-style evaluation from per-example flags: resumable, batched, jitted.

`make_plan` lists (norm, attack) pairs; `run_evaluation` runs them in order on
the examples still robust, filling int8 flags per example and attack (1
robust, 0 fooled, -1 not run: already broken, -2 pending), and can stop and
resume at any batch; `summary` turns the flags into numbers. Every table is
computed from the flags (`attacks.autoattack`).
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from generalist_jax import attacks
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax import parallel
from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.attacks import rng
from generalist_jax.attacks import staged
from generalist_jax.evaluation import checks


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """One column of an evaluation: attack `name` in threat model `norm` at `eps`."""
  norm: str
  name: str
  eps: float
  overrides: tuple = ()      # (key, value) pairs changing the standard budget

  @property
  def column(self) -> str:
    return f'{self.norm}/{self.name}'

  def settings(self) -> dict:
    return dict(registry.settings(self.name, self.norm, dict(self.overrides)), eps=self.eps)


def make_plan(norms, eps, attack_list: str, overrides: dict | None = None) -> list[AttackSpec]:
  """The columns of an evaluation: for every norm (with its eps), the attacks of
  version `attack_list` ('standard', 'plus', 'rand', 'fast') with the version's
  budgets, or of a comma list; `overrides` (steps, n_targets, restarts) change
  every attack that has them. Raises ValueError for an attack not in a norm and
  for a size override below 1 (steps, restarts, n_targets, ...), before any work.
  Whether the attacks suit the model (its classes) is `checks.check_inputs`'s."""
  user = {k: v for k, v in (overrides or {}).items() if v is not None}
  registry.check_positive({k: v for k, v in user.items() if k in registry.SIZE_SETTINGS})
  plan = []
  for norm, e in zip(norms, eps):
    if attack_list in aa.VERSIONS:
      attacks = aa.version_attacks(attack_list, norm)
    else:
      attacks = tuple((a.strip(), {}) for a in attack_list.split(',') if a.strip())
    for name, version_settings in attacks:
      registry.check_available(name, norm)   # fails before any work
      merged = dict(version_settings, **user)
      plan.append(AttackSpec(norm, name, float(e), tuple(sorted(merged.items()))))
  return plan


def sample_test_points(images, labels, n_ex: int):
  """A fixed random subset of n_ex test examples, in their order in the split.

  Not the first n_ex: test files are often sorted by class. The draw comes from a
  generator of its own (no run seed), so every evaluation with the same n_ex and
  split size attacks the same examples.

  Args:
    images: [N, H, W, C] (any array indexable by an index array).
    labels: [N] int class ids.
    n_ex: how many to keep; all N when n_ex >= N.

  Returns:
    (images [n, ...], labels [n] numpy, indices [n] into the split, ascending).

  Raises:
    ValueError: n_ex < 1.
  """
  registry.check_positive({'n_ex': n_ex})
  keep = np.arange(len(labels))
  if n_ex < len(labels):
    keep = np.sort(np.random.default_rng([0, 0xE7A1]).permutation(len(labels))[:n_ex])
  return images[keep], np.asarray(labels[keep]), keep


# ----------------------------------------------------------------------------
# Jitted per-batch functions (cached: one compile per predictor, attack and batch size).
# A predictor is `apply_fn(params, x [B, H, W, C] in [0, 1]) -> logits [B, K]`.
# ----------------------------------------------------------------------------

_COMPILED = {}


def model_apply_fn(model):
  """The predictor of a flax model of `models` (BatchNorm in eval mode); one
  function object per model, so its compiled evaluations are reused."""
  key = ('apply', repr(model))
  if key not in _COMPILED:
    _COMPILED[key] = lambda variables, x: models.apply_model(model, variables, x,
                                                             train=False)[0]
  return _COMPILED[key]


def bind(apply_fn, params):
  """`logits_fn(x, key=None)` of a predictor; the key reaches randomised predictors
  (`apply_fn(params, x, key)`) only when an attack draws the model (EOT)."""
  return lambda inputs, key=None: (apply_fn(params, inputs) if key is None
                                   else apply_fn(params, inputs, key))


def column_key(seed: int, spec: AttackSpec) -> jax.Array:
  """The key of attack `spec` (its name and norm) under `seed`; example i of the
  evaluation gets fold_in(column_key, i). So an attack's randomness on an example
  is the same whether it runs alone or after others, in any batch."""
  key = jax.random.PRNGKey(seed)
  for part in (spec.name, spec.norm):
    key = jax.random.fold_in(key, zlib.crc32(part.encode()) & 0x7FFFFFFF)
  return key


# ----------------------------------------------------------------------------
# Batches: a fixed ladder of sizes, split over the devices of a 'data' mesh.
# ----------------------------------------------------------------------------

# Rows per device at least: XLA:CPU's reduction kernels round some row sums
# differently in batches of fewer rows (so an example's bits would depend on its
# batch), and fewer rows save nothing on an accelerator.
MIN_ROWS_PER_DEVICE = 8


def bucket_sizes(batch_size: int, n_devices: int = 1) -> tuple[int, ...]:
  """The batch sizes the jitted functions see: n_devices x (8, 16, 32, ...) below
  batch_size (rounded up to a multiple of n_devices), then that size. Each function
  compiles once per size, and a batch pads to the smallest that holds it."""
  top = max(-(-batch_size // n_devices), MIN_ROWS_PER_DEVICE) * n_devices
  sizes, size = [], MIN_ROWS_PER_DEVICE * n_devices
  while size < top:
    sizes.append(size)
    size *= 2
  return tuple(sizes) + (top,)


def _padded(indices: np.ndarray, sizes) -> np.ndarray:
  """indices padded (repeating the last) to the smallest of `sizes` that holds them."""
  size = next(s for s in sizes if s >= len(indices))
  return np.concatenate([indices, np.repeat(indices[-1:], size - len(indices))])


def _chunks(indices, batch_size):
  return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def _put(tree, sharding):
  """Host values, the same on every process -> global arrays laid out by `sharding`
  (each process fills its own devices' rows)."""
  def put(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
  return jax.tree.map(put, tree)


def _jit(fn, mesh, in_specs):
  """jit with the batch split over the mesh ('b' arguments) and the rest replicated;
  every output is per example, split likewise."""
  shardings = {'b': parallel.batch_sharded(mesh), 'r': parallel.replicated(mesh)}
  return jax.jit(fn, in_shardings=tuple(shardings[c] for c in in_specs),
                 out_shardings=shardings['b'], compiler_options=models.compiler_options())


def clean_batch_fn(apply_fn, mesh):
  key = ('clean', apply_fn, mesh)
  if key not in _COMPILED:
    def clean(params, x, y):
      logits_fn = bind(apply_fn, params)
      grad = jax.grad(lambda v: attacks.cross_entropy(logits_fn(v), y).sum())(x)
      flat = grad.reshape(grad.shape[0], -1)
      return {'correct': jnp.argmax(logits_fn(x), -1) == y,
              'grad_zero': jnp.all(flat == 0, -1),
              'grad_nonfinite': ~jnp.all(jnp.isfinite(flat), -1)}
    _COMPILED[key] = _jit(clean, mesh, 'rbb')
  return _COMPILED[key]


# ----------------------------------------------------------------------------
# Attacks in stages, each on the examples not yet broken.
# ----------------------------------------------------------------------------

def runs_per_example(spec: AttackSpec) -> bool:
  """Whether the attack runs on each example alone (`staged.per_example`: a batch of
  one under `jax.vmap`) rather than batched. Both give every example its own random
  draws (key fold_in(column, id)); batched compiles about 2x faster. l-inf runs
  batched: its arithmetic comes out bit for bit as one example alone. l2 / l1 run
  alone: XLA:CPU rounds their projections' row sums differently in the two layouts,
  which would move results at float rounding. EOT (eot_iter > 1) runs alone: each
  example draws the randomised model with its own key."""
  settings = registry.settings(spec.name, spec.norm, dict(spec.overrides))
  if not registry.ATTACKS[spec.name].uses_key(settings):
    return False            # key-free: batched, as it always ran
  return spec.norm != 'linf' or settings.get('eot_iter', 1) > 1


def attack_stages(spec: AttackSpec, query_block: int | None = None) -> staged.Staged:
  attack = registry.build_staged(spec.name, norm=spec.norm, eps=spec.eps,
                                 overrides=dict(spec.overrides), query_block=query_block)
  return staged.per_example(attack) if runs_per_example(spec) else attack


def _flags(logits_fn, spec, x, y, x_adv):
  norm = attacks.lp_norm(x_adv - x, spec.norm)
  inside = (norm <= spec.eps * (1 + 1e-4) + 1e-6) & jnp.all(
      (x_adv >= 0) & (x_adv <= 1), axis=tuple(range(1, x.ndim)))
  return {'correct': jnp.argmax(logits_fn(x_adv), -1) == y, 'inside': inside, 'x_adv': x_adv}


class StageFn(NamedTuple):
  run: Callable           # the jitted stage
  attack: staged.Staged
  start: Callable         # (params, x, y, column, ids) -> carry before stage 0


def stage_fn(apply_fn, spec: AttackSpec, mesh, query_block: int | None = None) -> StageFn:
  """jit(params, x [B,...], y [B], column key, ids [B], carry, j) -> (carry, out): stage
  j of the attack (`attack_stages`) on a batch, example b with key
  fold_in(column, ids[b]); stage 0 ignores the carry passed (any of its shape).
  out: 'correct' and 'inside' (ball and box) of x_adv, 'x_adv', and 'done' (no
  later stage changes this example). The batch is split over `mesh`."""
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

    def start(params, x, y, column, ids):    # the carry's shapes (jax.eval_shape)
      return attack.start(bind(apply_fn, params), x, y, rng.per_example_keys(column, ids))
    _COMPILED[key] = StageFn(_jit(run, mesh, 'rbbrbbr'), attack, start)
  return _COMPILED[key]


def attack_batch_fn(apply_fn, spec: AttackSpec, mesh=None):
  """jit(params, x [B,...], y [B], column key, ids [B]) -> {'correct', 'inside', 'x_adv'}:
  every stage of the attack on every example (what an evaluation computes, without
  dropping broken examples: benchmarks)."""
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


def _attack_chunk(fn: StageFn, params, x_of, y, ids, key, sizes, mesh) -> dict:
  """Runs the stages of an attack on one chunk of examples (x_of(rows) -> their
  images; y, ids [m]), each stage on the examples not yet done, padded to a bucket
  size; returns numpy 'correct', 'inside', 'x_adv' [m, ...]."""
  batch = parallel.batch_sharded(mesh)
  m = len(y)
  carry, result = None, None
  active = np.arange(m)
  for j in range(fn.attack.n_stages):
    if not len(active):
      break
    rows = _padded(active, sizes)
    x, y_rows, id_rows = x_of(rows), y[rows], ids[rows]
    if carry is None:        # stage 0 ignores its input carry: zeros of its shapes
      carry_in = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                              jax.eval_shape(fn.start, params, x, y_rows, key, id_rows))
    else:
      carry_in = jax.tree.map(lambda a: a[rows], carry)
    new_carry, out = parallel.gather(fn.run(
        params, _put(x, batch), _put(y_rows, batch), key, _put(id_rows, batch),
        _put(carry_in, batch), _put(np.int32(j), parallel.replicated(mesh))))
    k = len(active)
    if carry is None:
      carry = jax.tree.map(lambda a: np.zeros((m,) + a.shape[1:], a.dtype), new_carry)
      result = {name: np.zeros((m,) + a.shape[1:], a.dtype) for name, a in out.items()}
    for mine, new in ((carry, new_carry), (result, out)):
      for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(new)):
        a[active] = b[:k]
    active = active[~out['done'][:k]]
  return result


# ----------------------------------------------------------------------------
# The resumable loop over (attack, batch of still-robust examples).
# ----------------------------------------------------------------------------

def new_state(n: int, plan: list[AttackSpec]) -> dict:
  state = {'clean': np.full(n, aa.PENDING, np.int8),
           'grad_zero': np.zeros(n, bool), 'grad_nonfinite': np.zeros(n, bool),
           'outside_ball': np.zeros(n, bool)}
  for spec in plan:
    state[spec.column] = np.full(n, aa.PENDING, np.int8)
  return state


def run_evaluation(apply_fn, params, images, labels, plan: list[AttackSpec], *,
                   batch_size: int, seed: int, example_ids=None, state: dict | None = None,
                   save=None, progress: bool = True, stop_after_batches: int | None = None,
                   x_adv: np.ndarray | None = None, model_name: str = 'apply_fn',
                   mesh=None, query_block: int | None = None) -> dict:
  """Fills `state` (per-example int8 flags per column) and returns it.

  apply_fn(params, x) -> logits is the predictor (`model_apply_fn` for our models);
  images uint8 or float in [0, 1], [N, H, W, C]; labels [N] int. Before any attack,
  `checks.check_inputs` refuses inputs off that contract, a model (named
  `model_name` in errors) that does not return logits [B, K], and attacks of the
  plan that cannot work with K classes; batch_size < 1 is refused too. `example_ids` [N]
  (default 0..N-1; e.g. indices into the test split) fix each example's attack
  keys with `seed` (`column_key`). `save(state)` is called after every batch;
  `stop_after_batches` stops early (as an interruption would; tests use it).
  `x_adv` (float32 [N, H, W, C], e.g. the clean images): each example's
  adversarial point is written there by the attack that fooled it.

  Within a batch of `batch_size` examples an attack runs stage by stage (its
  targets, restarts, blocks of `query_block` Square queries: `attacks.staged`),
  each stage on the examples still unbroken, padded to a size of `bucket_sizes`
  and split over the devices of `mesh` (default: every device of every process;
  every process passes the same arguments). The flags do not depend on
  batch_size, the mesh or query_block.
  """
  registry.check_positive({'batch_size': batch_size})
  checks.check_inputs(apply_fn, params, images, labels, plan, model_name=model_name)
  n = len(labels)
  example_ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
  example_ids = example_ids.astype(np.int32)
  labels = np.asarray(labels).astype(np.int32)
  state = state if state is not None else new_state(n, plan)
  mesh = parallel.make_mesh() if mesh is None else mesh
  sizes = bucket_sizes(batch_size, mesh.size)
  batch = parallel.batch_sharded(mesh)
  params = parallel.replicate(parallel.to_host(params), mesh)   # host copies: any placement
  as_float = lambda idx: data_lib.to_float(images[idx]) if images.dtype == np.uint8 else (
      np.asarray(images[idx], np.float32))
  bar = tqdm.tqdm(total=n * (1 + len(plan)), unit='ex', disable=not progress,
                  dynamic_ncols=True, mininterval=1.0)
  batches_done = 0

  def step_done(count):
    nonlocal batches_done
    bar.update(count)
    if save is not None:
      save(state)
    batches_done += 1
    return stop_after_batches is not None and batches_done >= stop_after_batches

  clean = clean_batch_fn(apply_fn, mesh)
  for chunk in _chunks(np.arange(n), batch_size):
    if np.all(state['clean'][chunk] != aa.PENDING):
      bar.update(len(chunk))
      continue
    idx = _padded(chunk, sizes)
    out = parallel.gather(clean(params, _put(as_float(idx), batch), _put(labels[idx], batch)))
    m = len(chunk)
    state['clean'][chunk] = out['correct'][:m]
    state['grad_zero'][chunk] = out['grad_zero'][:m]
    state['grad_nonfinite'][chunk] = out['grad_nonfinite'][:m]
    if step_done(m):
      bar.close()
      return state

  for column_index, spec in enumerate(plan):
    col = state[spec.column]
    earlier = [state[s.column] for s in plan[:column_index] if s.norm == spec.norm]
    todo_mask = aa.still_robust(state['clean'] == 1, earlier)
    col[~todo_mask & (col == aa.PENDING)] = aa.SKIPPED
    bar.update(int((~todo_mask).sum()))
    todo = np.flatnonzero(todo_mask)
    fn = stage_fn(apply_fn, spec, mesh, query_block)
    key = _put(column_key(seed, spec), parallel.replicated(mesh))
    for chunk in _chunks(todo, batch_size):
      if np.all(col[chunk] != aa.PENDING):
        bar.update(len(chunk))
        continue
      bar.set_description(spec.column)
      out = _attack_chunk(fn, params, lambda rows, chunk=chunk: as_float(chunk[rows]),
                          labels[chunk], example_ids[chunk], key, sizes, mesh)
      col[chunk] = out['correct']
      state['outside_ball'][chunk] |= ~out['inside']
      if x_adv is not None:
        fooled = ~out['correct']
        x_adv[chunk[fooled]] = out['x_adv'][fooled]
      if step_done(len(chunk)):
        bar.close()
        return state
  bar.close()
  return state
