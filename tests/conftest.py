"""Shared fixtures: a tiny config and a tiny .npz dataset made on the spot."""
import numpy as np
import pytest

from generalist_jax import config_lib


def write_tiny_npz(path, n_train=48, n_test=16, shape=(32, 32, 3), num_classes=10, seed=0):
  rng = np.random.default_rng(seed)
  np.savez(path,
           x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
           y_train=rng.integers(0, num_classes, n_train),
           x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
           y_test=rng.integers(0, num_classes, n_test))
  return path


@pytest.fixture
def tiny_npz(tmp_path):
  return write_tiny_npz(tmp_path / 'tiny.npz')


def tiny_config(npz_path=None, num_epochs=2):
  """Generalist with a 1/8-width BN SmallCNN, batch 8, PGD-2: seconds per run."""
  c = config_lib.base_config()
  c.experts = config_lib.generalist_experts()
  for name in c.experts.keys():
    c.experts[name].attack.steps = 2
    c.experts[name].attack.step_size = 4 / 255
  config_lib.scale_epochs(c, num_epochs)
  c.meta.sync.kind = 'every_steps'
  c.meta.sync.start_epoch = 1
  c.meta.sync.every_steps = 3
  c.model.name = 'small_cnn'
  c.model.width = 0.125
  c.batch_size = 8
  c.data.val_size = 8
  c.data.augment = 'crop_flip'
  c.data.num_threads = 1
  if npz_path is not None:
    c.data.source = 'npz'
    c.data.path = str(npz_path)
  c.eval.batch_size = 16
  c.eval.val_attack.steps = 2
  c.eval.test_attack.steps = 2
  c.checkpoint.every_steps = 2
  c.log_every_steps = 2
  c.progress_bar = False
  return c


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """Tests compile the same tiny steps many times; XLA's persistent cache makes
  every compile after the first one a lookup."""
  import jax
  jax.config.update('jax_compilation_cache_dir', str(tmp_path_factory.mktemp('xla_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  yield
