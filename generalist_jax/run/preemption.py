"""SIGTERM (preemption, scancel, docker stop) as a request the training loop
answers after the current step: save a checkpoint, exit cleanly.

With several processes, a host that alone leaves the loop would leave the others
waiting forever in the next collective step. So the request is agreed on at
sync points that every process reaches at the same step (an all-gather of the
flags): if any host was asked to stop, all stop there and save together.
"""
from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np


class PreemptionGuard:
  """Records SIGTERM while active (the main thread only; elsewhere it is inert)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def stop_requested(self, *, sync_point: bool) -> bool:
    """Whether the loop stops after this step. One process: its own request, at
    any step. Several: only at sync points (the same steps on every process),
    when any process has a request.

    Args:
      sync_point: whether every process calls this at this step (with several
        processes it is then a collective all-gather).

    Returns:
      True to stop after this step.
    """
    if jax.process_count() == 1:
      return self.requested
    if not sync_point:
      return False
    flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
    return bool(np.any(flags))
