"""Snapshot of every shipped config under every config arg in use.

  python tests/config_snapshot.py            # rewrite tests/data/config_snapshot.json
  python tests/config_snapshot.py --check    # compare, print the differing fields

`tests/test_config_snapshot.py` runs the check, so changing a number of a config file
(or of the base / presets under it) is a deliberate snapshot update, not an accident:
a resumed run compares its saved config.json with the one its command builds.

What is stored: per (config file, arg) the sha256 of
`get_config(arg).to_json_best_effort(sort_keys=True)` (byte identity); to name the
fields when that changes, every config's arg-None fields in full (one line each: the
file also reads as a table of every number of every config) and, for
generalist_cifar10 only, the fields each arg changes (the presets act alike on every
config; storing them for every file would only make the snapshot bigger).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, 'configs')
SNAPSHOT = os.path.join(ROOT, 'tests', 'data', 'config_snapshot.json')

# The config args of README, docs/, experiments/*/run.sh and tests/, plus each switch alone.
RUN_ARGS = (
    None,
    'smoke',
    'reference_clock',
    'epochs=2',
    'epochs=5',
    'epochs=12',
    'attack_steps=5',
    'smoke,attack_steps=2,test_size=500',
    'train_size=10000',
    'test_size=0',
    'smoke,epochs=3',
    'smoke,epochs=3,attack_steps=5',
    'smoke,epochs=5,attack_steps=5',
    'smoke,epochs=10',
    'smoke,epochs=10,train_size=10000',
    'smoke,epochs=10,train_size=10000,test_size=2000',
    'smoke,epochs=2,train_size=2000,test_size=500',
    'smoke,epochs=10,train_size=5000,test_size=500,attack_steps=3',
    'smoke,epochs=10,train_size=5000,test_size=1000,attack_steps=5',
    'smoke,epochs=20,train_size=10000,test_size=0,attack_steps=5',
    'reference_clock,attack_steps=5',
    'reference_clock,train_size=10000,test_size=0',
)
SUITE_ARGS = (None, 'epochs=2,train_size=128,test_size=64', 'epochs=5', 'train_size=500',
              'test_size=100')


def config_files():
  return sorted(
      f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py') and not f.startswith('_'))


def load(name, arg):
  """As absl's config_flags does: the file as a fresh module, then get_config(arg)."""
  spec = importlib.util.spec_from_file_location(f'_snapshot_{name}',
                                                os.path.join(CONFIG_DIR, name + '.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def flatten(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) and v:
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def dumps(name):
  """{arg: sorted-keys JSON text} for every arg variant of the file."""
  is_suite = 'runs' in load(name, None)
  return {
      str(arg): load(name, arg).to_json_best_effort(sort_keys=True)
      for arg in (SUITE_ARGS if is_suite else RUN_ARGS)
  }


FIELDS_FOR_ARGS = 'generalist_cifar10'


def snapshot():
  out = {}
  for name in config_files():
    texts = dumps(name)
    base = flatten(json.loads(texts['None']))
    entry = dict(
        fields=base,
        sha256={arg: hashlib.sha256(text.encode()).hexdigest() for arg, text in texts.items()})
    if name == FIELDS_FOR_ARGS:
      entry['arg_fields'] = {}
      for arg, text in texts.items():
        flat = flatten(json.loads(text))
        entry['arg_fields'][arg] = dict(
            changed={k: v for k, v in flat.items() if k not in base or base[k] != v},
            missing=sorted(set(base) - set(flat)))
    out[name] = entry
  return out


def _field_lines(where, saved, current):
  keys = [
      k for k in sorted(set(saved) | set(current))
      if saved.get(k, '<absent>') != current.get(k, '<absent>')
  ]
  return [
      f'{where}: {k}: snapshot {saved.get(k, "<absent>")!r}, now '
      f'{current.get(k, "<absent>")!r}' for k in keys
  ]


def _with_arg(base, arg_fields):
  out = {k: v for k, v in base.items() if k not in arg_fields['missing']}
  out.update(arg_fields['changed'])
  return out


def differences(saved, current):
  """Lines naming every (file, arg[, field]) that differs; [] when identical."""
  lines = []
  for name in sorted(set(saved) | set(current)):
    if name not in saved or name not in current:
      lines.append(f'configs/{name}.py: only in the {"snapshot" if name in saved else "tree"}')
      continue
    s, c = saved[name], current[name]
    for arg in sorted(set(s['sha256']) | set(c['sha256'])):
      where = f'configs/{name}.py:{arg}'
      if arg not in s['sha256'] or arg not in c['sha256']:
        lines.append(f'{where}: arg only in the {"snapshot" if arg in s["sha256"] else "tree"}')
      elif s['sha256'][arg] != c['sha256'][arg]:
        named = (_field_lines(where, s['fields'], c['fields']) if arg == 'None' else _field_lines(
            where, _with_arg(s['fields'], s['arg_fields'][arg]),
            _with_arg(c['fields'], c['arg_fields'][arg])) if 'arg_fields' in s else [])
        lines += named or [
            f'{where}: the JSON differs from the snapshot (see '
            f'configs/{FIELDS_FOR_ARGS}.py:{arg} for the fields)'
        ]
  return lines


def _dump(tree):
  """Indented JSON with every list of scalars on one line (one line per field)."""
  text = json.dumps(tree, indent=1, sort_keys=True)
  return re.sub(r'\[[^\[\]{}]*\]', lambda m: json.dumps(json.loads(m.group(0))), text) + '\n'


def main(argv):
  current = snapshot()
  if '--check' in argv:
    with open(SNAPSHOT) as f:
      lines = differences(json.load(f), current)
    print('\n'.join(lines) if lines else 'identical: every config, every arg')
    return 1 if lines else 0
  os.makedirs(os.path.dirname(SNAPSHOT), exist_ok=True)
  with open(SNAPSHOT, 'w') as f:
    f.write(_dump(current))
  print(f'wrote {SNAPSHOT}: {sum(len(e["sha256"]) for e in current.values())} (config, arg) pairs')
  return 0


if __name__ == '__main__':
  sys.path.insert(0, ROOT)
  sys.exit(main(sys.argv[1:]))
