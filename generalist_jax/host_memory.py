"""Host memory on CPU: XLA:CPU's per-step buffers kept resident in glibc's heaps.

The lowest layer: the entry points call `keep_cpu_buffers_resident()` first
thing, and `models.compiler_options()` adds `resident_buffer_compiler_options()`.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform

RESIDENT_BUFFERS_ENV = 'GENERALIST_JAX_CPU_RESIDENT_BUFFERS'
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
# glibc grows a thread's arena in heaps of at most 64 MiB (HEAP_MAX_SIZE, 64-bit) and
# mmaps any larger block whatever M_MMAP_MAX says; XLA's temp buffer is split into
# heaps of at most this so that each fits one (a soft limit: a larger single buffer
# still gets a heap of its own).
XLA_HEAP_LIMIT_BYTES = 48 * 2**20
# heap_trim unmaps an emptied thread heap unless the heap before it lacks room for
# M_TOP_PAD: a pad of a whole heap keeps every heap (address space only, no RSS).
_TOP_PAD_BYTES = 64 * 2**20
_buffers_resident = False
_ON, _OFF = ('1', 'true', 'on', 'yes'), ('0', 'false', 'off', 'no')


def keep_cpu_buffers_resident() -> bool:
  """On a CPU-only Linux/glibc host, keeps XLA:CPU's per-step buffers in the heap.

  XLA:CPU allocates a program's temp buffer afresh on every call, on the thread
  that runs it. glibc serves any block over its mmap threshold (at most 32 MB) by
  mmap and unmaps it on free, so every step page-faults the block in again, a
  large share of a small step's CPU time. This makes glibc serve blocks from its
  heaps and keep freed memory (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1,
  M_TOP_PAD=64 MiB), and `resident_buffer_compiler_options()` has XLA split the
  temp buffer into heaps of at most XLA_HEAP_LIMIT_BYTES, which a thread arena can
  hold. JAX's asynchronous dispatch is unchanged, so the training loop keeps
  overlapping its host work with the step. Measured gains and costs:
  experiments/benchmarks/README.md ("Resident buffers").

  On by default; GENERALIST_JAX_CPU_RESIDENT_BUFFERS=0 (or false/off/no) turns it
  off. Costs: the process keeps its peak heap, per thread arena (RSS does not
  shrink, for every library in the process); the split adds to a program's temp
  size where single buffers exceed the limit. With jemalloc or tcmalloc preloaded
  the mallopt calls have no effect.

  Call it first thing in an entry point, before any jit that takes
  `models.compiler_options()` is created (they read the options then). Once
  applied it stays for the process (mallopt cannot be undone).

  Returns:
    Whether it applied: not when switched off, JAX_PLATFORMS names another
    platform, an accelerator plugin is installed, or libc is not glibc.

  Raises:
    ValueError: GENERALIST_JAX_CPU_RESIDENT_BUFFERS is not a boolean word.
  """
  global _buffers_resident
  platforms = os.environ.get('JAX_PLATFORMS', '').split(',')
  switch = os.environ.get(RESIDENT_BUFFERS_ENV, '').strip().lower() or '1'
  if switch not in _ON + _OFF:
    raise ValueError(f'{RESIDENT_BUFFERS_ENV}={os.environ[RESIDENT_BUFFERS_ENV]!r}: '
                     'use 1 (the default) or 0 '
                     f'({"/".join(_ON)} or {"/".join(_OFF)}).')
  switched_on = switch in _ON
  if (not switched_on or platforms not in ([''], ['cpu']) or platform.system() != 'Linux' or
      platform.libc_ver()[0] != 'glibc' or _accelerator_plugin_installed()):
    return False
  libc = ctypes.CDLL(None)
  _buffers_resident = bool(
      libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) and
      libc.mallopt(_M_TOP_PAD, _TOP_PAD_BYTES))
  return _buffers_resident


def buffers_resident() -> bool:
  """Whether `keep_cpu_buffers_resident()` has applied in this process.

  Returns:
    True once it applied.
  """
  return _buffers_resident


def resident_buffer_compiler_options() -> dict:
  """XLA compile options for `keep_cpu_buffers_resident()`.

  Returns:
    {'xla_multiheap_size_constraint_per_heap': XLA_HEAP_LIMIT_BYTES} once it
    applied, else {}.
  """
  if not _buffers_resident:
    return {}
  return {'xla_multiheap_size_constraint_per_heap': XLA_HEAP_LIMIT_BYTES}


def _accelerator_plugin_installed() -> bool:
  """libtpu, or a PJRT plugin (jax_plugins namespace or entry point, e.g. CUDA's)."""
  if (importlib.util.find_spec('libtpu') is not None or
      importlib.metadata.entry_points(group='jax_plugins')):
    return True
  namespace = importlib.util.find_spec('jax_plugins')
  return namespace is not None and any(
      pkgutil.iter_modules(namespace.submodule_search_locations or ()))
