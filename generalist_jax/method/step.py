"""The training step: every expert's update and the meta-update in ONE jitted step.

    state --train_step(batch)--> state
      for each expert i:  x_i = task_i.inputs(expert_i in BN-eval mode, x, y)
                          loss_i, grads_i -> optax update
      meta:  ema_i <- ema(ema_i, expert_i);  global <- ema(global, sum_i w_i(t) ema_i)
             expert_i <- global  if sync(t)

`make_setup` turns a config into the static `Setup` (its `clock`, `clock.py`, holds
lr, mixing weights, sync and EMA decay as functions of the step); `create_train_state`
the initial `TrainState`; `jit_train_step` the step as the loop runs it.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from generalist_jax import models
from generalist_jax import parallel
from generalist_jax.attacks import training as training_attacks
from generalist_jax.method import clock as clock_lib
from generalist_jax.method import meta
from generalist_jax.method import stacked
from generalist_jax.method import tasks as tasks_lib

GLOBAL = 'global'


@flax.struct.dataclass
class TrainState:
  """Everything a run checkpoints: a pytree of arrays, one entry per expert in the
  tuples (`Setup.expert_names` order).

  Example:
    >>> from generalist_jax import config as config_lib
    >>> from generalist_jax.data import splits
    >>> from generalist_jax.method import step
    >>> c = config_lib.base_config()
    >>> c.experts = config_lib.generalist_experts()
    >>> c.model.name, c.model.width = 'mlp', 0.25
    >>> info = splits.DatasetInfo(10, (8, 8, 1), (0.5,), (0.25,))
    >>> setup = step.make_setup(c, info, steps_per_epoch=10)
    >>> state = step.create_train_state(setup, info.image_shape, seed=0)
    >>> int(state.step), len(state.experts), sorted(state.global_learner)
    (0, 2, ['batch_stats', 'params'])
  """
  step: jax.Array  # updates done so far; also the data position
  experts: tuple  # variables {'params', 'batch_stats'} per expert
  opt_states: tuple  # optax state per expert
  emas: tuple  # EMA variables per expert
  global_learner: Any  # variables of the global learner
  key: jax.Array  # raw uint32 PRNG key for attacks


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything static a run derives from its config (not checkpointed)."""
  model: Any
  expert_names: tuple
  tasks: tuple
  optimizers: tuple
  clock: clock_lib.RunClock  # length, sync windows; lr, mixing, sync, EMA decay of a step
  stack: Any = None  # stacked.StackSpec: experts as one vmapped update
  mesh: Any = None  # jax.sharding.Mesh with a 'data' axis
  compute_dtype: Any = None  # None (float32) or jnp.bfloat16


EMA_SUFFIX = '_ema'


def learner_names_of(expert_names) -> list[str]:
  """Every expert, every expert's EMA ('<expert>_ema') and the global learner.

  Args:
    expert_names: the experts' names, in order.

  Returns:
    The learners' names: the experts, then their EMAs, then 'global'.
  """
  names = list(expert_names)
  return names + [n + EMA_SUFFIX for n in names] + [GLOBAL]


def learner_names(setup: Setup) -> list[str]:
  """`learner_names_of` the run's experts.

  Args:
    setup: the run's `Setup`.

  Returns:
    The learners' names (`learner_names_of(setup.expert_names)`).
  """
  return learner_names_of(setup.expert_names)


def learners(state: TrainState, setup: Setup) -> dict:
  """Every learner's variables, by name.

  Args:
    state: the run's `TrainState`.
    setup: its `Setup` (the experts' names).

  Returns:
    name -> variables, for every expert, its EMA and the global learner
    (`learner_names` order).
  """
  out = dict(zip(setup.expert_names, state.experts))
  out.update({n + EMA_SUFFIX: ema for n, ema in zip(setup.expert_names, state.emas)})
  out[GLOBAL] = state.global_learner
  return out


def make_optimizer(opt_config, lr_schedule) -> optax.GradientTransformation:
  """An expert's SGD: weight decay added to the gradient before momentum, as
  torch.optim.SGD.

  Args:
    opt_config: the expert's `optimizer` config (weight_decay, momentum, nesterov).
    lr_schedule: step -> lr (`RunClock.lr_schedules[i]`), or a float.

  Returns:
    The optax transformation.
  """
  return optax.chain(
      optax.add_decayed_weights(opt_config.weight_decay),
      optax.sgd(lr_schedule, momentum=opt_config.momentum or None, nesterov=opt_config.nesterov))


def make_setup(config, info, steps_per_epoch: int) -> Setup:
  """The static Setup of a run.

  Args:
    config: the run config.
    info: the dataset's `data.DatasetInfo` (num_classes, image_shape, mean, std).
    steps_per_epoch: optimizer steps per epoch of the training split.

  Returns:
    The `Setup`; its `clock` is built here, once (`clock.make_clock`).

  Raises:
    ValueError: an unknown schedule, sync kind, task or model in `config`.
  """
  names = tuple(config.experts.keys())  # ConfigDict keys come sorted
  expert_cfgs = [config.experts[n] for n in names]
  run_clock = clock_lib.make_clock(config, steps_per_epoch)
  optimizers = tuple(
      make_optimizer(e.optimizer, fn) for e, fn in zip(expert_cfgs, run_clock.lr_schedules))
  model = models.create_model(config.model, info.num_classes, info.mean, info.std)
  return Setup(
      model=model,
      expert_names=names,
      tasks=tuple(tasks_lib.make_task(e) for e in expert_cfgs),
      optimizers=optimizers,
      clock=run_clock,
      stack=_stack_spec(config, model, info, expert_cfgs, optimizers),
      mesh=parallel.make_mesh(config.mesh.data),
      compute_dtype=jnp.bfloat16 if config.compute_dtype == 'bfloat16' else None,
  )


def _stack_spec(config, model, info, expert_cfgs, optimizers):
  """meta.stack_experts (off by default): the experts' `stacked.StackSpec`, or None
  when it is off, there is one expert, or they cannot be stacked (logged)."""
  if not config.meta.get('stack_experts', False) or len(expert_cfgs) < 2:
    return None
  params = jax.eval_shape(
      lambda: models.init_variables(model, jax.random.PRNGKey(0), info.image_shape))['params']
  spec, why_not = stacked.stack_spec(expert_cfgs, optimizers, params)
  if spec is None:
    logging.info('meta.stack_experts: %s; the experts update in a loop.', why_not)
  return spec


def create_train_state(setup: Setup, image_shape: tuple, seed: int) -> TrainState:
  """The state at step 0: all experts, EMAs and the global learner start from the
  same weights.

  Host-local arrays (every process computes the same ones from the seed); the
  trainer replicates them over the mesh with `parallel.replicate`.

  Args:
    setup: the run's `Setup` (model, experts, optimizers).
    image_shape: (H, W, C) of the data.
    seed: the run seed; the init and the attacks' key derive from it.

  Returns:
    The initial `TrainState`.
  """
  init_key, attack_key = jax.random.split(jax.random.PRNGKey(seed))
  variables = models.init_variables(setup.model, init_key, image_shape)
  copy = lambda: jax.tree.map(jnp.array, variables)  # distinct buffers (donation)
  experts = tuple(copy() for _ in setup.expert_names)
  return TrainState(
      step=jnp.zeros((), jnp.int32), experts=experts,
      opt_states=tuple(tx.init(e['params']) for tx, e in zip(setup.optimizers, experts)),
      emas=tuple(copy() for _ in setup.expert_names), global_learner=copy(), key=attack_key)


def _expert_update(setup: Setup, i: int, variables, opt_state, x, y, key):
  task = setup.tasks[i]
  return _update(setup, task.inputs, task.loss, setup.optimizers[i].update, variables, opt_state, x,
                 y, key)


def _update(setup: Setup, inputs_fn, loss, tx_update, variables, opt_state, x, y, key):
  """One expert's step: task inputs (BN eval mode), loss and grads (train mode),
  optimizer update. Shared by the loop and the stacked (vmapped) path."""
  model = setup.model

  def logits_eval(inputs):  # BN in eval mode: the attack never moves statistics
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
    for inputs in x_task:  # in order, statistics threaded (see tasks.py)
      out, batch_stats = forward(params, batch_stats, inputs)
      logits.append(out)
    return loss(tuple(logits), y), (logits[-1], batch_stats)

  (value, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn,
                                                             has_aux=True)(variables['params'])
  updates, opt_state = tx_update(grads, opt_state, variables['params'])
  params = optax.apply_updates(variables['params'], updates)
  metrics = {
      'loss': value,
      # of the last batch for multi-batch tasks (TRADES / MART: adversarial)
      'train_acc': jnp.mean(jnp.argmax(logits, -1) == y),
      'grad_norm': optax.tree.norm(grads),
      'param_norm': optax.tree.norm(params)
  }  # non-finite params stop the run
  return {'params': params, 'batch_stats': batch_stats}, opt_state, metrics


def train_step(setup: Setup, state: TrainState, batch: dict):
  """One update of every expert, then the meta-update. Pure; jit it (the loop runs
  `jit_train_step`).

  Args:
    setup: the run's `Setup`; its `clock` gives lr, mixing weights, sync and EMA
      decay at `state.step`.
    state: the `TrainState` before the step.
    batch: {'image': [B, H, W, C] float32 in [0, 1], 'label': [B] int32}.

  Returns:
    (state, metrics): the `TrainState` after the step (step + 1), and scalars
    'train/<expert>/{loss,train_acc,grad_norm,param_norm}',
    'schedule/<expert>/{lr,mix_weight}' and 'schedule/sync' (1.0 on a sync step).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from generalist_jax import config as config_lib
    >>> from generalist_jax.data import splits
    >>> from generalist_jax.method import step
    >>> c = config_lib.base_config()
    >>> c.experts = config_lib.generalist_experts()
    >>> c.experts.robust.attack.steps = 1
    >>> c.model.name, c.model.width = 'mlp', 0.25
    >>> info = splits.DatasetInfo(10, (8, 8, 1), (0.5,), (0.25,))
    >>> setup = step.make_setup(c, info, steps_per_epoch=10)
    >>> state = step.create_train_state(setup, info.image_shape, seed=0)
    >>> batch = {'image': jnp.full((4, 8, 8, 1), 0.5), 'label': jnp.arange(4)}
    >>> state, metrics = jax.jit(lambda s, b: step.train_step(setup, s, b))(state, batch)
    >>> int(state.step), float(metrics['schedule/robust/mix_weight'])
    (1, 1.0)
  """
  x, y = batch['image'], batch['label']
  key, step_key = jax.random.split(state.key)
  experts, opt_states, per_expert = _expert_updates(setup, state, x, y, step_key)
  clock, t = setup.clock, state.step
  metrics = {}
  for i, name in enumerate(setup.expert_names):
    metrics.update({f'train/{name}/{k}': v for k, v in per_expert[i].items()})
    metrics[f'schedule/{name}/lr'] = clock.lr(i, t)

  weights = clock.mix_weights(t)
  sync = clock.is_sync(t)
  experts, emas, global_learner = meta.meta_update(experts, state.emas, state.global_learner,
                                                   decay=clock.ema_decay(t), weights=weights,
                                                   sync=sync)
  for i, name in enumerate(setup.expert_names):
    metrics[f'schedule/{name}/mix_weight'] = weights[i]
  metrics['schedule/sync'] = sync.astype(jnp.float32)
  new_state = state.replace(step=state.step + 1, experts=tuple(experts),
                            opt_states=tuple(opt_states), emas=tuple(emas),
                            global_learner=global_learner, key=key)
  return new_state, metrics


def _expert_updates(setup: Setup, state: TrainState, x, y, step_key):
  """Every expert's own update, expert i with key fold_in(step_key, i): one at a
  time, or all as one vmap when `setup.stack` (meta.stack_experts) is set.
  Returns per-expert lists (variables, optimizer states, metrics)."""
  if setup.stack is not None:
    return _stacked_updates(setup, state, x, y, step_key)
  experts, opt_states, per_expert = [], [], []
  for i in range(len(setup.expert_names)):
    variables, opt_state, m = _expert_update(setup, i, state.experts[i], state.opt_states[i], x, y,
                                             jax.random.fold_in(step_key, i))
    experts.append(variables)
    opt_states.append(opt_state)
    per_expert.append(m)
  return experts, opt_states, per_expert


def _stacked_updates(setup: Setup, state: TrainState, x, y, step_key):
  """Every expert's `_update` as one vmap over a leading expert axis (see
  stacked.py); same keys and results as the loop. Returns per-expert lists."""
  spec, n = setup.stack, len(setup.expert_names)
  keys = jnp.stack([jax.random.fold_in(step_key, i) for i in range(n)])
  updates = [tx.update for tx in setup.optimizers]

  def one(i, variables, opt_state, key, norm_index, eps, step_size):
    inputs_fn = functools.partial(training_attacks.pgd_norm_indexed, norm_index=norm_index,
                                  norms=spec.norms, eps=eps, step_size=step_size, steps=spec.steps,
                                  random_start=spec.random_start, unroll=spec.unroll)
    tx_update = lambda *args: jax.lax.switch(i, updates, *args)
    return _update(setup, inputs_fn, tasks_lib.mean_cross_entropy, tx_update, variables, opt_state,
                   x, y, key)

  experts, opt_states, metrics = jax.vmap(one)(jnp.arange(n), stacked.stack(state.experts),
                                               stacked.stack(state.opt_states), keys,
                                               spec.norm_index, spec.eps, spec.step_size)
  return (stacked.unstack(experts, n), stacked.unstack(opt_states, n), stacked.unstack(metrics, n))


def jit_train_step(setup: Setup) -> Callable:
  """`train_step` as the loop runs it (the benchmark times this too).

  Args:
    setup: the run's `Setup` (its mesh).

  Returns:
    (state, batch) -> (state, metrics): jitted, the state donated and replicated
    over the mesh, the batch sharded on 'data'.
  """
  replicated = parallel.replicated(setup.mesh)
  return jax.jit(lambda s, b: train_step(setup, s, b), donate_argnums=0,
                 compiler_options=models.compiler_options(),
                 in_shardings=(replicated, parallel.batch_sharded(setup.mesh)),
                 out_shardings=(replicated, replicated))
