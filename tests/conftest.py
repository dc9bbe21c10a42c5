"""Shared fixtures: a tiny .npz dataset made on the spot, the XLA cache."""
import numpy as np
import pytest


def write_tiny_npz(path, n_train=48, n_test=16, shape=(32, 32, 3), num_classes=10, seed=0):
  rng = np.random.default_rng(seed)
  np.savez(path, x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
           y_train=rng.integers(0, num_classes, n_train),
           x_test=rng.integers(0, 256, (n_test, *shape),
                               dtype=np.uint8), y_test=rng.integers(0, num_classes, n_test))
  return path


@pytest.fixture
def tiny_npz(tmp_path):
  return write_tiny_npz(tmp_path / 'tiny.npz')


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """Tests compile the same tiny steps many times; XLA's persistent cache makes
  every compile after the first one a lookup."""
  import jax
  jax.config.update('jax_compilation_cache_dir', str(tmp_path_factory.mktemp('xla_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  yield


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory):
  """An uninterrupted tiny CLI run: (npz path, XLA cache dir, final state)."""
  from tests import run_helpers
  return run_helpers.straight_run(tmp_path_factory)
