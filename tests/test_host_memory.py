"""parallel.keep_cpu_buffers_resident: XLA:CPU's large temp buffers are reused from the
heap instead of mmap'd and page-faulted in afresh on every call (Linux/glibc only)."""
import os
import platform
import subprocess
import sys

import jax
import pytest

from generalist_jax import parallel
from tests.test_config import ROOT

# A cheap program whose temp buffer (the 128 MB sine, kept whole by the barrier) is above
# glibc's largest mmap threshold (32 MB) and a thread arena's heap (64 MB), so only the
# calling-thread half of the setting keeps it in the heap; it has no large per-thread
# scratch (a dot's packing buffers would be). Prints whether the setting applied and the
# minor page faults per call.
_PROGRAM = """
import resource
from generalist_jax import parallel
applied = parallel.keep_cpu_buffers_resident()
import jax, jax.numpy as jnp

@jax.jit
def f(x):
  y = jax.lax.optimization_barrier(jnp.sin(x))   # [2**25] float32: 128 MB
  return (y * y[::-1]).sum()

x = jnp.ones((2**25,), jnp.float32)
for _ in range(3):
  f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
  f(x).block_until_ready()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""



def _thp_always() -> bool:
  try:   # huge pages for every mapping: an mmap'd block faults in 2 MB at a time
    return '[always]' in open('/sys/kernel/mm/transparent_hugepage/enabled').read()
  except OSError:
    return False


glibc_cpu_linux = pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc'
    or parallel._accelerator_plugin_installed() or _thp_always(),
    reason='the setting is for CPU-only Linux with glibc; page faults count 4 kB pages')


def _faults_per_call(resident: str | None) -> tuple[bool, float]:
  env = {k: v for k, v in os.environ.items() if k not in ('JAX_PLATFORMS', 'XLA_FLAGS')}
  env.pop(parallel.RESIDENT_BUFFERS_ENV, None)
  if resident is not None:
    env[parallel.RESIDENT_BUFFERS_ENV] = resident
  out = subprocess.run([sys.executable, '-c', _PROGRAM], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=300, check=True).stdout.split()
  return out[-2] == 'True', float(out[-1])


@glibc_cpu_linux
def test_resident_buffers_stop_the_per_call_page_faults():
  applied, resident = _faults_per_call('on')
  skipped, default_glibc = _faults_per_call(None)   # the default: off
  assert applied and not skipped
  # 128 MB of fresh 4 kB pages is at least 32k faults a call without the setting.
  assert default_glibc > 16000, default_glibc
  assert resident < 0.05 * default_glibc, (resident, default_glibc)


def test_off_switch_other_platforms_and_a_started_backend_change_nothing(monkeypatch):
  monkeypatch.delenv(parallel.RESIDENT_BUFFERS_ENV, raising=False)   # opt-in: off by default
  assert parallel.keep_cpu_buffers_resident() is False
  for off in ('0', 'false', 'OFF'):
    monkeypatch.setenv(parallel.RESIDENT_BUFFERS_ENV, off)
    assert parallel.keep_cpu_buffers_resident() is False
  monkeypatch.setenv(parallel.RESIDENT_BUFFERS_ENV, '1')
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda')
  assert parallel.keep_cpu_buffers_resident() is False
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  jax.devices()   # this test process's backend has started: too late to apply
  assert parallel.keep_cpu_buffers_resident() is False
