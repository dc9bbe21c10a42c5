"""l2 / l1 PGD experts run through the real jitted step (explicit mesh): their
random starts must take the batch's sharding, not the replicated key's."""
import jax
import numpy as np
import pytest

from generalist_jax import config as config_lib
from generalist_jax import data as data_lib
from generalist_jax import parallel
from generalist_jax.method import step as step_lib


@pytest.mark.parametrize('norm, eps', [('l2', 0.5), ('l1', 12.0)])
def test_non_linf_expert_trains_under_the_mesh(norm, eps):
  c = config_lib.single_expert_config('robust', 'global/robust_acc')
  c.experts.robust.attack = config_lib.pgd_attack(eps=eps, step_size=eps / 2, steps=1, norm=norm)
  c.model.update(dict(name='small_cnn', width=0.125, batch_norm=True))
  info = data_lib.DatasetInfo(10, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)
  setup = step_lib.make_setup(c, info, steps_per_epoch=10)
  state = parallel.replicate(step_lib.create_train_state(setup, info.image_shape, 0), setup.mesh)
  rng = np.random.default_rng(0)
  batch = parallel.global_batch(
      {
          'image': rng.uniform(size=(4, 32, 32, 3)).astype(np.float32), 'label': rng.integers(
              0, 10, 4).astype(np.int32)
      }, setup.mesh)
  _, metrics = step_lib.jit_train_step(setup)(state, batch)
  assert np.isfinite(float(jax.device_get(metrics['train/robust/loss'])))
