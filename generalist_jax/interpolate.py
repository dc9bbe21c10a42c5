r"""Accuracy along the straight line between two learners of a run.

  python -m generalist_jax.interpolate --workdir=RUN --a=natural_ema --b=robust_ema \
      [--points=11] [--checkpoint=last] [--split=test|val] [--n_ex=1000]

Writes <workdir>/interpolation/<a>_to_<b>_<checkpoint>.json (alphas, clean and robust
accuracy, the barrier: how far the path dips below its worse end) and a PNG.
(The work is `run.interpolate.interpolate`.)
"""
from absl import app
from absl import flags

from generalist_jax.run import cli
from generalist_jax.run import interpolate

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
_A = flags.DEFINE_string('a', 'natural_ema', 'learner at alpha = 0')
_B = flags.DEFINE_string('b', 'robust_ema', 'learner at alpha = 1')
_POINTS = flags.DEFINE_integer('points', 11, 'evenly spaced alphas, ends included')
_CHECKPOINT = flags.DEFINE_string('checkpoint', 'last', "'last', 'best' or a step")
_SPLIT = flags.DEFINE_enum('split', 'test', ['test', 'val'], 'which split to measure on')
_N_EX = flags.DEFINE_integer('n_ex', 1000, 'test examples (a fixed random subset)')
flags.mark_flag_as_required('workdir')


def measure_path():
  """Measures the path and prints it (`run.interpolate.interpolate`)."""
  r = interpolate.interpolate(_WORKDIR.value, _A.value, _B.value, checkpoint=_CHECKPOINT.value,
                              points=_POINTS.value, split=_SPLIT.value, n_ex=_N_EX.value)
  for alpha, clean, robust in zip(r['alpha'], r['clean_acc'], r['robust_acc']):
    print(f'alpha {alpha:.2f}: clean {100 * clean:.2f}%, robust {100 * robust:.2f}%')
  print(f"barrier (dip below the worse end): clean {100 * r['barrier']['clean_acc']:.2f}, "
        f"robust {100 * r['barrier']['robust_acc']:.2f} points")


if __name__ == '__main__':
  app.run(cli.flags_only(measure_path))
