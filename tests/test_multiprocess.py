"""Two processes on this machine (loopback coordinator, gloo CPU collectives) run
the same short training as one process: same parameters to float tolerance."""
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from generalist_jax import train
from tests.run_helpers import final_state
from tests.tiny_config import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, tiny_npz):
  port = free_port()
  env = dict(os.environ, JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo')
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'generalist_jax.main', '--config=tests/tiny_config.py',
       f'--workdir={tmp_path / "two"}', f'--config.data.path={tiny_npz}',
       '--config.eval.final_test=False', f'--coordinator_address=127.0.0.1:{port}',
       '--num_processes=2', f'--process_id={i}'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert 'epoch 2:' in outs[0] and 'epoch 2:' not in outs[1]   # process 0 logs alone
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  train.train_and_evaluate(config, str(tmp_path / 'one'))
  two, one = final_state(tmp_path / 'two', tiny_npz), final_state(tmp_path / 'one', tiny_npz)
  assert int(two.step) == int(one.step) == 10
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
