"""Two processes on this machine (loopback coordinator, gloo CPU collectives) run
the same short training as one process (same parameters to float tolerance) and the
same evaluation (the same per-example flags)."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import chex

from generalist_jax.run import evaluate_run
from generalist_jax.run import loop
from tests.conftest import write_tiny_npz
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
  return [
      subprocess.Popen([
          sys.executable, '-m', 'generalist_jax.main', f'--config=tests/tiny_config.py:{epochs}',
          f'--workdir={workdir}', f'--config.data.path={npz}', '--config.eval.final_test=False',
          f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'
      ], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]


def test_two_processes_match_one(tmp_path, tiny_npz):
  procs = two_processes(tmp_path / 'two', tiny_npz)
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert 'epoch 2:' in outs[0] and 'epoch 2:' not in outs[1]  # process 0 logs alone
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
  procs = two_processes(workdir, tiny_npz, epochs=400)  # 2,000 steps: long enough
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


def test_two_processes_evaluate_like_one(tmp_path):
  """`generalist_jax.evaluate` as processes 0 and 1 of one job, 2 CPU devices each: the
  attacks run split over all 4 devices, process 0 alone writes the files, and every
  per-example flag equals a single-process evaluation's."""
  npz = write_tiny_npz(tmp_path / 'tiny.npz', n_test=128)
  config = tiny_config(npz)
  config.eval.final_test = False
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(config, str(workdir))
  # A small eps, so that some examples survive APGD-CE and APGD-T runs too.
  settings = dict(checkpoint='last', attacks='apgd-ce,apgd-t', eps=[0.25 / 255], n_ex=128,
                  batch_size=32, overrides={'steps': 3, 'n_targets': 2})
  port = free_port()
  env = dict(os.environ, JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  procs = [
      subprocess.Popen([
          sys.executable, '-m', 'generalist_jax.evaluate', f'--workdir={workdir}',
          '--checkpoint=last', '--attacks=apgd-ce,apgd-t', '--eps=0.25/255', '--n_ex=128',
          '--batch_size=32', '--steps=3', '--n_targets=2', '--no_progress', '--name=two',
          f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'
      ], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  assert f"-> {workdir / 'eval' / 'two'}.md" in outs[0], outs[0]
  assert 'two: clean' not in outs[1], outs[1]  # process 0 writes alone
  evaluate_run.evaluate_run(workdir, name='one', progress=False, **settings)
  two, one = ((workdir / 'eval' / f'{name}.csv').read_text() for name in ('two', 'one'))
  assert two == one
  versions = json.loads((workdir / 'eval' / 'two.json').read_text())['versions']
  assert (versions['devices'], versions['processes']) == (4, 2)
  rows = [line.split(',') for line in one.splitlines()[1:]]
  assert sum(row[4] != '-1' for row in rows) >= 1, one  # APGD-T attacked some
