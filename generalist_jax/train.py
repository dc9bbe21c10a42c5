"""Training: every expert's update and the meta-update in ONE jitted step, and
the loop around it (data, validation, checkpoints, logs).

    state --train_step(batch)--> state
      for each expert i:  x_i = task_i.inputs(expert_i in BN-eval mode, x, y)
                          loss_i, grads_i -> optax update
      meta:  ema_i <- ema(ema_i, expert_i);  global <- ema(global, sum_i w_i(t) ema_i)
             expert_i <- global  if sync(t)
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import pathlib
import signal
import threading
import time
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint.utils as ocp_utils
import tqdm

from generalist_jax import attacks
from generalist_jax import checkpointing
from generalist_jax import config_lib
from generalist_jax import data as data_lib
from generalist_jax import meta
from generalist_jax import metric_writer
from generalist_jax import models
from generalist_jax import multi_norm
from generalist_jax import parallel
from generalist_jax import plots
from generalist_jax import schedules
from generalist_jax import stacked
from generalist_jax import tasks as tasks_lib

GLOBAL = 'global'


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # updates done so far; also the data position
  experts: tuple             # variables {'params', 'batch_stats'} per expert
  opt_states: tuple          # optax state per expert
  emas: tuple                # EMA variables per expert
  global_learner: Any        # variables of the global learner
  key: jax.Array             # raw uint32 PRNG key for attacks


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything static a run derives from its config (not checkpointed)."""
  model: Any
  expert_names: tuple
  tasks: tuple
  optimizers: tuple
  lr_schedules: tuple
  mix_schedule: Callable
  sync_schedule: Callable
  ema_max_decay: float
  steps_per_epoch: int
  total_steps: int
  stack: Any = None           # stacked.StackSpec: experts as one vmapped update
  mesh: Any = None            # jax.sharding.Mesh with a 'data' axis
  compute_dtype: Any = None   # None (float32) or jnp.bfloat16


class NonFiniteError(FloatingPointError):
  """A loss or gradient stopped being finite; the run stops before saving."""


def learner_names(setup: Setup) -> list[str]:
  return list(setup.expert_names) + [GLOBAL]


def learners(state: TrainState, setup: Setup) -> dict:
  """name -> variables, for every expert and the global learner."""
  out = dict(zip(setup.expert_names, state.experts))
  out[GLOBAL] = state.global_learner
  return out


def make_optimizer(opt_config, lr_schedule) -> optax.GradientTransformation:
  # Weight decay added to the gradient before momentum, as torch.optim.SGD.
  return optax.chain(
      optax.add_decayed_weights(opt_config.weight_decay),
      optax.sgd(lr_schedule, momentum=opt_config.momentum or None,
                nesterov=opt_config.nesterov))


def make_setup(config, info: data_lib.DatasetInfo, steps_per_epoch: int) -> Setup:
  names = tuple(config.experts.keys())   # ConfigDict keys come sorted
  expert_cfgs = [config.experts[n] for n in names]
  lr_fns = tuple(schedules.make_lr_schedule(e.optimizer, config.num_epochs, steps_per_epoch)
                 for e in expert_cfgs)
  optimizers = tuple(make_optimizer(e.optimizer, fn) for e, fn in zip(expert_cfgs, lr_fns))
  model = models.create_model(config.model, info.num_classes, info.mean, info.std)
  spec = None
  if config.meta.get('stack_experts', False) and len(names) > 1:
    params = jax.eval_shape(lambda: models.init_variables(
        model, jax.random.PRNGKey(0), info.image_shape))['params']
    spec, why_not = stacked.stack_spec(expert_cfgs, optimizers, params)
    if spec is None:
      logging.info('meta.stack_experts: %s; the experts update in a loop.', why_not)
  return Setup(
      model=model,
      expert_names=names,
      tasks=tuple(tasks_lib.make_task(e) for e in expert_cfgs),
      optimizers=optimizers,
      lr_schedules=lr_fns,
      mix_schedule=schedules.make_mix_schedule(
          config.meta.mix_epochs, [e.mix_values for e in expert_cfgs], steps_per_epoch),
      sync_schedule=schedules.make_sync_schedule(config.meta.sync, steps_per_epoch),
      ema_max_decay=float(config.meta.ema_max_decay),
      steps_per_epoch=steps_per_epoch,
      total_steps=steps_per_epoch * config.num_epochs,
      stack=spec,
      mesh=parallel.make_mesh(config.mesh.data),
      compute_dtype=jnp.bfloat16 if config.compute_dtype == 'bfloat16' else None,
  )


def create_train_state(setup: Setup, image_shape: tuple, seed: int) -> TrainState:
  """All experts, EMAs and the global learner start from the same weights.

  Host-local arrays (every process computes the same ones from the seed); the
  trainer replicates them over the mesh with `parallel.replicate`.
  """
  init_key, attack_key = jax.random.split(jax.random.PRNGKey(seed))
  variables = models.init_variables(setup.model, init_key, image_shape)
  copy = lambda: jax.tree.map(jnp.array, variables)   # distinct buffers (donation)
  experts = tuple(copy() for _ in setup.expert_names)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      experts=experts,
      opt_states=tuple(tx.init(e['params']) for tx, e in zip(setup.optimizers, experts)),
      emas=tuple(copy() for _ in setup.expert_names),
      global_learner=copy(),
      key=attack_key)


def _expert_update(setup: Setup, i: int, variables, opt_state, x, y, key):
  task = setup.tasks[i]
  return _update(setup, task.inputs, task.loss, setup.optimizers[i].update,
                 variables, opt_state, x, y, key)


def _update(setup: Setup, inputs_fn, loss, tx_update, variables, opt_state, x, y, key):
  """One expert's step: task inputs (BN eval mode), loss and grads (train mode),
  optimizer update. Shared by the loop and the stacked (vmapped) path."""
  model = setup.model

  def logits_eval(inputs):   # BN in eval mode: the attack never moves statistics
    return models.apply_model(model, variables, inputs, train=False,
                              compute_dtype=setup.compute_dtype)[0]

  x_task = jax.lax.stop_gradient(inputs_fn(logits_eval, x, y, key))

  def forward(params, batch_stats, inputs):
    return models.apply_model(model, {'params': params, 'batch_stats': batch_stats}, inputs,
                              train=True, compute_dtype=setup.compute_dtype)

  def loss_fn(params):
    batch_stats = variables['batch_stats']
    if not isinstance(x_task, tuple):
      logits, batch_stats = forward(params, batch_stats, x_task)
      return loss(logits, y), (logits, batch_stats)
    logits = []
    for inputs in x_task:   # in order, statistics threaded (see tasks.py)
      out, batch_stats = forward(params, batch_stats, inputs)
      logits.append(out)
    return loss(tuple(logits), y), (logits[-1], batch_stats)

  (value, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      variables['params'])
  updates, opt_state = tx_update(grads, opt_state, variables['params'])
  params = optax.apply_updates(variables['params'], updates)
  metrics = {'loss': value,
             # of the last batch for multi-batch tasks (TRADES / MART: adversarial)
             'train_acc': jnp.mean(jnp.argmax(logits, -1) == y),
             'grad_norm': optax.global_norm(grads),
             'param_norm': optax.global_norm(params)}   # non-finite params stop the run
  return {'params': params, 'batch_stats': batch_stats}, opt_state, metrics


def train_step(setup: Setup, state: TrainState, batch: dict):
  """One update of every expert, then the meta-update. Pure; jit it."""
  x, y = batch['image'], batch['label']
  key, step_key = jax.random.split(state.key)
  if setup.stack is not None:
    experts, opt_states, per_expert = _stacked_updates(setup, state, x, y, step_key)
  else:
    experts, opt_states, per_expert = [], [], []
    for i in range(len(setup.expert_names)):
      variables, opt_state, m = _expert_update(
          setup, i, state.experts[i], state.opt_states[i], x, y, jax.random.fold_in(step_key, i))
      experts.append(variables)
      opt_states.append(opt_state)
      per_expert.append(m)
  metrics = {}
  for i, name in enumerate(setup.expert_names):
    metrics.update({f'train/{name}/{k}': v for k, v in per_expert[i].items()})
    metrics[f'schedule/{name}/lr'] = setup.lr_schedules[i](state.step)

  weights = setup.mix_schedule(state.step)
  sync = setup.sync_schedule(state.step)
  experts, emas, global_learner = meta.meta_update(
      experts, state.emas, state.global_learner,
      decay=schedules.ema_decay(state.step, setup.ema_max_decay), weights=weights, sync=sync)
  for i, name in enumerate(setup.expert_names):
    metrics[f'schedule/{name}/mix_weight'] = weights[i]
  metrics['schedule/sync'] = sync.astype(jnp.float32)
  new_state = state.replace(step=state.step + 1, experts=tuple(experts),
                            opt_states=tuple(opt_states), emas=tuple(emas),
                            global_learner=global_learner, key=key)
  return new_state, metrics


def jit_train_step(setup: Setup) -> Callable:
  """`train_step` as the loop runs it (the benchmark times this too): jitted,
  state donated, replicated over the mesh, the batch sharded on 'data'."""
  replicated = parallel.replicated(setup.mesh)
  return jax.jit(lambda s, b: train_step(setup, s, b), donate_argnums=0,
                 in_shardings=(replicated, parallel.batch_sharded(setup.mesh)),
                 out_shardings=(replicated, replicated))


def _stacked_updates(setup: Setup, state: TrainState, x, y, step_key):
  """Every expert's `_update` as one vmap over a leading expert axis (see
  stacked.py); same keys and results as the loop. Returns per-expert lists."""
  spec, n = setup.stack, len(setup.expert_names)
  keys = jnp.stack([jax.random.fold_in(step_key, i) for i in range(n)])
  updates = [tx.update for tx in setup.optimizers]

  def one(i, variables, opt_state, key, norm_index, eps, step_size):
    inputs_fn = functools.partial(
        multi_norm.pgd_norm_indexed, norm_index=norm_index, norms=spec.norms, eps=eps,
        step_size=step_size, steps=spec.steps, random_start=spec.random_start,
        unroll=spec.unroll)
    tx_update = lambda *args: jax.lax.switch(i, updates, *args)
    return _update(setup, inputs_fn, tasks_lib.mean_cross_entropy, tx_update, variables,
                   opt_state, x, y, key)

  experts, opt_states, metrics = jax.vmap(one)(
      jnp.arange(n), stacked.stack(state.experts), stacked.stack(state.opt_states), keys,
      spec.norm_index, spec.eps, spec.step_size)
  return (stacked.unstack(experts, n), stacked.unstack(opt_states, n),
          stacked.unstack(metrics, n))


# ----------------------------------------------------------------------------
# Evaluation: per-example flags, aggregated on the host.
# ----------------------------------------------------------------------------

def make_eval_fn(model, attack_config, mesh=None, compute_dtype=None) -> Callable:
  """(variables, x, y, key) -> per-example clean/attacked correctness and loss (numpy).

  x, y: one host batch, the same on every process; each process feeds its rows
  to the jitted evaluation (batch sharded on 'data') and gets all flags back.
  """
  attack = attacks.make_attack(attack_config)
  mesh = mesh if mesh is not None else parallel.make_mesh()

  @functools.partial(jax.jit, in_shardings=(
      parallel.replicated(mesh), parallel.batch_sharded(mesh),
      parallel.batch_sharded(mesh), parallel.replicated(mesh)),
                     out_shardings=parallel.batch_sharded(mesh))   # flags stay per row
  def evaluate_batch(variables, x, y, key):
    def logits_fn(inputs):
      return models.apply_model(model, variables, inputs, train=False,
                                compute_dtype=compute_dtype)[0]
    logits = logits_fn(x)
    adv_logits = logits_fn(attack(logits_fn, x, y, key))
    return {'clean': jnp.argmax(logits, -1) == y,
            'pgd': jnp.argmax(adv_logits, -1) == y,
            'loss': attacks.cross_entropy(logits, y),
            'pgd_loss': attacks.cross_entropy(adv_logits, y)}

  def evaluate_host_batch(variables, x, y, key):
    rows = len(x) // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    batch = parallel.global_batch({'x': x[mine], 'y': y[mine]}, mesh)
    return parallel.gather(evaluate_batch(variables, batch['x'], batch['y'], key))

  return evaluate_host_batch


def evaluate_flags(eval_fn, variables, images, labels, batch_size: int, seed: int) -> dict:
  """Per-example flags over a whole split (numpy, length = len(labels))."""
  key = jax.random.PRNGKey(seed)
  chunks = []
  for b, (x, y, n_valid) in enumerate(data_lib.eval_batches(images, labels, batch_size)):
    out = eval_fn(variables, x, y, jax.random.fold_in(key, b))
    chunks.append({k: np.asarray(v)[:n_valid] for k, v in out.items()})
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def summarize(flags: dict) -> dict:
  return {'clean_acc': float(flags['clean'].mean()),
          'pgd_acc': float(flags['pgd'].mean()),
          'sum_acc': float(flags['clean'].mean() + flags['pgd'].mean()),
          'loss': float(flags['loss'].mean()),
          'pgd_loss': float(flags['pgd_loss'].mean())}


def evaluate_learners(eval_fn, state, setup, split, batch_size, seed) -> dict:
  """{'<learner>/<metric>': value} for every expert and the global learner."""
  images, labels = split
  out = {}
  for name, variables in learners(state, setup).items():
    summary = summarize(evaluate_flags(eval_fn, variables, images, labels, batch_size, seed))
    out.update({f'{name}/{k}': v for k, v in summary.items()})
  return out


# ----------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------

def _mean_metrics(pending: list) -> dict:
  stacked = parallel.to_host(pending)   # the one host sync per log interval
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def _check_finite(scalars: dict, step: int, expert_names) -> None:
  for name in expert_names:
    for metric in ('loss', 'grad_norm', 'param_norm'):
      value = scalars.get(f'train/{name}/{metric}')
      if value is not None and not math.isfinite(value):
        raise NonFiniteError(
            f'expert {name!r}: {metric} is {value} in the log interval ending at step '
            f'{step}. Nothing was saved after the last good checkpoint; lower the lr of '
            f'experts.{name}.optimizer or check the data, then start the same command again.')


class PreemptionGuard:
  """Turns SIGTERM (preemption, scancel, docker stop) into a request that the loop
  answers after the current step: save a checkpoint, exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _write_config(config, workdir: pathlib.Path) -> None:
  path = workdir / 'config.json'
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if path.exists() and path.read_text() != text:
    logging.warning('config differs from %s (resuming with the new one); the old one '
                    'is kept as config.previous.json', path)
    path.replace(workdir / 'config.previous.json')
  path.write_text(text)


def write_table(path_stem: pathlib.Path, results: dict, description: str) -> None:
  """`<stem>.json` and a Markdown table, one row per learner."""
  path_stem.parent.mkdir(parents=True, exist_ok=True)
  path_stem.with_suffix('.json').write_text(json.dumps(results, indent=2, sort_keys=True))
  rows = ['| learner | clean acc | PGD acc |', '|---|---|---|']
  for name, m in results['learners'].items():
    rows.append(f"| {name} | {100 * m['clean_acc']:.2f} | {100 * m['pgd_acc']:.2f} |")
  path_stem.with_suffix('.md').write_text(f'{description}\n\n' + '\n'.join(rows) + '\n')


def final_test(config, setup, ckpts, template, dataset, workdir: pathlib.Path) -> dict:
  """Test-set clean and PGD accuracy of the last and the best-on-validation state."""
  eval_fn = make_eval_fn(setup.model, config.eval.test_attack, setup.mesh, setup.compute_dtype)
  attack = config.eval.test_attack
  results = {}
  for which in ('last', 'best'):
    restored = ckpts.restore(template, which)
    if restored is None:
      continue
    state, ckpt_meta = restored
    per_learner = {}
    for name, variables in learners(state, setup).items():
      per_learner[name] = summarize(evaluate_flags(
          eval_fn, variables, *dataset.test, config.eval.batch_size, config.seed + 1))
    step = int(parallel.to_host(state.step))
    results[which] = {'step': step, 'meta': ckpt_meta, 'learners': per_learner,
                      'n_test': int(len(dataset.test[1])), 'attack': attack.to_dict()}
    if not parallel.is_main_process():
      continue
    write_table(workdir / 'eval' / f'test_{which}', results[which],
                f"Test set ({len(dataset.test[1])} images), checkpoint '{which}' at step "
                f"{step}: {attack.norm} PGD-{attack.steps}, eps={attack.eps:.5f}, "
                f'step={attack.step_size:.5f}, restarts={attack.restarts}.')
  return results


def train_and_evaluate(config, workdir: str, *, stop_after_steps: int | None = None) -> dict:
  """Trains (or resumes) the run in `workdir`; returns the final test results.

  `stop_after_steps` ends this invocation early, as a kill would (tests use it).
  """
  # Set-up: validate before any work, then data, model, state.
  config_lib.validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  dataset = data_lib.load_dataset(config.data)
  steps_per_epoch = data_lib.steps_per_epoch(dataset, config.batch_size)
  config_lib.validate_for_data(config, steps_per_epoch)
  setup = make_setup(config, dataset.info, steps_per_epoch)
  main_process = parallel.is_main_process()   # logs and tables: process 0 only
  if main_process:
    _write_config(config, workdir)

  # Restore: the newest readable checkpoint decides where this run continues.
  state = parallel.replicate(create_train_state(setup, dataset.info.image_shape, config.seed),
                             setup.mesh)
  template = jax.tree.map(ocp_utils.to_shape_dtype_struct, state)  # survives donation
  ckpts = checkpointing.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep)
  run_meta = {'best_value': -math.inf, 'best_step': -1}
  restored = ckpts.restore(template)
  if restored is not None:
    state, run_meta = restored
  start_step = int(parallel.to_host(state.step))
  if restored is not None and main_process:
    print(f'resumed {workdir} from step {start_step} of {setup.total_steps}')

  writer = (metric_writer.MetricWriter(workdir, start_step) if main_process
            else metric_writer.NullWriter())
  step_fn = jit_train_step(setup)
  val_eval_fn = make_eval_fn(setup.model, config.eval.val_attack, setup.mesh,
                             setup.compute_dtype)
  local_batches = data_lib.train_batches(
      dataset, config.batch_size, seed=config.seed, start_step=start_step,
      augment=config.data.augment, num_threads=config.data.num_threads,
      prefetch=config.data.prefetch, process_index=jax.process_index(),
      process_count=jax.process_count())
  batches = (parallel.global_batch(b, setup.mesh) for b in local_batches)
  end_step = setup.total_steps if stop_after_steps is None else min(
      setup.total_steps, start_step + stop_after_steps)

  ckpt_every = config.checkpoint.every_steps or steps_per_epoch

  # Loop. The host reads device values only at log points; every checkpoint is
  # preceded by one, so no non-finite state is ever saved.
  bar = tqdm.tqdm(total=setup.total_steps * config.batch_size,
                  initial=start_step * config.batch_size, unit='img', unit_scale=True,
                  disable=not (config.progress_bar and main_process), mininterval=2.0,
                  dynamic_ncols=True)
  pending, interval_start = [], time.perf_counter()
  with contextlib.ExitStack() as cleanup:
    # On any error too: finish saves already under way (all checked finite),
    # then release orbax's threads and the log files.
    cleanup.callback(ckpts.close)
    cleanup.callback(writer.close)
    cleanup.callback(ckpts.wait)
    preemption = cleanup.enter_context(PreemptionGuard())
    for step in range(start_step, end_step):
      state, metrics = step_fn(state, next(batches))
      pending.append(metrics)
      done, epoch = step + 1, (step + 1) // steps_per_epoch
      bar.update(config.batch_size)
      epoch_end = done % steps_per_epoch == 0
      validate = epoch_end and (epoch % config.eval.every_epochs == 0
                                or done == setup.total_steps)
      save = done % ckpt_every == 0 or done == setup.total_steps or preemption.requested
      if done % config.log_every_steps == 0 or epoch_end or save or done == end_step:
        scalars = _mean_metrics(pending)
        _check_finite(scalars, done, setup.expert_names)
        scalars['perf/img_per_sec'] = (len(pending) * config.batch_size
                                       / (time.perf_counter() - interval_start))
        scalars['epoch'] = done / steps_per_epoch
        writer.write(done, scalars)
        pending = []
      if validate:
        run_meta = _validate_and_keep_best(config, setup, dataset, state, run_meta,
                                           val_eval_fn, ckpts, writer, bar, done)
        if main_process:   # PNGs in workdir/plots; a plotting error only logs a warning
          plots.safely(plots.training_plots_every, workdir, final=done == setup.total_steps)
      if save:
        ckpts.save(done, state, dict(run_meta, epoch=done / steps_per_epoch,
                                     data_position=done))
      if not pending:   # interval timing excludes validation and checkpoint time
        interval_start = time.perf_counter()
      if preemption.requested:
        ckpts.wait()
        if main_process:
          bar.write(f'SIGTERM: saved step {done}; start the same command again to resume.')
        break
    bar.close()
    ckpts.wait()

    # Final test of the last and the best-on-validation checkpoints.
    results = {}
    if int(parallel.to_host(state.step)) == setup.total_steps and config.eval.final_test:
      results = final_test(config, setup, ckpts, template, dataset, workdir)
  return results


def _validate_and_keep_best(config, setup, dataset, state, run_meta, eval_fn, ckpts,
                            writer, bar, step: int) -> dict:
  """Validation of every learner; saves `checkpoints/best` when the metric improves."""
  val = evaluate_learners(eval_fn, state, setup, dataset.val, config.eval.batch_size,
                          config.seed + 1)
  val = {f'val/{k}': v for k, v in val.items()}
  writer.write(step, val)
  if parallel.is_main_process():
    bar.write(f'epoch {step // setup.steps_per_epoch}: ' + ', '.join(
        f'{n} {100 * val[f"val/{n}/clean_acc"]:.1f}/{100 * val[f"val/{n}/pgd_acc"]:.1f}'
        for n in learner_names(setup)) + ' (val clean/PGD %)')
  value = val[f'val/{config.eval.best_metric}']
  if value > run_meta['best_value']:
    run_meta = {'best_value': value, 'best_step': step}
    ckpts.save(step, state, dict(run_meta, epoch=step / setup.steps_per_epoch,
                                 data_position=step), best=True)
  return run_meta
