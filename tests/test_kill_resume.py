"""SIGKILL at random moments, checkpoint writes included: the restarted run ends
bit-for-bit equal to an uninterrupted one."""
import random
import signal
import time

from tests.run_helpers import assert_same_state
from tests.run_helpers import cli
from tests.run_helpers import final_state
from tests.run_helpers import progress


def test_five_sigkills_then_resume_equals_uninterrupted(tmp_path, straight_run):
  npz, cache, expected = straight_run
  workdir = tmp_path / 'killed'
  rng = random.Random(0)
  kills = []
  for kill in range(6):
    proc = cli(workdir, npz, cache)
    seen, _ = progress(workdir)
    deadline = time.time() + 300
    # Wait for new work (or, on odd kills, a checkpoint being written), then kill -9.
    while proc.poll() is None and time.time() < deadline:
      lines, writing = progress(workdir)
      if kill % 2 == 1 and writing:
        break  # mid checkpoint write
      if kill % 2 == 0 and lines > seen:
        time.sleep(rng.uniform(0, 0.4))  # anywhere in the next steps
        break
      time.sleep(0.005)
    if proc.poll() is not None:
      break  # finished before we could kill it
    kills.append({'during_write': progress(workdir)[1]})
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert len(kills) >= 5, kills
  assert any(k['during_write'] for k in kills), kills  # at least one mid-write
  proc = cli(workdir, npz, cache)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  assert_same_state(final_state(workdir), expected)
