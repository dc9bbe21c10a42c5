"""A non-finite loss stops the run with the expert and step named, and the last
good checkpoint stays untouched."""
import hashlib
import pathlib

import pytest

from generalist_jax.run import loop
from tests.tiny_config import tiny_config


def digest(directory: pathlib.Path) -> str:
  h = hashlib.sha256()
  for f in sorted(p for p in directory.rglob('*') if p.is_file()):
    h.update(str(f.relative_to(directory)).encode() + f.read_bytes())
  return h.hexdigest()


def test_exploding_expert_is_named_and_good_checkpoints_are_untouched(tmp_path, tiny_npz):
  config = tiny_config(tiny_npz)  # 5 steps per epoch
  config.eval.final_test = False
  # The natural expert's lr jumps to 1e30 at epoch 0.95 (step 5): it diverges only after
  # the interruption, in the same config (a changed config would be refused).
  optimizer = config.experts.natural.optimizer
  optimizer.lr_epochs, optimizer.lr_values = (0, 0.9, 0.95, 2), (0.01, 0.01, 1e30, 1e30)
  loop.train_and_evaluate(config, str(tmp_path / 'run'), stop_after_steps=4)
  checkpoints = tmp_path / 'run' / 'checkpoints'
  before = digest(checkpoints)
  with pytest.raises(
      loop.NonFiniteError, match=r"expert 'natural': \w+ is (nan|inf) in the log "
      r'interval ending at step 5'):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert digest(checkpoints) == before
