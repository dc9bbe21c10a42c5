"""Helpers for the failure-family tests: the tiny run as a CLI subprocess, its
final state, and an uninterrupted reference run shared by a test module."""
import os
import pathlib
import subprocess
import sys

import chex

from generalist_jax.run import restore
from tests.conftest import write_tiny_npz

ROOT = pathlib.Path(__file__).resolve().parents[1]
EPOCHS = 4  # 5 steps an epoch with the tiny npz: 20 steps, a checkpoint every 2


def cli(workdir, npz, cache_dir):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  return subprocess.Popen([
      sys.executable, '-m', 'generalist_jax.main', f'--config=tests/tiny_config.py:{EPOCHS}',
      f'--workdir={workdir}', f'--config.data.path={npz}', '--config.eval.final_test=False'
  ], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def final_state(workdir):
  """The newest checkpoint's state of a run."""
  return restore.restore_run(workdir, 'last').state


def assert_same_state(a, b):
  assert int(a.step) == int(b.step)
  chex.assert_trees_all_equal(a, b)  # bit for bit, leaf by leaf


def progress(workdir: pathlib.Path):
  """(metric lines written, is a checkpoint being written?)"""
  metrics = workdir / 'metrics.jsonl'
  lines = len(metrics.read_text().splitlines()) if metrics.exists() else 0
  last = workdir / 'checkpoints' / 'last'
  writing = last.exists() and any('tmp' in p.name for p in last.iterdir())
  return lines, writing


def straight_run(tmp_path_factory):
  base = tmp_path_factory.mktemp('straight')
  npz = write_tiny_npz(base / 'tiny.npz')
  proc = cli(base / 'run', npz, base / 'cache')
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  return npz, base / 'cache', final_state(base / 'run')
