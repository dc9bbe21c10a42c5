"""The package's layout is its architecture: sub-packages with dependencies that
point one way, no import cycles, small files, short functions, explicit keyword
parameters."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / 'generalist_jax'

# Lower layers never import higher ones. Same-layer packages may not import each
# other either, except where listed in ALLOWED_SIDEWAYS.
LAYERS = [
    {'host_memory'},
    {'parallel', 'attacks', 'models', 'data'},
    {'method'},
    {'evaluation'},
    {'config'},
    {'run'},
    {'main', 'evaluate', 'report', 'export_torch', 'prepare_data', 'interpolate'},  # CLIs
]
ALLOWED_SIDEWAYS = set()
MAX_LINES = 400
MAX_FUNCTION_LINES = 60
# Functions allowed to be longer, each with its reason: (path under generalist_jax/,
# name) -> why. Empty: every function fits.
LONG_FUNCTIONS: dict[tuple[str, str], str] = {}
# Public functions that forward arbitrary arguments on purpose.
FORWARDING = {
    ('evaluation/plots.py', 'safely'),  # fn(*args, **kwargs), warns
    ('models/cpu_ops.py', 'conv_general_dilated')
}  # drop-in for lax's signature


def _modules() -> dict:
  """dotted name -> path, for every module of the package."""
  out = {}
  for path in ROOT.rglob('*.py'):
    parts = path.relative_to(ROOT.parent).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    out['.'.join(parts)] = path
  return out


def _imports(path: pathlib.Path, modules: dict) -> set:
  """The package modules `path` imports (a `from pkg import name` counts as
  `pkg.name` when that is a module, else as `pkg`)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith('generalist_jax'))
    elif isinstance(node,
                    ast.ImportFrom) and node.module and node.module.startswith('generalist_jax'):
      for alias in node.names:
        name = f'{node.module}.{alias.name}'
        found.add(name if name in modules else node.module)
  return found


def _unit(module: str) -> str:
  """generalist_jax.attacks.apgd -> 'attacks'; generalist_jax.main -> 'main'."""
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else ''


def _layer(unit: str) -> int:
  return next(i for i, layer in enumerate(LAYERS) if unit in layer)


@pytest.fixture(scope='module')
def graph():
  modules = _modules()
  return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_package_and_module_has_a_layer(graph):
  units = {_unit(m) for m in graph} - {''}
  placed = set().union(*LAYERS)
  assert units <= placed, f'place these in LAYERS: {sorted(units - placed)}'


def test_dependencies_point_one_way(graph):
  wrong = []
  for module, imported in graph.items():
    unit = _unit(module)
    if not unit:
      continue
    for other in imported:
      other_unit = _unit(other)
      if not other_unit or other_unit == unit:
        continue
      if _layer(other_unit) > _layer(unit) or (_layer(other_unit) == _layer(unit) and
                                               (unit, other_unit) not in ALLOWED_SIDEWAYS):
        wrong.append(f'{module} -> {other}')
  assert not wrong, 'imports against the layering:\n' + '\n'.join(sorted(wrong))


def test_no_import_cycles(graph):
  # Only module-level edges count; a package's __init__ re-exporting its own
  # submodules is not a cycle (the submodule never needs the package's names).
  edges = {
      m: {d for d in deps if d in graph and not (m.startswith(d + '.'))}
      for m, deps in graph.items()
  }
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(edges[node]):
      if state.get(nxt) == 'open':
        cycle = stack[stack.index(nxt):] + [nxt]
        raise AssertionError('import cycle: ' + ' -> '.join(cycle))
      if nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = 'done'

  for node in sorted(edges):
    if node not in state:
      visit(node)


def test_files_stay_small():
  long = {
      str(p.relative_to(ROOT)): n
      for p in ROOT.rglob('*.py')
      if (n := len(p.read_text().splitlines())) > MAX_LINES
  }
  assert not long, f'split these files (over {MAX_LINES} lines): {long}'


def test_functions_stay_short():
  """Every function, method and nested function, from its def line to its last line
  (docstring included), fits in MAX_FUNCTION_LINES, or is in LONG_FUNCTIONS."""
  long, stale = [], set(LONG_FUNCTIONS)
  for path in sorted(ROOT.rglob('*.py')):
    rel = str(path.relative_to(ROOT))
    for node in ast.walk(ast.parse(path.read_text())):
      if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      lines = node.end_lineno - node.lineno + 1
      stale.discard((rel, node.name))
      if lines > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_FUNCTIONS:
        long.append(f'{rel}:{node.lineno} {node.name} ({lines} lines)')
  assert not long, (f'split these functions (over {MAX_FUNCTION_LINES} lines) or name them, '
                    'with the reason, in LONG_FUNCTIONS:\n' + '\n'.join(long))
  assert not stale, f'LONG_FUNCTIONS names functions that no longer exist: {sorted(stale)}'


def test_public_functions_take_explicit_keywords():
  found = []
  for path in ROOT.rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if (isinstance(node, ast.FunctionDef) and not node.name.startswith('_') and
          node.args.kwarg is not None and
          (str(path.relative_to(ROOT)), node.name) not in FORWARDING):
        found.append(f'{path.relative_to(ROOT)}:{node.lineno} {node.name}(**{node.args.kwarg.arg})')
  assert not found, 'give these explicit keyword parameters:\n' + '\n'.join(found)


def _undocumented(tree: ast.Module) -> list:
  """The public names of a parsed module that lack a docstring: the module
  itself ('<module>'), its module-level functions and classes whose names do
  not start with '_', and those classes' public methods ('Class.method')."""
  missing = [] if ast.get_docstring(tree) else ['<module>']
  defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
  for node in tree.body:
    if not isinstance(node, defs) or node.name.startswith('_'):
      continue
    if not ast.get_docstring(node):
      missing.append(node.name)
    if isinstance(node, ast.ClassDef):
      missing += [
          f'{node.name}.{m.name}' for m in node.body
          if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and
          not m.name.startswith('_') and not ast.get_docstring(m)
      ]
  return missing


def test_every_public_name_has_a_docstring():
  found = [
      f'{path.relative_to(ROOT)}:{name}' for path in sorted(ROOT.rglob('*.py'))
      for name in _undocumented(ast.parse(path.read_text()))
  ]
  assert not found, 'write docstrings for these:\n' + '\n'.join(found)
