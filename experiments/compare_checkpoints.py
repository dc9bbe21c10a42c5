r"""Compares the newest checkpoints of two run directories leaf by leaf.

  python experiments/compare_checkpoints.py RUN_A RUN_B

Prints the step of each, the number of leaves, how many differ and the largest
absolute difference; exits 1 unless both are at the same step and bit-identical.
Used to show that a killed-and-resumed run equals an uninterrupted one.
"""
import json
import pathlib
import sys

import numpy as np
import orbax.checkpoint as ocp


def newest_state(run_dir: pathlib.Path):
  manager = ocp.CheckpointManager(run_dir.absolute() / 'checkpoints' / 'last',
                                  item_names=('state', 'meta'))
  step = manager.latest_step()
  restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
  manager.close()
  return step, restored.state


def main(a: str, b: str) -> int:
  (step_a, state_a), (step_b, state_b) = (newest_state(pathlib.Path(a)),
                                          newest_state(pathlib.Path(b)))
  leaves_a, leaves_b = ocp.tree.to_flat_dict(state_a), ocp.tree.to_flat_dict(state_b)
  assert leaves_a.keys() == leaves_b.keys(), 'different state structures'
  diffs = {
      k: float(
          np.max(np.abs(np.asarray(leaves_a[k], np.float64) - np.asarray(leaves_b[k], np.float64)))
      ) for k in leaves_a
  }
  report = {
      'step_a': step_a, 'step_b': step_b, 'leaves': len(diffs),
      'leaves_differing': sum(d != 0 for d in diffs.values()), 'max_abs_diff': max(diffs.values())
  }
  print(json.dumps(report))
  return 0 if step_a == step_b and report['leaves_differing'] == 0 else 1


if __name__ == '__main__':
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  sys.exit(main(sys.argv[1], sys.argv[2]))
