"""SIGTERM (preemption, scancel, docker stop) as a request the training loop
answers after the current step: save a checkpoint, exit cleanly."""
from __future__ import annotations

import signal
import threading


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
