"""The one Markdown table writer of every report (evaluation, training tests,
suites, run comparisons)."""
from __future__ import annotations

from typing import Callable, Sequence


def cell(value, digits: int = 1) -> str:
  """A float with `digits` decimals, None as '-', anything else as str().

  Args:
    value: any value.
    digits: decimals of a float.
  """
  if isinstance(value, float):
    return f'{value:.{digits}f}'
  return '-' if value is None else str(value)


def percent(value, digits: int = 2) -> str:
  """A fraction in [0, 1] as a percentage; None or NaN as '-'.

  Args:
    value: a fraction, None or NaN.
    digits: decimals.
  """
  if value is None or value != value:
    return '-'
  return f'{100 * value:.{digits}f}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence],
                   fmt: Callable[[object], str] = str) -> list[str]:
  """The lines of a Markdown table; every cell goes through `fmt`.

  Args:
    header: the column names (not formatted).
    rows: rows of cells, each as long as `header`.
    fmt: cell -> string, e.g. `percent` or `cell`.

  Returns:
    The header line, the separator, then one line per row.
  """
  return (['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] +
          ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows])
