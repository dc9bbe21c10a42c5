"""AutoAttack-style evaluation from per-example flags: resumable, batched, jitted.

`make_plan` lists (norm, attack) columns; `run_evaluation` runs them in order on
the examples still robust, filling int8 flags per example and column (1 robust,
0 fooled, -1 not run: already broken, -2 pending), and can stop and resume at any
batch; `summary` turns the flags into numbers. Every table is computed from the
flags (`attacks.autoattack`). The jitted per-batch functions are `jitted`'s.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Callable

import jax
import numpy as np
import tqdm

from generalist_jax import data as data_lib
from generalist_jax import parallel
from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.evaluation import checks
from generalist_jax.evaluation import jitted


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """One column of an evaluation: attack `name` in threat model `norm` at `eps`."""
  norm: str
  name: str
  eps: float
  overrides: tuple = ()  # (key, value) pairs changing the standard budget

  @property
  def column(self) -> str:
    """The column's name in states and reports: '<norm>/<attack>', e.g. 'linf/apgd-ce'."""
    return f'{self.norm}/{self.name}'

  def settings(self) -> dict:
    """The attack's settings as it runs: its standard budget with the overrides
    applied (`registry.settings`), and eps."""
    return dict(registry.settings(self.name, self.norm, dict(self.overrides)), eps=self.eps)


def make_plan(norms, eps, attack_list: str, overrides: dict | None = None) -> list[AttackSpec]:
  """The columns of an evaluation, norm by norm, each norm's attacks in order.

  Whether the attacks suit the model (its classes) is `checks.check_inputs`'s.

  Args:
    norms: threat models ('linf', 'l2', 'l1').
    eps: one radius per norm, pixel units of [0, 1].
    attack_list: an AutoAttack version ('standard', 'plus', 'rand', 'fast': its
      attacks in the norm, with the version's budgets) or a comma list of
      `attacks.registry` names.
    overrides: budget changes (steps, n_targets, restarts, ...) for every attack
      that has them; None values are dropped.

  Returns:
    The `AttackSpec`s.

  Raises:
    ValueError: before any work, an unknown attack (or version) or one not
      available in a norm, a size override below 1 (steps, restarts, n_targets, ...).
  """
  user = {k: v for k, v in (overrides or {}).items() if v is not None}
  registry.check_positive({k: v for k, v in user.items() if k in registry.SIZE_SETTINGS})
  plan = []
  for norm, e in zip(norms, eps):
    if attack_list in aa.VERSIONS:
      attacks = aa.version_attacks(attack_list, norm)
    else:
      attacks = tuple((a.strip(), {}) for a in attack_list.split(',') if a.strip())
    for name, version_settings in attacks:
      registry.check_available(name, norm)  # fails before any work
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


def column_key(seed: int, spec: AttackSpec) -> jax.Array:
  """The key of a column under `seed`; example i of the evaluation gets
  fold_in(column_key, i), so an attack's randomness on an example is the same
  whether it runs alone or after others, in any batch.

  Args:
    seed: the evaluation's seed.
    spec: the column; its attack's name and norm make the key.

  Returns:
    A raw PRNG key.
  """
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
  """The batch sizes the jitted functions see. Each function compiles once per size,
  and a batch pads to the smallest that holds it.

  Four sizes per octave, multiples of 8 rows per device (8, 16, 24, 32, 40, 48, 56,
  64, 80, 96, 112, 128, 160, ...): a batch pads by at most a quarter. Powers of two
  padded 69 examples to 128 and 147 to 256, most of an attack's time; the set an
  attack shrinks through still stays in few sizes (each new size is one more compile).

  Args:
    batch_size: the evaluation's batch size.
    n_devices: the devices a batch is split over.

  Returns:
    n_devices x (8, 16, 24, ...) below batch_size rounded up to a multiple of
    n_devices (at least 8 per device), then that size.
  """
  top = max(-(-batch_size // n_devices), MIN_ROWS_PER_DEVICE)
  ladder = [MIN_ROWS_PER_DEVICE]
  while ladder[-1] < top:
    octave = 1 << (ladder[-1].bit_length() - 1)  # the power of two at or below
    ladder.append(ladder[-1] + max(MIN_ROWS_PER_DEVICE, octave // 4))
  return tuple(n_devices * s for s in ladder if s < top) + (n_devices * top,)


def _padded(indices: np.ndarray, sizes) -> np.ndarray:
  """indices padded (repeating the last) to the smallest of `sizes` that holds them."""
  size = next(s for s in sizes if s >= len(indices))
  return np.concatenate([indices, np.repeat(indices[-1:], size - len(indices))])


def _chunks(indices, batch_size):
  """`indices` cut into consecutive batches of batch_size (the last may be shorter)."""
  return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def _put(tree, sharding):
  """Host values, the same on every process -> global arrays laid out by `sharding`
  (each process fills its own devices' rows)."""

  def put(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(put, tree)


def _attack_chunk(fn: jitted.StageFn, params, x_of, y, ids, key, sizes, mesh) -> dict:
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
    if carry is None:  # stage 0 ignores its input carry: zeros of its shapes
      carry_in = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                              jax.eval_shape(fn.start, params, x, y_rows, key, id_rows))
    else:
      carry_in = jax.tree.map(lambda a: a[rows], carry)
    new_carry, out = parallel.gather(
        fn.run(params, _put(x, batch), _put(y_rows, batch), key, _put(id_rows, batch),
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
  """The flag state of an evaluation before anything ran.

  Args:
    n: the number of examples.
    plan: the evaluation's columns.

  Returns:
    {'clean' and each column of `plan`: int8 [n], all PENDING; 'grad_zero',
    'grad_nonfinite', 'outside_ball': bool [n], all False}.
  """
  state = {
      'clean': np.full(n, aa.PENDING, np.int8), 'grad_zero': np.zeros(n, bool),
      'grad_nonfinite': np.zeros(n, bool), 'outside_ball': np.zeros(n, bool)
  }
  for spec in plan:
    state[spec.column] = np.full(n, aa.PENDING, np.int8)
  return state


@dataclasses.dataclass
class _Run:
  """What every pass of `run_evaluation` reads and fills: the model, the data, the
  batch layout, the flag state and the progress (bar, save, early stop)."""
  apply_fn: Callable
  params: object  # replicated over the mesh
  images: object  # [N, H, W, C] uint8 or float in [0, 1]
  labels: np.ndarray  # int32 [N]
  example_ids: np.ndarray  # int32 [N]
  state: dict
  batch_size: int
  sizes: tuple  # `bucket_sizes`
  mesh: object
  bar: tqdm.tqdm
  save: Callable | None
  stop_after_batches: int | None
  batches_done: int = 0

  def as_float(self, idx) -> np.ndarray:
    """The images of rows `idx` as float32 in [0, 1]."""
    return data_lib.to_float(self.images[idx]) if self.images.dtype == np.uint8 else (np.asarray(
        self.images[idx], np.float32))

  def step_done(self, count: int) -> bool:
    """Counts a finished batch of `count` examples and saves the state; True to stop."""
    self.bar.update(count)
    if self.save is not None:
      self.save(self.state)
    self.batches_done += 1
    return self.stop_after_batches is not None and self.batches_done >= self.stop_after_batches


def _clean_pass(run: _Run) -> bool:
  """Fills the clean flags (prediction right, input gradient zero or not finite) batch
  by batch, skipping the batches a resumed state has; True when stopped early."""
  clean = jitted.clean_batch_fn(run.apply_fn, run.mesh)
  batch = parallel.batch_sharded(run.mesh)
  state = run.state
  for chunk in _chunks(np.arange(len(run.labels)), run.batch_size):
    if np.all(state['clean'][chunk] != aa.PENDING):
      run.bar.update(len(chunk))
      continue
    idx = _padded(chunk, run.sizes)
    out = parallel.gather(
        clean(run.params, _put(run.as_float(idx), batch), _put(run.labels[idx], batch)))
    m = len(chunk)
    state['clean'][chunk] = out['correct'][:m]
    state['grad_zero'][chunk] = out['grad_zero'][:m]
    state['grad_nonfinite'][chunk] = out['grad_nonfinite'][:m]
    if run.step_done(m):
      return True
  return False


def _attack_pass(run: _Run, spec: AttackSpec, earlier: list, *, seed: int, query_block: int | None,
                 x_adv: np.ndarray | None) -> bool:
  """Fills column `spec`: SKIPPED where the clean input or an `earlier` column of its
  norm broke the example, else the attack's flag, batch by batch (a fooled example's
  point goes into `x_adv`); True when stopped early."""
  state = run.state
  col = state[spec.column]
  todo_mask = aa.still_robust(state['clean'] == 1, earlier)
  col[~todo_mask & (col == aa.PENDING)] = aa.SKIPPED
  run.bar.update(int((~todo_mask).sum()))
  todo = np.flatnonzero(todo_mask)
  fn = jitted.stage_fn(run.apply_fn, spec, run.mesh, query_block)
  key = _put(column_key(seed, spec), parallel.replicated(run.mesh))
  for chunk in _chunks(todo, run.batch_size):
    if np.all(col[chunk] != aa.PENDING):
      run.bar.update(len(chunk))
      continue
    run.bar.set_description(spec.column)
    out = _attack_chunk(fn, run.params, lambda rows, chunk=chunk: run.as_float(chunk[rows]),
                        run.labels[chunk], run.example_ids[chunk], key, run.sizes, run.mesh)
    col[chunk] = out['correct']
    state['outside_ball'][chunk] |= ~out['inside']
    if x_adv is not None:
      fooled = ~out['correct']
      x_adv[chunk[fooled]] = out['x_adv'][fooled]
    if run.step_done(len(chunk)):
      return True
  return False


def run_evaluation(apply_fn, params, images, labels, plan: list[AttackSpec], *, batch_size: int,
                   seed: int, example_ids=None, state: dict | None = None, save=None,
                   progress: bool = True, stop_after_batches: int | None = None,
                   x_adv: np.ndarray | None = None, model_name: str = 'apply_fn', mesh=None,
                   query_block: int | None = None) -> dict:
  """Fills `state`, the per-example int8 flags per column, and returns it.

  Each column's attack runs on the examples still robust to the clean input and to
  every earlier column of its norm. Within a batch of `batch_size` examples it runs
  stage by stage (its targets, restarts, blocks of `query_block` Square queries:
  `attacks.staged`), each stage on the examples still unbroken, padded to a size of
  `bucket_sizes` and split over the devices of `mesh`. The flags do not depend on
  batch_size, the mesh or query_block.

  Args:
    apply_fn: the predictor, `apply_fn(params, x) -> logits` (`jitted.model_apply_fn`).
    params: its weights, placed anywhere (host copies are replicated over `mesh`).
    images, labels: [N, H, W, C] uint8 or float in [0, 1]; [N] int class ids.
    plan: the columns, in order (`make_plan`).
    batch_size: examples per batch.
    seed, example_ids: each example's attack keys (`column_key`); example_ids [N]
      default to 0..N-1 (e.g. indices into the test split).
    state: the flags to resume from (default `new_state`'s).
    save: `save(state)`, called after every batch.
    progress: show a progress bar.
    stop_after_batches: stop after that many batches, as an interruption would (tests).
    x_adv: float32 [N, H, W, C] (e.g. the clean images): each example's adversarial
      point is written there by the attack that fooled it.
    model_name: names the model in errors.
    mesh: the 'data' mesh (default: every device of every process; every process
      passes the same arguments).
    query_block: Square's queries per stage.

  Returns:
    `state`, filled as far as the evaluation got.

  Raises:
    ValueError, before any attack: batch_size < 1; inputs, a model output or
    attacks off `checks.check_inputs`' contract.
  """
  registry.check_positive({'batch_size': batch_size})
  checks.check_inputs(apply_fn, params, images, labels, plan, model_name=model_name)
  n = len(labels)
  example_ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
  state = state if state is not None else new_state(n, plan)
  mesh = parallel.make_mesh() if mesh is None else mesh
  bar = tqdm.tqdm(total=n * (1 + len(plan)), unit='ex', dynamic_ncols=True, mininterval=1.0,
                  disable=not (progress and parallel.is_main_process()))
  params = parallel.replicate(parallel.to_host(params), mesh)  # from any placement
  run = _Run(apply_fn, params, images,
             np.asarray(labels).astype(np.int32), example_ids.astype(np.int32), state, batch_size,
             bucket_sizes(batch_size, mesh.size), mesh, bar, save, stop_after_batches)
  if not _clean_pass(run):
    for column_index, spec in enumerate(plan):
      earlier = [state[s.column] for s in plan[:column_index] if s.norm == spec.norm]
      if _attack_pass(run, spec, earlier, seed=seed, query_block=query_block, x_adv=x_adv):
        break
  run.bar.close()
  return state
