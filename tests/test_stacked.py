"""Stacked (vmapped) experts give the same training as the per-expert loop."""
import jax
import numpy as np

from generalist_jax import config as config_lib
from generalist_jax import data as data_lib
from generalist_jax.method import step as step_lib
from tests.tiny_config import tiny_config


def norm_experts_config(npz):
  """natural + l2 + linf PGD-2 experts (different norms, eps, weight decay)."""
  c = tiny_config(npz)
  experts = config_lib.norm_experts(('l2', 'linf'), steps=2)
  experts.natural = config_lib.generalist_experts().natural
  for n in experts.keys():
    experts[n].optimizer = c.experts.robust.optimizer if n != 'natural' else \
        c.experts.natural.optimizer
    experts[n].mix_values = (1 / 3,) * len(c.meta.mix_epochs)
  c.experts = experts
  return c


def run_steps(config, stack: bool, steps: int = 3):
  config.meta.stack_experts = stack
  dataset = data_lib.load_dataset(config.data)
  setup = step_lib.make_setup(config, dataset.info,
                              data_lib.steps_per_epoch(dataset, config.batch_size))
  assert (setup.stack is not None) == stack
  state = step_lib.create_train_state(setup, dataset.info.image_shape, seed=0)
  step_fn = jax.jit(lambda s, b: step_lib.train_step(setup, s, b))
  batches = data_lib.train_batches(dataset, config.batch_size, seed=0, augment='none')
  for _ in range(steps):
    state, metrics = step_fn(state, next(batches))
  return state, metrics


def test_stacked_and_loop_give_the_same_state(tiny_npz):
  """natural + l2 + linf: different tasks, norms, eps and weight decay per expert."""
  loop, m_loop = run_steps(norm_experts_config(tiny_npz), stack=False)
  stacked, m_stacked = run_steps(norm_experts_config(tiny_npz), stack=True)
  assert jax.tree.structure(loop) == jax.tree.structure(stacked)  # same checkpoint layout
  for a, b in zip(jax.tree.leaves(loop), jax.tree.leaves(stacked)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
  assert set(m_loop) == set(m_stacked)
  for k in m_loop:
    np.testing.assert_allclose(m_loop[k], m_stacked[k], rtol=2e-4, atol=2e-5, err_msg=k)


def test_unstackable_tasks_fall_back_to_the_loop(tiny_npz):
  c = tiny_config(tiny_npz)
  c.experts.robust.task = 'trades'
  c.meta.stack_experts = True
  dataset = data_lib.load_dataset(c.data)
  setup = step_lib.make_setup(c, dataset.info, data_lib.steps_per_epoch(dataset, c.batch_size))
  assert setup.stack is None
