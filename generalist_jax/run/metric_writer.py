"""Run logs: one JSON object per logged step in `metrics.jsonl`, and TensorBoard
event files (tensorboardX: no TensorFlow needed at train time)."""
from __future__ import annotations

import json
import math
import pathlib

import tensorboardX

from generalist_jax.run import files


def _truncate_after(path: pathlib.Path, step: int) -> None:
  """On resume, drop records from steps the restored checkpoint never saw."""
  if not path.exists():
    return
  kept = [
      line for line in path.read_text().splitlines()
      if line.strip() and json.loads(line).get('step', 0) <= step
  ]
  files.write_text_atomic(path, ''.join(line + '\n' for line in kept))


class MetricWriter:
  """Process 0's writer: metrics.jsonl and TensorBoard events, truncated on resume.

  Args:
    workdir: the run directory (metrics.jsonl, tensorboard/).
    start_step: the step resumed from: records of later steps are dropped from
      metrics.jsonl and hidden in TensorBoard; 0 for a fresh run.
  """

  def __init__(self, workdir: str | pathlib.Path, start_step: int = 0):
    workdir = pathlib.Path(workdir)
    self.jsonl_path = workdir / 'metrics.jsonl'
    _truncate_after(self.jsonl_path, start_step)
    # purge_step hides TensorBoard events the resumed run will write again.
    self.tb = tensorboardX.SummaryWriter(str(workdir / 'tensorboard'), purge_step=start_step or
                                         None)

  def write(self, step: int, scalars: dict) -> None:
    """Appends one JSON line {'step', **scalars} and the TensorBoard scalars.

    Args:
      step: the optimizer step the scalars belong to.
      scalars: name -> number (cast to float; NaN and inf are written as null
        in the JSON line).
    """
    record = {'step': int(step)}
    record.update({k: float(v) for k, v in scalars.items()})
    with self.jsonl_path.open('a') as f:
      # NaN/inf are written as null so the file stays valid JSON.
      f.write(
          json.dumps({
              k: (v if not isinstance(v, float) or math.isfinite(v) else None)
              for k, v in record.items()
          }) + '\n')
    for k, v in scalars.items():
      self.tb.add_scalar(k, float(v), int(step))
    self.tb.flush()

  def close(self) -> None:
    """Flushes and closes the event file."""
    self.tb.close()


class NullWriter:
  """What processes other than 0 log: nothing."""

  def write(self, step: int, scalars: dict) -> None:
    """Writes nothing (`MetricWriter.write`'s signature).

    Args:
      step, scalars: ignored.
    """
    del step, scalars

  def close(self) -> None:
    """Nothing to close."""
