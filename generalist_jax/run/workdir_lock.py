"""One writer per workdir. A training run (or a suite) holds `<workdir>/.lock` for its
whole life, so a second one started on the same workdir is refused before it
writes anything, instead of both mixing checkpoints, metrics and config.json.

The lock is `fcntl.flock` on the open file: the kernel drops it when the holder
ends, however it ends (kill -9 included), so a dead run on this host never blocks
the next one. The file also records the holder (pid, host, start time) for the
messages, and is emptied on release; a record still there when the flock is free
was left by a run that did not end cleanly. On this host that run is gone and
its lock is taken over; from another host (which flock may not reach over a
network file system) it is refused, with how to remove it if that host is gone.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import time
from typing import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

LOCK_NAME = '.lock'


class WorkdirLockedError(RuntimeError):
  """Another run holds (or may hold) the workdir."""


def _record(fd: int) -> dict | None:
  """The holder recorded in the lock file, or None when it is empty (released)."""
  text = os.pread(fd, 1 << 16, 0).decode(errors='replace').strip()
  if not text:
    return None
  try:
    return json.loads(text)
  except ValueError:
    return {'unreadable': text[:200]}


def _who(holder: dict | None) -> str:
  if not holder or 'pid' not in holder:
    return f'another process ({holder or "no record"})'
  return (f"pid {holder['pid']} on host {holder.get('host')!r} (started "
          f"{holder.get('started', '?')})")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def _acquire(path: pathlib.Path) -> int:
  """The open, flocked lock file with this process's record in it; raises
  WorkdirLockedError (and leaves the file as it was) when the workdir is taken."""
  import fcntl  # pylint: disable=g-import-not-at-top  (POSIX only)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirLockedError(
          f'{path.parent} is in use by {_who(_record(fd))}: another run is writing there. '
          'Nothing was written. Wait for it to end, or use another --workdir.') from None
    previous = _record(fd)
    if previous is not None:
      host = socket.gethostname()
      if previous.get('host') != host:
        raise WorkdirLockedError(
            f'{path} names {_who(previous)}, another host, which may still be training '
            f'in {path.parent}. Nothing was written. If that run is over (its host gone '
            f'or the run killed), remove {path} and start again.')
      pid = previous.get('pid')
      state = ('no longer running'
               if isinstance(pid, int) and not _pid_alive(pid) else 'not holding it')
      print(
          f'{path}: taking over the lock of {_who(previous)}, {state} (it ended '
          'without releasing it: killed?).', flush=True)
    record = {
        'pid': os.getpid(), 'host': socket.gethostname(),
        'started': time.strftime('%Y-%m-%d %H:%M:%S %z')
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + '\n').encode(), 0)
    os.fsync(fd)
    return fd
  except BaseException:
    os.close(fd)  # drops the flock if we had it; the file is left as it was
    raise


def _release(fd: int) -> None:
  os.ftruncate(fd, 0)  # an empty file: released (the file stays: no unlink races)
  os.close(fd)  # drops the flock


@contextlib.contextmanager
def hold(workdir) -> Iterator[pathlib.Path]:
  """Holds `<workdir>/.lock` (the workdir must exist) while the block runs, and
  releases it however the block ends. Raises WorkdirLockedError, before the block
  runs, when another run holds the workdir (or a run on another host left its
  record). In a multi-process job only process 0 takes it; all raise together.

  Args:
    workdir: the run (or suite) directory.

  Yields:
    The lock file's path.

  Raises:
    WorkdirLockedError: as above.
  """
  path = pathlib.Path(workdir) / LOCK_NAME
  fd, error = None, None
  if jax.process_index() == 0:
    try:
      fd = _acquire(path)
    except WorkdirLockedError as e:
      error = e
  if jax.process_count() > 1:
    taken = multihost_utils.broadcast_one_to_all(np.int32(fd is not None))
    if not taken and error is None:
      error = WorkdirLockedError(f'process 0 could not lock {path}; see its log.')
  if error is not None:
    raise error
  try:
    yield path
  finally:
    if fd is not None:
      _release(fd)
