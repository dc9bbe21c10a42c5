"""One writer per workdir (issue 32; deepinv#525): a second training started on a workdir
in use is refused before it writes anything; a lock left by a dead run on this host
is taken over with a message, one from another host is refused with how to remove it;
the lock is released however the run ends."""
import fcntl
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from generalist_jax.run import loop
from generalist_jax.run import run_config
from tests.test_config import ROOT
from tests.tiny_config import tiny_config

HOLD = '''import sys, time
from generalist_jax.run import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print('held', flush=True)
  time.sleep(600)
'''


def _record(pid: int, host: str | None = None) -> str:
  return json.dumps(
      {'pid': pid, 'host': host or socket.gethostname(), 'started': '2025-01-01 00:00:00 +0000'})


def _config(npz):
  config = tiny_config(npz)
  config.eval.final_test = False
  return config


def test_a_second_training_on_a_workdir_in_use_is_refused_before_it_writes(tmp_path, tiny_npz):
  """Fault kind: two trainings on one workdir both started, and the workdir ended mixed."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with open(workdir / '.lock', 'w') as held:  # a running training holds it so
    held.write(_record(os.getpid()))
    held.flush()
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(RuntimeError, match=f'in use by pid {os.getpid()} on host .*another '
                       '--workdir'):
      loop.train_and_evaluate(_config(tiny_npz), str(workdir), stop_after_steps=1)
    assert sorted(p.name for p in workdir.iterdir()) == ['.lock']  # not even config.json
    assert json.loads((workdir / '.lock').read_text())['pid'] == os.getpid()


def test_a_killed_holder_frees_the_workdir_for_the_next_run(tmp_path, capsys):
  from generalist_jax.run import workdir_lock  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'run'
  workdir.mkdir()
  holder = subprocess.Popen([sys.executable, '-c', HOLD, str(workdir)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f'in use by pid {holder.pid} '):
      with workdir_lock.hold(workdir):
        pass
  finally:
    holder.kill()  # SIGKILL: no chance to release
    holder.wait()
  with workdir_lock.hold(workdir):
    assert json.loads((workdir / '.lock').read_text())['pid'] == os.getpid()
  assert re.search(f'taking over the lock of pid {holder.pid} .*no longer running',
                   capsys.readouterr().out)
  assert (workdir / '.lock').read_text() == ''  # released


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(tmp_path, tiny_npz, capsys):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / '.lock').write_text(_record(dead.pid))
  loop.train_and_evaluate(_config(tiny_npz), str(workdir), stop_after_steps=1)
  assert re.search(f'taking over the lock of pid {dead.pid} .*no longer running',
                   capsys.readouterr().out)
  assert (workdir / '.lock').read_text() == ''  # released at the end
  assert (workdir / 'config.json').exists()


def test_a_lock_left_by_another_host_is_refused_with_how_to_remove_it(tmp_path, tiny_npz):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  record = _record(12345, host='elsewhere')
  (workdir / '.lock').write_text(record)
  with pytest.raises(
      RuntimeError, match=r"host 'elsewhere'.*If that run is over .*remove "
      r'.*\.lock and start again'):
    loop.train_and_evaluate(_config(tiny_npz), str(workdir), stop_after_steps=1)
  assert sorted(p.name for p in workdir.iterdir()) == ['.lock']
  assert (workdir / '.lock').read_text() == record  # left as it was


def test_the_lock_is_released_when_the_run_fails(tmp_path):
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match='npz file not found'):  # read after the lock is taken
    loop.train_and_evaluate(_config(tmp_path / 'missing.npz'), str(workdir))
  assert (workdir / '.lock').read_text() == ''


def test_start_over_moves_the_old_run_but_not_the_held_lock(tmp_path):
  """The lock stays where the next run looks for it: moved into superseded/ it would let
  a second training take a fresh one beside the first."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / '.lock').write_text(_record(os.getpid()))
  (workdir / 'metrics.jsonl').write_text('{}\n')
  moved = run_config.start_over(workdir)
  assert (moved / 'metrics.jsonl').exists() and not (moved / '.lock').exists()
  assert sorted(p.name for p in workdir.iterdir()) == ['.lock', 'superseded']
