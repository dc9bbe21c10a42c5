"""Exporting a run's learner to PyTorch: `out` (a state_dict of the
`models.torch_models` twin) and `out.json` (how to rebuild it, where it came from)."""
from __future__ import annotations

import json
import pathlib

from generalist_jax.method import step as step_lib
from generalist_jax.models import torch_convert
from generalist_jax.models import torch_models
from generalist_jax.run import restore


def export(workdir: str, checkpoint: str, learner: str, out: str) -> dict:
  """Writes `out` and `out.json` for one learner of a run's checkpoint.

  Args:
    workdir: the run directory.
    checkpoint: 'last', 'best' or a step number (`restore.restore_run`).
    learner: an expert, '<expert>_ema' or 'global'.
    out: the state_dict's path (its folder is created).

  Returns:
    The spec written to `out.json` (model config, num_classes, mean, std,
    image_shape, and where it came from), what `torch_convert.load` reads.

  Raises:
    ValueError: an unknown learner, a model without a twin, or no such
      checkpoint.
  """
  import torch  # pylint: disable=g-import-not-at-top
  config, dataset, setup, state, step = restore.restore_run(pathlib.Path(workdir), checkpoint)
  learners = step_lib.learners(state, setup)
  if learner not in learners:
    raise ValueError(f'--learner={learner!r}; this run has {sorted(learners)}')
  info = dataset.info
  model = torch_models.create_model(config.model, info.num_classes, info.mean, info.std,
                                    info.image_shape)
  sd = torch_convert.state_dict(learners[learner], model)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  torch.save(sd, out)
  spec = {
      'model': config.model.to_dict(), 'num_classes': int(info.num_classes),
      'mean': [float(m) for m in info.mean], 'std': [float(s) for s in info.std],
      'image_shape': [int(d) for d in info.image_shape], 'input': 'NCHW float in [0, 1]',
      'workdir': str(pathlib.Path(workdir).absolute()), 'checkpoint': checkpoint, 'step': step,
      'learner': learner, 'torch_class': type(model).__name__
  }
  pathlib.Path(f'{out}.json').write_text(json.dumps(spec, indent=2))
  return spec
