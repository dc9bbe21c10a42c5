r"""One Markdown report comparing runs, ready to paste into a draft or an issue.

  python -m generalist_jax.report runs/demo/standard runs/demo/pgd_at runs/demo/generalist \
      [--out=report.md]

A directory without config.json whose sub-directories are runs (a suite's
workdir, e.g. runs/demo) stands for those runs (`evaluation/compare.py`).
"""
from absl import app
from absl import flags

from generalist_jax.evaluation import compare

_OUT = flags.DEFINE_string('out', 'report.md', 'the Markdown file to write')


def main(argv):
  """Writes the report of the run directories given as arguments.

  Args:
    argv: the program name, then one or more run directories (or a suite workdir).

  Raises:
    app.UsageError: no directory given.
  """
  if len(argv) < 2:
    raise app.UsageError('give one or more run directories (or a suite workdir)')
  print(f'wrote {compare.write_report(argv[1:], _OUT.value)}')


if __name__ == '__main__':
  app.run(main)
