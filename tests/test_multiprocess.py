"""Two processes on this machine (loopback coordinator, gloo CPU collectives) run
the same short training as one process: same parameters to float tolerance."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import chex

from generalist_jax.run import loop
from tests.run_helpers import final_state
from tests.tiny_config import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def two_processes(workdir, npz, epochs: int = 2):
  """The tiny run as processes 0 and 1 of one job (loopback coordinator)."""
  port = free_port()
  env = dict(os.environ, JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo')
  return [subprocess.Popen(
      [sys.executable, '-m', 'generalist_jax.main', f'--config=tests/tiny_config.py:{epochs}',
       f'--workdir={workdir}', f'--config.data.path={npz}',
       '--config.eval.final_test=False', f'--coordinator_address=127.0.0.1:{port}',
       '--num_processes=2', f'--process_id={i}'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]


def test_two_processes_match_one(tmp_path, tiny_npz):
  procs = two_processes(tmp_path / 'two', tiny_npz)
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert 'epoch 2:' in outs[0] and 'epoch 2:' not in outs[1]   # process 0 logs alone
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  loop.train_and_evaluate(config, str(tmp_path / 'one'))
  two, one = final_state(tmp_path / 'two'), final_state(tmp_path / 'one')
  assert int(two.step) == int(one.step) == 10
  chex.assert_trees_all_close(two, one, rtol=1e-4, atol=1e-5)


def test_sigterm_on_one_host_stops_both_at_the_same_step(tmp_path, tiny_npz):
  """Only process 1 is told to stop: both must leave at one agreed step, save it
  together and exit cleanly (a lone leaver would hang the other in a collective)."""
  workdir = tmp_path / 'job'
  procs = two_processes(workdir, tiny_npz, epochs=400)      # 2,000 steps: long enough
  metrics = workdir / 'metrics.jsonl'
  while procs[1].poll() is None and not (metrics.exists() and metrics.read_text().strip()):
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  saved = int(outs[0].split('SIGTERM: saved step ')[1].split(';')[0])
  assert saved < 2000 and (workdir / 'checkpoints' / 'last' / str(saved)).exists(), outs[0]
  last = [json.loads(line) for line in metrics.read_text().splitlines()][-1]
  assert last['step'] == saved
