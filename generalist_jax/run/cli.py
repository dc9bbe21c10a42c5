"""What every flags-only command-line entry point (main, evaluate, interpolate,
export_torch, prepare_data; not report, which takes run directories) does first."""
from typing import Callable

from absl import app

from generalist_jax import host_memory


def flags_only(command: Callable[[], object], *, resident_cpu_buffers: bool = True):
  """Wraps a command that takes all its input from flags as absl's `main(argv)`.

  Args:
    command: the command's work, called without arguments; what it returns is
      `main`'s return (absl's exit status).
    resident_cpu_buffers: first call `host_memory.keep_cpu_buffers_resident()`,
      which must come before any jit takes `models.compiler_options()`. Off for
      commands that train and attack nothing.

  Returns:
    `main(argv)` for `app.run`. It raises `app.UsageError` when argv holds more
    than the program name (a positional argument is a typo of a flag).
  """

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]} (this command takes flags only)')
    if resident_cpu_buffers:
      host_memory.keep_cpu_buffers_resident()
    return command()

  main.__doc__ = command.__doc__
  return main
