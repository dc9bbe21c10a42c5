"""A workdir belongs to its config: another config is refused before any work, a
readable checkpoint of another config is never taken for a damaged one, and
starting over moves the old run aside."""
import json
import pathlib

import pytest

from generalist_jax.run import checkpoints
from generalist_jax.run import files
from generalist_jax.run import loop
from generalist_jax.run import run_config
from tests.tiny_config import tiny_config


def _files(workdir: pathlib.Path) -> dict:
  return {
      str(p.relative_to(workdir)): p.stat().st_size
      for p in sorted(workdir.rglob('*'))
      if p.is_file()
  }


@pytest.fixture()
def trained(tmp_path, tiny_npz):
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  loop.train_and_evaluate(config, str(tmp_path / 'run'))
  return config, tmp_path / 'run'


def test_a_changed_config_is_refused_naming_the_fields_and_nothing_moves(trained):
  config, workdir = trained
  before = _files(workdir)
  changed = tiny_config(config.data.path)
  changed.eval.final_test = False
  changed.model.width = 0.25
  changed.experts.robust.attack.steps = 3
  with pytest.raises(run_config.ConfigChangedError) as err:
    loop.train_and_evaluate(changed, str(workdir))
  message = str(err.value)
  assert 'model.width: 0.125 -> 0.25' in message
  assert 'experts.robust.attack.steps: 2 -> 3' in message and '--start_over' in message
  assert _files(workdir) == before  # nothing moved, nothing written
  assert not (workdir / 'checkpoints' / 'unreadable').exists()


def test_operational_changes_resume_and_start_over_keeps_the_old_run(trained):
  config, workdir = trained
  quiet = tiny_config(config.data.path)
  quiet.eval.final_test = False
  quiet.log_every_steps = 5
  loop.train_and_evaluate(quiet, str(workdir))  # a finished run: nothing to redo
  assert (workdir / 'config.previous.json').exists()
  best_before = sorted(p.name for p in (workdir / 'checkpoints' / 'best').iterdir())
  wider = tiny_config(config.data.path)
  wider.eval.final_test = False
  wider.model.width = 0.25
  loop.train_and_evaluate(wider, str(workdir), start_over=True)
  old = next((workdir / 'superseded').iterdir())
  assert sorted(p.name for p in (old / 'checkpoints' / 'best').iterdir()) == best_before
  assert '"width": 0.25' in (workdir / 'config.json').read_text()


def test_a_checkpoint_of_another_shape_is_not_quarantined(trained):
  config, workdir = trained
  (workdir / 'config.json').unlink()  # no config to compare against
  wider = tiny_config(config.data.path)
  wider.model.width = 0.25
  with pytest.raises(checkpoints.CheckpointMismatchError, match='not damaged'):
    loop.train_and_evaluate(wider, str(workdir))
  assert not (workdir / 'checkpoints' / 'unreadable').exists()
  assert any(p.name.isdigit() for p in (workdir / 'checkpoints' / 'best').iterdir())


def test_every_process_reads_the_saved_config_before_process_0_replaces_it(tmp_path, monkeypatch):
  """With several processes, process 0 moves or rewrites config.json only after all
  have read it (a barrier), so none reads a half-written or a moved file."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  old = tiny_config('old.npz')
  (workdir / 'config.json').write_text(old.to_json_best_effort(indent=2, sort_keys=True))
  seen_at_barrier = []
  monkeypatch.setattr(run_config.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(
      run_config.multihost_utils, 'sync_global_devices', lambda name: seen_at_barrier.append(
          (name, sorted(p.name for p in workdir.iterdir()), (workdir / 'config.json').read_text())))
  new = tiny_config('new.npz')  # an operational change: the old config is kept aside
  run_config.check_and_write(new, workdir)
  assert seen_at_barrier == [('config_read', ['config.json'],
                              old.to_json_best_effort(indent=2, sort_keys=True))]
  assert (workdir / 'config.previous.json').read_text() == seen_at_barrier[0][2]
  assert (workdir / 'config.json').read_text() == new.to_json_best_effort(indent=2, sort_keys=True)
  assert sorted(p.name for p in workdir.iterdir()) == ['config.json', 'config.previous.json']


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('old\n')

  def failing_replace(src, dst):
    raise OSError('disk full')

  monkeypatch.setattr(files.os, 'replace', failing_replace)
  with pytest.raises(OSError, match='disk full'):
    files.write_text_atomic(path, 'new\n')
  assert path.read_text() == 'old\n'
  assert [p.name for p in tmp_path.iterdir()] == ['metrics.jsonl']


def test_before_the_first_checkpoint_every_process_uses_the_datas_own_constants(tmp_path):
  """A data_info.json left by a run that saved nothing (then the data changed) is
  rewritten by process 0; the others must not read it meanwhile: all use the data's."""
  from generalist_jax import data as data_lib
  from generalist_jax.run import restore
  old = data_lib.DatasetInfo(num_classes=10, image_shape=(8, 8, 3), mean=(0.5,) * 3,
                             std=(0.25,) * 3)
  now = data_lib.DatasetInfo(num_classes=5, image_shape=(8, 8, 3), mean=(0.4,) * 3, std=(0.2,) * 3)
  restore.run_data_info(tmp_path, old, write=True)
  assert restore.run_data_info(tmp_path, now, write=False) == now  # process 1
  assert restore.run_data_info(tmp_path, now, write=True) == now  # process 0 rewrites
  assert json.loads((tmp_path / restore.DATA_INFO).read_text())['num_classes'] == 5
