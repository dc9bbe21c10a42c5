"""A damaged latest checkpoint is reported, kept aside, and the run falls back to
the previous good one."""
import pytest

from generalist_jax.run import checkpoints
from generalist_jax.run import loop
from tests.run_helpers import EPOCHS
from tests.run_helpers import assert_same_state
from tests.run_helpers import final_state
from tests.tiny_config import tiny_config


def test_corrupt_latest_checkpoint_falls_back_and_is_kept(tmp_path, straight_run):
  npz, cache, expected = straight_run
  workdir = tmp_path / 'corrupt'
  config = tiny_config(npz, num_epochs=EPOCHS)
  config.eval.final_test = False
  loop.train_and_evaluate(config, str(workdir), stop_after_steps=6)
  latest = workdir / 'checkpoints' / 'last' / '6'
  for f in (latest / 'state').rglob('*'):
    if f.is_file() and f.stat().st_size > 0 and 'metadata' not in f.name:
      f.write_bytes(b'garbage')  # damage every data file
  loop.train_and_evaluate(config, str(workdir))
  quarantined = list((workdir / 'checkpoints' / 'unreadable').iterdir())
  assert [q.name.split('_')[:2] for q in quarantined] == [['last', '6']]
  assert_same_state(final_state(workdir), expected)


def test_checkpoints_are_closed_when_restoring_fails(tmp_path, tiny_npz, monkeypatch):
  closed = []
  real_close = checkpoints.RunCheckpoints.close
  monkeypatch.setattr(checkpoints.RunCheckpoints, 'close',
                      lambda self: closed.append(self.quarantine.parent) or real_close(self))

  def unreadable(*args, **kwargs):
    raise checkpoints.CheckpointMismatchError('a checkpoint of another model')

  monkeypatch.setattr(loop, '_restore', unreadable)
  workdir = tmp_path / 'w'
  with pytest.raises(checkpoints.CheckpointMismatchError, match='another model'):
    loop.train_and_evaluate(tiny_config(tiny_npz, num_epochs=EPOCHS), str(workdir))
  assert closed == [(workdir / 'checkpoints').absolute()]  # orbax's threads released, once
