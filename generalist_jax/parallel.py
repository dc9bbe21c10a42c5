"""Devices and hosts: the mesh, shardings, global batches, jax.distributed.

One code path from one CPU to many hosts: parameters, optimizer states, EMAs and
the global learner are replicated; the global batch is sharded on the mesh's
'data' axis; the step is one `jax.jit` with explicit shardings (no pmap). With
several processes each host feeds only its rows of the batch.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform

import jax
import numpy as np
from jax._src import xla_bridge  # backends_are_initialized: no public equivalent
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA = 'data'
RESIDENT_BUFFERS_ENV = 'GENERALIST_JAX_CPU_RESIDENT_BUFFERS'
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_cpu_buffers_resident() -> bool:
  """On a CPU-only Linux/glibc host, keeps XLA:CPU's per-step buffers in the heap.

  XLA:CPU allocates a program's temp buffer afresh on every call (111 MB for the
  PreAct-ResNet-18 w0.25 batch-64 natural step). glibc serves any block over its
  mmap threshold (at most 32 MB) by mmap and unmaps it on free, so every step
  page-faults the block in again: 27k faults and a quarter of that step's CPU time
  on 2 Zen 5 cores (experiments/benchmarks/perf_anatomy.py). mallopt(M_MMAP_MAX, 0)
  and M_TRIM_THRESHOLD=2^31-1 make glibc serve blocks from its heaps and keep freed
  memory; but a thread arena's heaps are capped at 64 MB, so a larger block
  allocated on one of JAX's dispatch threads is still mmap'd. Hence single-device
  CPU programs also run on the calling thread (jax_cpu_enable_async_dispatch=False),
  whose main arena can hold any block, and the block is reused: natural steps
  1.3-1.5x, PGD-10 steps 1.06-1.11x faster on that box
  (results/ab_resident_buffers_amd-zen5.json). Multi-device CPU programs
  (xla_force_host_platform_device_count) stay asynchronous and keep the faults.

  Opt-in (GENERALIST_JAX_CPU_RESIDENT_BUFFERS=1), because the whole training loop
  did not get faster on that box: a step run in-line slows down about 2x while
  another busy thread (the input pipeline's) competes for the cores, where a
  dispatched one does not (PreAct w0.25 Generalist-2 loop
  0.649 -> 0.662 s a step, results/loop_efficiency_amd-zen5-preact025-b64-
  resident{0,1}.md). Other costs: the process keeps its peak heap
  (RSS does not shrink; for every library in the process). With jemalloc or
  tcmalloc preloaded the mallopt calls have no effect.

  Call it first thing in an entry point. Returns whether it applied; it does
  nothing unless GENERALIST_JAX_CPU_RESIDENT_BUFFERS is 1/true/on/yes, and
  nothing when JAX's backends have already started (the dispatch setting would
  no longer apply), JAX_PLATFORMS names another platform, an accelerator plugin
  is installed, or libc is not glibc.
  """
  platforms = os.environ.get('JAX_PLATFORMS', '').split(',')
  switched_on = os.environ.get(RESIDENT_BUFFERS_ENV, '0').lower() in ('1', 'true', 'on', 'yes')
  if (not switched_on or platforms not in ([''], ['cpu'])
      or platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc'
      or xla_bridge.backends_are_initialized() or _accelerator_plugin_installed()):
    return False
  jax.config.update('jax_cpu_enable_async_dispatch', False)
  libc = ctypes.CDLL(None)
  return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _accelerator_plugin_installed() -> bool:
  """libtpu, or a PJRT plugin (jax_plugins namespace or entry point, e.g. CUDA's)."""
  if (importlib.util.find_spec('libtpu') is not None
      or importlib.metadata.entry_points(group='jax_plugins')):
    return True
  namespace = importlib.util.find_spec('jax_plugins')
  return namespace is not None and any(
      pkgutil.iter_modules(namespace.submodule_search_locations or ()))


def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> None:
  """Starts jax.distributed when this is one process of several.

  Explicit arguments (flags) win; otherwise JAX auto-detects TPU pods, SLURM
  and Open MPI. A plain single process starts nothing.
  """
  if coordinator_address or num_processes:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  elif any(v in os.environ for v in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE',
                                      'TPU_WORKER_HOSTNAMES')):
    jax.distributed.initialize()


def make_mesh(num_data: int = -1) -> jax.sharding.Mesh:
  """A 1-D mesh over the 'data' axis (-1: every device of every process)."""
  n = jax.device_count() if num_data in (-1, None) else num_data
  if n != jax.device_count():
    raise ValueError(f'mesh.data={num_data} but {jax.device_count()} devices are visible; '
                     'use -1 (all devices) or the device count.')
  # Auto axes (GSPMD propagation): under the Explicit default, jnp.where between
  # a batch-sharded input and key-derived noise (replicated) is a type error
  # (l1 / l2 random starts); the jit's explicit in/out shardings are unchanged.
  return jax.make_mesh((n,), (DATA,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  """Every device holds the whole array (the train state)."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """The leading (batch) axis split over the mesh axis 'data'."""
  return NamedSharding(mesh, P(DATA))


def replicate(tree, mesh):
  """Host values that are identical on every process -> replicated global arrays."""
  sharding = replicated(mesh)

  def put(leaf):
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(put, tree)


def global_batch(local_batch: dict, mesh) -> dict:
  """This process's rows of the batch -> one global array sharded on 'data'."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                      local_batch)


def to_host(tree):
  """numpy values of replicated (or process-local) arrays, without cross-host traffic."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(
      x, jax.Array) else np.asarray(x), tree)


def gather(tree):
  """numpy values of arrays sharded across processes (e.g. per-example flags)."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
  """Process 0 writes logs, tables and plots."""
  return jax.process_index() == 0
