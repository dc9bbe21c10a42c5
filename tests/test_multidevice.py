"""The same tiny training on a 4-device mesh (fake CPU devices) and on 1 device:
the global batch really is split, and the parameters agree to float tolerance;
a batch that does not split over the devices is refused up front."""
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np

from generalist_jax.run import loop
from tests.run_helpers import final_state
from tests.tiny_config import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]

FOUR_DEVICE_RUN = textwrap.dedent('''
    import sys
    import jax, numpy as np
    from generalist_jax import config as config_lib, data, parallel
    from generalist_jax.config import validation
    from generalist_jax.run import loop
    from tests.tiny_config import tiny_config
    npz, workdir = sys.argv[1], sys.argv[2]
    assert jax.device_count() == 4
    config = tiny_config(npz)
    config.batch_size = 6
    try:
      validation.validate_config(config)
      raise SystemExit('batch 6 on 4 devices was accepted')
    except config_lib.ConfigError as err:
      assert 'does not split over 4 devices' in str(err), err
    config = tiny_config(npz)
    config.eval.final_test = False
    dataset = data.load_dataset(config.data)
    mesh = parallel.make_mesh()
    batch = parallel.global_batch(next(data.train_batches(dataset, 8, seed=0)), mesh)
    shards = batch['image'].addressable_shards
    assert len(shards) == 4 and all(s.data.shape[0] == 2 for s in shards), shards
    assert len({s.device for s in shards}) == 4
    loop.train_and_evaluate(config, workdir)
    print('SHARDED_OK')
''')


def test_four_devices_match_one_device(tmp_path, tiny_npz):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  proc = subprocess.run(
      [sys.executable, '-c', FOUR_DEVICE_RUN,
       str(tiny_npz), str(tmp_path / 'four')], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0 and 'SHARDED_OK' in proc.stdout, proc.stdout + proc.stderr
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  assert jax.device_count() == 1
  loop.train_and_evaluate(config, str(tmp_path / 'one'))
  four, one = final_state(tmp_path / 'four'), final_state(tmp_path / 'one')
  assert int(four.step) == int(one.step) == 10
  # Batch statistics and gradients are reduced across shards in another order:
  # equal up to float32 rounding, amplified a little over 10 steps.
  for a, b in zip(jax.tree.leaves(four.global_learner), jax.tree.leaves(one.global_learner)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
