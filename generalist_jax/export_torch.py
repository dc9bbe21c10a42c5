r"""Export a trained learner to a PyTorch state_dict (needs the `torch` extra).

  python -m generalist_jax.export_torch --workdir=RUN --checkpoint=best \
      --learner=global --out=model.pt

writes `model.pt` (a plain state_dict for the `models.torch_models` twin) and
`model.pt.json` (how to build that twin: model config, classes, mean/std, image
shape, where the weights came from). To use it, e.g. with the official
AutoAttack or RobustBench:

  from generalist_jax.models import torch_convert
  model = torch_convert.load('model.pt')   # inputs NCHW in [0, 1]
"""
from absl import app
from absl import flags

from generalist_jax.run import cli
from generalist_jax.run import export

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', 'best', "'last', 'best' or a step")
_LEARNER = flags.DEFINE_string('learner', 'global', "'global' or an expert's name")
_OUT = flags.DEFINE_string('out', None, 'state_dict path, e.g. model.pt')
flags.mark_flags_as_required(['workdir', 'out'])


def export_learner():
  """Exports one learner of one run (`run.export.export`)."""
  spec = export.export(_WORKDIR.value, _CHECKPOINT.value, _LEARNER.value, _OUT.value)
  print(f"exported {spec['learner']} of {_WORKDIR.value} ({spec['checkpoint']}, step "
        f"{spec['step']}) as {spec['torch_class']} -> {_OUT.value} (+ .json)")


if __name__ == '__main__':
  app.run(cli.flags_only(export_learner, resident_cpu_buffers=False))
