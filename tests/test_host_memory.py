"""parallel.keep_cpu_buffers_resident: XLA:CPU's large temp buffers are reused from the
heap instead of mmap'd and page-faulted in afresh on every call (Linux/glibc only)."""
import os
import platform
import subprocess
import sys

import pytest

from generalist_jax import parallel
from tests.test_config import ROOT

# A program whose temp buffer (the 64 MB product) is above glibc's largest mmap
# threshold (32 MB); prints whether the setting applied and the minor page faults per call.
_PROGRAM = """
import resource
from generalist_jax import parallel
applied = parallel.keep_cpu_buffers_resident()
import jax, jax.numpy as jnp

@jax.jit
def f(x):
  y = jnp.tanh(x @ x)
  return (y @ y[:, :1]).sum()

x = jnp.ones((4096, 4096), jnp.float32) / 4096
for _ in range(3):
  f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
  f(x).block_until_ready()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""

glibc_linux = pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
    reason='the setting is for Linux with glibc')


def _faults_per_call(resident: str) -> tuple[bool, float]:
  env = {k: v for k, v in os.environ.items() if k not in ('JAX_PLATFORMS', 'XLA_FLAGS')}
  env[parallel.RESIDENT_BUFFERS_ENV] = resident
  out = subprocess.run([sys.executable, '-c', _PROGRAM], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=300, check=True).stdout.split()
  return out[-2] == 'True', float(out[-1])


@glibc_linux
def test_resident_buffers_stop_the_per_call_page_faults():
  applied, resident = _faults_per_call('1')
  skipped, default_glibc = _faults_per_call('0')
  assert applied and not skipped
  # 64 MB of fresh pages is ~16k faults a call without the setting.
  assert default_glibc > 8000, default_glibc
  assert resident < 0.05 * default_glibc, (resident, default_glibc)


def test_off_switch_and_other_platforms_change_nothing(monkeypatch):
  monkeypatch.setenv(parallel.RESIDENT_BUFFERS_ENV, '0')
  assert parallel.keep_cpu_buffers_resident() is False
  monkeypatch.setenv(parallel.RESIDENT_BUFFERS_ENV, '1')
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda')
  assert parallel.keep_cpu_buffers_resident() is False
