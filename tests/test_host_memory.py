"""host_memory.keep_cpu_buffers_resident: XLA:CPU's large temp buffers are reused from the
heap instead of mmap'd and page-faulted in afresh on every call (Linux/glibc only)."""
import os
import platform
import subprocess
import sys

import jax
import pytest

from generalist_jax import host_memory
from generalist_jax.models import cpu_ops
from tests.test_config import ROOT

# A cheap program whose temp buffer (six 16 MB sines, kept whole by the barrier) is above
# glibc's largest mmap threshold (32 MB) and a thread arena's heap (64 MB): only split into
# XLA heaps of at most 48 MB does it stay in glibc's heaps. It has no large per-thread
# scratch (a dot's packing buffers would be). Prints whether the setting applied, whether
# dispatch is asynchronous, and the median minor page faults of a call.
_PROGRAM = """
import resource
from generalist_jax import host_memory
from generalist_jax.models import cpu_ops
applied = host_memory.keep_cpu_buffers_resident()
import functools, jax, jax.numpy as jnp

@functools.partial(jax.jit, compiler_options=cpu_ops.compiler_options())
def f(x):
  ys = jax.lax.optimization_barrier(tuple(jnp.sin(row) for row in x))   # 6 x 16 MB
  return sum(y.sum() for y in ys)

x = jnp.ones((6, 2**22), jnp.float32)
faults = []
for _ in range(24):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# Median of the last 16: each of JAX's dispatch threads warms its own glibc arena on its
# first calls, and which thread runs a call varies.
print(applied, jax.config.read('jax_cpu_enable_async_dispatch'), sorted(faults[8:])[8])
"""


def _thp_always() -> bool:
  try:  # huge pages for every mapping: an mmap'd block faults in 2 MB at a time
    return '[always]' in open('/sys/kernel/mm/transparent_hugepage/enabled').read()
  except OSError:
    return False


glibc_cpu_linux = pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc' or
    host_memory._accelerator_plugin_installed() or _thp_always(),
    reason='the setting is for CPU-only Linux with glibc; page faults count 4 kB pages')


def _faults_per_call(resident: str | None) -> tuple[bool, bool, float]:
  env = {k: v for k, v in os.environ.items() if k not in ('JAX_PLATFORMS', 'XLA_FLAGS')}
  env.pop(host_memory.RESIDENT_BUFFERS_ENV, None)
  if resident is not None:
    env[host_memory.RESIDENT_BUFFERS_ENV] = resident
  out = subprocess.run([sys.executable, '-c', _PROGRAM], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=300, check=True).stdout.split()
  return out[-3] == 'True', out[-2] == 'True', float(out[-1])


@glibc_cpu_linux
def test_resident_buffers_stop_the_per_call_page_faults():
  applied, dispatched, resident = _faults_per_call(None)  # the default: on
  skipped, _, default_glibc = _faults_per_call('0')
  assert applied and not skipped
  assert dispatched  # the steps still run asynchronously (in-line ones lose the loop's overlap)
  # 96 MB of fresh 4 kB pages is at least 24k faults a call without the setting.
  assert default_glibc > 12000, default_glibc
  assert resident < 0.05 * default_glibc, (resident, default_glibc)


def test_off_switch_other_platforms_and_bad_values(monkeypatch):
  for off in ('0', 'false', ' OFF ', 'no'):
    monkeypatch.setenv(host_memory.RESIDENT_BUFFERS_ENV, off)
    assert host_memory.keep_cpu_buffers_resident() is False
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda')
  for on in ('1', ''):  # empty: the default
    monkeypatch.setenv(host_memory.RESIDENT_BUFFERS_ENV, on)
    assert host_memory.keep_cpu_buffers_resident() is False
  monkeypatch.setenv(host_memory.RESIDENT_BUFFERS_ENV, '2')
  with pytest.raises(ValueError, match='use 1 .*or 0'):
    host_memory.keep_cpu_buffers_resident()


def test_the_heap_limit_goes_with_the_setting(monkeypatch):
  monkeypatch.setattr(host_memory, '_buffers_resident', False)
  assert host_memory.resident_buffer_compiler_options() == {}
  on_cpu = jax.default_backend() == 'cpu'
  assert not on_cpu or 'xla_multiheap_size_constraint_per_heap' not in (cpu_ops.compiler_options()
                                                                        or {})
  monkeypatch.setattr(host_memory, '_buffers_resident', True)
  assert host_memory.resident_buffer_compiler_options() == {
      'xla_multiheap_size_constraint_per_heap': 48 * 2**20
  }
  # every model, step and evaluation jit takes its options from cpu_ops
  assert not on_cpu or cpu_ops.compiler_options(
  )['xla_multiheap_size_constraint_per_heap'] == 48 * 2**20
