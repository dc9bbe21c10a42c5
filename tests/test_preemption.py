"""SIGTERM (preemption): checkpoint, clean exit within a bounded time, exact resume."""
import signal
import time

from tests.run_helpers import assert_same_state
from tests.run_helpers import cli
from tests.run_helpers import final_state
from tests.run_helpers import progress


def test_sigterm_saves_and_exits_cleanly(tmp_path, straight_run):
  npz, cache, expected = straight_run
  workdir = tmp_path / 'preempted'
  proc = cli(workdir, npz, cache)
  while progress(workdir)[0] < 2 and proc.poll() is None:
    time.sleep(0.01)
  sent = time.time()
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == 0, out
  assert time.time() - sent < 30  # bounded
  assert 'SIGTERM: saved step' in out
  saved = int(out.split('SIGTERM: saved step ')[1].split(';')[0])
  assert saved < 20 and (workdir / 'checkpoints' / 'last' / str(saved)).exists()
  proc = cli(workdir, npz, cache)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0 and f'from step {saved}' in out, out
  assert_same_state(final_state(workdir), expected)
