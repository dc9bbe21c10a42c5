"""bfloat16 compute: float32 parameters, optimizer state and loss; the loss falls
as in float32 and stays close to it."""
import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax import data as data_lib
from generalist_jax.method import step as step_lib
from tests.tiny_config import tiny_config

STEPS = 12


def _losses_and_state(tiny_npz, compute_dtype: str):
  config = tiny_config(tiny_npz)
  config.compute_dtype = compute_dtype
  config.meta.sync.kind = 'never'
  for name in config.experts.keys():  # a fixed batch: the loss must fall quickly
    opt = config.experts[name].optimizer
    opt.lr_values = (0.05,) * len(opt.lr_values)
  dataset = data_lib.load_dataset(config.data)
  setup = step_lib.make_setup(config, dataset.info,
                              data_lib.steps_per_epoch(dataset, config.batch_size))
  state = step_lib.create_train_state(setup, dataset.info.image_shape, seed=0)
  batch = next(data_lib.train_batches(dataset, 16, seed=0, augment='none'))
  step = jax.jit(lambda s, b: step_lib.train_step(setup, s, b))
  losses = []
  for _ in range(STEPS):
    state, metrics = step(state, batch)
    losses.append([float(metrics[f'train/{n}/loss']) for n in setup.expert_names])
  return np.array(losses), state


def test_bfloat16_keeps_float32_state_and_tracks_float32_loss(tiny_npz):
  f32_losses, _ = _losses_and_state(tiny_npz, 'float32')
  bf16_losses, bf16_state = _losses_and_state(tiny_npz, 'bfloat16')
  # Everything stored stays float32: parameters, BN statistics, momenta, EMAs.
  dtypes = {
      leaf.dtype
      for leaf in jax.tree.leaves(bf16_state)
      if jnp.issubdtype(leaf.dtype, jnp.floating)
  }
  assert dtypes == {jnp.dtype(jnp.float32)}, dtypes
  assert np.isfinite(bf16_losses).all()
  for losses in (f32_losses, bf16_losses):  # per expert: the last steps beat the first
    assert (losses[-3:].mean(0) < 0.8 * losses[:3].mean(0)).all(), losses
  # bf16 has 8 mantissa bits: the trajectories agree to a few percent, not to rounding.
  np.testing.assert_allclose(bf16_losses, f32_losses, rtol=0.1, atol=0.08)
  assert not np.array_equal(bf16_losses, f32_losses)  # bf16 really was used
