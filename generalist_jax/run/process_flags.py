"""The flags that make a command one process of a multi-host job (`main`, `evaluate`).

SLURM, Open MPI and TPU pods are detected by `jax.distributed` itself; elsewhere each
process is started with the coordinator's address, the number of processes and its
own index.
"""
from absl import flags

from generalist_jax import parallel

COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for several processes without '
    'SLURM / Open MPI / TPU auto-detection.')
NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')


def initialize_distributed() -> None:
  """Joins the job the flags describe (`parallel.maybe_initialize_distributed`); a plain
  single process starts nothing. Call it before anything touches a device."""
  parallel.maybe_initialize_distributed(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value,
                                        PROCESS_ID.value)
