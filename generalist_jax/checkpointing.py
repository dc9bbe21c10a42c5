"""Orbax checkpoints of a run: the last N, plus the best on validation.

A checkpoint holds everything that decides the future of a run: experts, EMAs,
global learner, optimizer states, step (which is also the data position: batch
k is a pure function of (seed, k)) and the PRNG key, as one pytree ('state'),
and a small JSON item ('meta': best-so-far, epoch, data position).
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any

import orbax.checkpoint as ocp


def _manager(directory: pathlib.Path, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(directory, options=options, item_names=('state', 'meta'))


class RunCheckpoints:
  """`<workdir>/checkpoints/last` (keep-last-N) and `.../best` (keep 1)."""

  def __init__(self, directory: str | pathlib.Path, keep: int):
    directory = pathlib.Path(directory).absolute()
    self.last = _manager(directory / 'last', keep)
    self.best = _manager(directory / 'best', 1)

  def save(self, step: int, state: Any, meta: dict, *, best: bool = False) -> None:
    manager = self.best if best else self.last
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)))

  def steps(self, which: str = 'last') -> list[int]:
    return sorted(getattr(self, which).all_steps())

  def restore(self, template: Any, which: str = 'last', step: int | None = None):
    """Restores `step` (default: newest that reads back) as (state, meta), or None.

    A checkpoint that fails to read is reported and skipped in favour of the
    one before it; nothing is deleted.
    """
    manager = getattr(self, which)
    candidates = [step] if step is not None else self.steps(which)[::-1]
    for s in candidates:
      try:
        restored = manager.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
      except Exception as err:  # orbax raises many types for a damaged step
        if step is not None:
          raise ValueError(f'checkpoint {which}/{s} in {manager.directory} cannot be '
                           f'read: {err}') from err
        logging.error('checkpoint %s/%d in %s cannot be read (%s); trying the one '
                      'before it.', which, s, manager.directory, err)
        continue
      return restored.state, restored.meta
    return None

  def wait(self) -> None:
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.last.close()
    self.best.close()
