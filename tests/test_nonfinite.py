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
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  loop.train_and_evaluate(config, str(tmp_path / 'run'), stop_after_steps=4)
  checkpoints = tmp_path / 'run' / 'checkpoints'
  before = digest(checkpoints)
  config.experts.natural.optimizer.lr_values = (1e30,) * 4   # diverges after resuming
  with pytest.raises(loop.NonFiniteError, match=r"expert 'natural': \w+ is (nan|inf) in the log interval ending at step 5"):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert digest(checkpoints) == before
