r"""Which Python files of the working tree parse to a different syntax tree than at a
git revision: a formatter's change is behaviour-neutral exactly where they do not.

  python experiments/refactor_check/same_ast.py REV

Comments and layout are not in the tree; docstrings and every other string are.
Prints each file whose tree changed (or that is new), then the counts.
"""
import ast
import subprocess
import sys


def tree_at(rev: str, path: str) -> str | None:
  """The dumped syntax tree of `path` at `rev`, or None where it did not exist."""
  shown = subprocess.run(['git', 'show', f'{rev}:{path}'], capture_output=True, text=True)
  return ast.dump(ast.parse(shown.stdout)) if shown.returncode == 0 else None


def main(rev: str) -> None:
  files = subprocess.run(['git', 'ls-files', '*.py'], capture_output=True, text=True,
                         check=True).stdout.split()
  changed = [f for f in files if tree_at(rev, f) != ast.dump(ast.parse(open(f).read()))]
  for f in changed:
    print('syntax tree differs:', f)
  print(f'{len(files)} files; {len(files) - len(changed)} with the syntax tree of {rev}, '
        f'{len(changed)} changed')


if __name__ == '__main__':
  main(sys.argv[1])
