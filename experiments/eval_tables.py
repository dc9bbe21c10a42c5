"""Shared by the collect.py scripts: read `generalist_jax.evaluate` reports and
training test tables of finished rows, write results.json and results.md."""
import json
import pathlib


def read_json(path: pathlib.Path):
  return json.loads(path.read_text()) if path.exists() else None


def percent(value) -> str:
  return '-' if value is None else f'{100 * value:.2f}'


def write_results(here: pathlib.Path, out: dict, columns: list, intro: str) -> str:
  """columns: (key in each row, header). Rows lacking a finished run show '-'."""
  (here / 'results.json').write_text(json.dumps(out, indent=2))
  lines = ['| ' + ' | '.join(['row'] + [h for _, h in columns]) + ' |',
           '|' + '---|' * (len(columns) + 1)]
  for r in out['rows']:
    lines.append('| ' + ' | '.join([r['row']] + [percent(r.get(k)) for k, _ in columns]) + ' |')
  table = '\n'.join(lines)
  (here / 'results.md').write_text(intro + '\n\n' + table + '\n')
  return table


def times(runs: pathlib.Path) -> list:
  path = runs / 'times.jsonl'
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
