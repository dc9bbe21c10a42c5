r"""Train (or resume) a Generalist run from an ml_collections config.

  python -m generalist_jax.main --config=configs/generalist_cifar10.py[:smoke] \
      --workdir=runs/generalist [--config.num_epochs=60 ...]

Starting the same command again resumes from the workdir's latest checkpoint.
A suite config (one with `runs`, e.g. configs/demo.py) trains each run in
<workdir>/<name>, evaluates them alike and prints a comparison (suite.py).
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from generalist_jax import config
from generalist_jax import parallel
from generalist_jax.run import cli
from generalist_jax.run import loop
from generalist_jax.run import process_flags
from generalist_jax.run import suite

# Float config fields also take a fraction: --config.experts.robust.attack.eps=8/255.
config_flags.register_flag_parser_for_type(float, config.FractionParser())
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, logs).')
_START_OVER = flags.DEFINE_boolean(
    'start_over', False, 'The workdir holds a run of another config: move it into '
    '<workdir>/superseded/<time>/ (kept) and train this config from step 0.')
_STOP_AT_STEP = flags.DEFINE_integer(
    'stop_at_step', None, 'Pause at this global step with a checkpoint there (a point to '
    'fork from with --config.init_from.*); the same command without it continues.')
flags.mark_flags_as_required(['config', 'workdir'])


def train():
  """Trains one run, or every run of a suite config, in --workdir."""
  # orbax logs every save at INFO; our own progress goes to the bar and stdout.
  logging.set_verbosity(logging.WARNING)
  process_flags.initialize_distributed()
  if suite.is_suite(_CONFIG.value):
    suite.run_suite(_CONFIG.value, _WORKDIR.value, start_over=_START_OVER.value)
    return
  results = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, start_over=_START_OVER.value,
                                    stop_at_step=_STOP_AT_STEP.value)
  for which, r in (results.items() if parallel.is_main_process() else ()):
    print(f"test ({which}, step {r['step']}): " +
          ', '.join(f"{n} {100 * m['clean_acc']:.2f}/{100 * m['robust_acc']:.2f}"
                    for n, m in r['learners'].items()) + ' (clean/robust %)')


if __name__ == '__main__':
  app.run(cli.flags_only(train))
