"""Orbax checkpoints of a run: the last N, plus the best on validation.

A checkpoint holds everything that decides the future of a run: experts, EMAs,
global learner, optimizer states, step (which is also the data position: batch
k is a pure function of (seed, k)) and the PRNG key, as one pytree ('state'),
and a small JSON item ('meta': best-so-far, epoch, data position).
"""
from __future__ import annotations

import logging
import pathlib
import time
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A checkpoint is readable but belongs to another config."""


def _manager(directory: pathlib.Path, keep: int, read_only: bool) -> ocp.CheckpointManager:
  # Orbax writes each step into a temporary folder and renames it when complete,
  # and deletes old steps only after the new one is finalised. Temporary folders
  # left by a kill never held a complete checkpoint: they are cleaned at start.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                         cleanup_tmp_directories=not read_only, read_only=read_only)
  # Handlers named up front, so a fresh manager can read a checkpoint's metadata.
  return ocp.CheckpointManager(
      directory, options=options,
      item_handlers={'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})


class RunCheckpoints:
  """`<workdir>/checkpoints/last` (keep-last-N) and `.../best` (keep 1)."""

  def __init__(self, directory: str | pathlib.Path, keep: int, read_only: bool = False):
    """Opens (or, unless read_only, creates) the two checkpoint folders.

    Args:
      directory: `<workdir>/checkpoints`.
      keep: how many 'last' checkpoints to keep (`config.checkpoint.keep`).
      read_only: for readers beside a live run (evaluation): nothing is cleaned,
        moved or written.
    """
    directory = pathlib.Path(directory).absolute()
    self.read_only = read_only
    self.quarantine = directory / 'unreadable'
    self.last = _manager(directory / 'last', keep, read_only)
    self.best = _manager(directory / 'best', 1, read_only)

  def save(self, step: int, state: Any, meta: dict, *, best: bool = False) -> None:
    """Starts an async save of `state` and `meta` at `step` (into best/ if `best`).

    A step already saved there is kept, not overwritten (a resumed run redoing
    it saves the same state).

    Args:
      step: the optimizer step, the checkpoint's name.
      state: the TrainState (any pytree of arrays).
      meta: a small JSON-able dict (best-so-far, epoch, data position).
      best: save into best/ (keep 1) instead of last/.
    """
    manager = self.best if best else self.last
    if step in manager.all_steps():
      return  # a resumed run redoing a step: same state (determinism), keep the first
    manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      meta=ocp.args.JsonSave(meta)))

  def steps(self, which: str = 'last') -> list[int]:
    """Saved steps of one of the two managers.

    Args:
      which: 'last' or 'best'.

    Returns:
      The saved steps, ascending.
    """
    return sorted(getattr(self, which).all_steps())

  def restore(self, template: Any, which: str = 'last', step: int | None = None):
    """Restores `step` (default: newest that reads back) as (state, meta), or None.

    A checkpoint that fails to read is reported, moved aside into
    `checkpoints/unreadable/` (kept for inspection, never deleted) and skipped in
    favour of the one before it; read-only, it is only skipped.

    Args:
      template: what to restore into (`restore.state_template`).
      which: 'last' or 'best'.
      step: the step to restore; None tries the newest first.

    Returns:
      (state, meta), or None when no checkpoint reads back.

    Raises:
      CheckpointMismatchError: a readable checkpoint holds arrays of other shapes
        than `template` (another config); it is left in place.
      ValueError: the given `step` cannot be read.
    """
    manager = getattr(self, which)
    candidates = [step] if step is not None else self.steps(which)[::-1]
    for s in candidates:
      self._check_matches(manager, which, s, template)
      try:
        restored = manager.restore(
            s, args=ocp.args.Composite(state=ocp.args.StandardRestore(template),
                                       meta=ocp.args.JsonRestore()))
      except Exception as err:  # orbax raises many types for a damaged step
        if step is not None:
          raise ValueError(f'checkpoint {which}/{s} in {manager.directory} cannot be '
                           f'read: {err}') from err
        if self.read_only:
          logging.error('checkpoint %s/%d cannot be read (%s); trying the one before it.', which, s,
                        err)
          continue
        moved = self._quarantine(manager, which, s)
        logging.error(
            'checkpoint %s/%d cannot be read (%s: %s); moved it to %s and '
            'fell back to the one before it.', which, s,
            type(err).__name__, err, moved)
        print(f'WARNING: checkpoint {which}/{s} is unreadable ({type(err).__name__}); '
              f'moved to {moved}, falling back to the previous one.')
        continue
      return restored.state, restored.meta
    return None

  def _check_matches(self, manager, which: str, step: int, template: Any) -> None:
    """Raises CheckpointMismatchError when a readable checkpoint holds arrays of other
    shapes than `template` (another model or config, not damage: it stays in place).
    Unreadable metadata is left to the restore below (damage: quarantined)."""
    try:
      saved = manager.item_metadata(step)['state'].tree
    except Exception:  # pylint: disable=broad-except  (damaged: the restore reports it)
      return
    shapes = lambda tree: sorted(
        (tuple(x.shape), str(x.dtype))
        for x in jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, 'shape')))
    if shapes(saved) != shapes(template):
      raise CheckpointMismatchError(
          f'checkpoint {which}/{step} in {manager.directory} holds a state of other shapes '
          'than this config builds (another model, width or number of experts?). It is '
          'not damaged and was left in place; resume it with its own config, or use '
          'another workdir.')

  def _quarantine(self, manager, which: str, step: int) -> pathlib.Path:
    """Moves an unreadable step out of orbax's sight so the run can redo it."""
    self.quarantine.mkdir(parents=True, exist_ok=True)
    target = self.quarantine / f'{which}_{step}_{time.strftime("%Y%m%d-%H%M%S")}'
    (pathlib.Path(manager.directory) / str(step)).rename(target)
    manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until every save under way is on disk."""
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    """Releases orbax's threads (after `wait`)."""
    self.last.close()
    self.best.close()
