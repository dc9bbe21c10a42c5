"""Shared by the collect.py scripts: read `generalist_jax.evaluate` reports and
training test tables of finished rows, write results.json and results.md."""
import json
import pathlib


def read_json(path: pathlib.Path):
  return json.loads(path.read_text()) if path.exists() else None


def percent(value) -> str:
  return '-' if value is None else f'{100 * value:.2f}'


def run_facts(run: pathlib.Path) -> dict | None:
  """What a row was trained on, read from its config.json (None if it has not run)."""
  config = read_json(run / 'config.json')
  if config is None:
    return None
  attacks = set()
  for expert in config['experts'].values():
    for attack in [expert['attack'], *expert.get('norm_attacks', {}).values()]:
      attacks.add(attack['steps'])
  return {
      'model': f"{config['model']['name']} width {config['model']['width']}",
      'train_size': config['data']['train_size'], 'val_size': config['data']['val_size'],
      'num_epochs': config['num_epochs'], 'batch_size': config['batch_size'],
      'seed': config['seed'], 'train_attack_steps': sorted(attacks)
  }


def shared_facts(runs: pathlib.Path, names: list) -> tuple[dict, list]:
  """The facts every finished row shares, and 'name: field differs' for the rest."""
  facts = {n: f for n in names if (f := run_facts(runs / n)) is not None}
  if not facts:
    return {}, []
  first = next(iter(facts.values()))
  differs = [
      f'{n}: {k} is {f[k]} (other rows {first[k]})' for n, f in facts.items() for k in first
      if k != 'train_attack_steps' and f[k] != first[k]
  ]
  return first, differs


def write_results(here: pathlib.Path, out: dict, columns: list, intro: str,
                  stem: str = 'results') -> str:
  """columns: (key in each row, header). Rows lacking a finished run show '-'."""
  (here / f'{stem}.json').write_text(json.dumps(out, indent=2))
  lines = [
      '| ' + ' | '.join(['row'] + [h for _, h in columns]) + ' |', '|' + '---|' * (len(columns) + 1)
  ]
  for r in out['rows']:
    lines.append('| ' + ' | '.join([r['row']] + [percent(r.get(k)) for k, _ in columns]) + ' |')
  table = '\n'.join(lines)
  (here / f'{stem}.md').write_text(intro + '\n\n' + table + '\n')
  return table


def times(runs: pathlib.Path) -> list:
  path = runs / 'times.jsonl'
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
