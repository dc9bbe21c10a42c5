r"""Our AutoAttack vs the official one (fra31/auto-attack, PyPI `pyautoattack==0.2.0`) at
full 'standard' budgets, on trained CIFAR-10 learners and the same test points.

  python experiments/autoattack_parity/run.py --workdir=RUN --learner=robust \
      [--checkpoint=last] [--n_ex=500] [--norm=linf] [--eps=8/255] [--name=NAME]

For the learner of a run (restored with its saved preprocessing constants), the
fixed random n_ex test points of the evaluation entry point; each component alone
(APGD-CE, APGD-T, FAB-T, Square, with 'standard' budgets) and the whole 'standard'
suite, once by each implementation: robust accuracy, per-example agreement, wall
time and images/s (both timed in this process, one after the other; the official
code on the PyTorch twin with --torch_threads threads). Appends to
experiments/autoattack_parity/results.json and writes results.md.
"""
import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generalist_jax import config  # noqa: E402
from generalist_jax.data import pipeline  # noqa: E402
from generalist_jax.evaluation import jitted  # noqa: E402
from generalist_jax.evaluation import parity  # noqa: E402
from generalist_jax.evaluation import reports  # noqa: E402
from generalist_jax.evaluation import runner  # noqa: E402
from generalist_jax.method import step as step_lib  # noqa: E402
from generalist_jax.models import torch_convert  # noqa: E402
from generalist_jax.run import restore  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
STANDARD = ('apgd-ce', 'apgd-t', 'fab-t', 'square')


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--learner', default='global')
  p.add_argument('--checkpoint', default='last')
  p.add_argument('--n_ex', type=int, default=500)
  p.add_argument('--norm', default='linf')
  p.add_argument('--eps', default='8/255')
  p.add_argument('--components', default=','.join(STANDARD) + ',standard')
  p.add_argument('--torch_threads', type=int, default=2)
  p.add_argument('--name', default=None)
  args = p.parse_args(argv)
  torch.set_num_threads(args.torch_threads)
  run = restore.restore_run(args.workdir, args.checkpoint, full_test=True)
  variables = step_lib.learners(run.state, run.setup)[args.learner]
  info = run.dataset.info
  twin = torch_convert.torch_twin(run.config.model, info.num_classes, info.mean, info.std,
                                  info.image_shape, variables)
  images, labels, _ = runner.sample_test_points(*run.dataset.test, args.n_ex)
  x, y = pipeline.to_float(images), labels.astype(np.int32)
  apply = jitted.model_apply_fn(run.setup.model)
  eps = config.parse_eps(args.eps)
  rows = []
  for component in args.components.split(','):
    attacks = STANDARD if component == 'standard' else (component,)
    started = time.time()
    result = parity.compare(apply, variables, twin, x, y, norm=args.norm, eps=eps, attacks=attacks,
                            batch_size=250)
    row = dict(result.row(), component=component, model=run.config.model.to_dict(),
               workdir=str(args.workdir), learner=args.learner, checkpoint=args.checkpoint,
               step=run.step, wall_s=time.time() - started)
    rows.append(row)
    print(
        f"{component:>9}: ours {100 * row['ours_robust_acc']:.1f}% in {row['ours_seconds']:.0f}"
        f" s, official {100 * row['official_robust_acc']:.1f}% in "
        f"{row['official_seconds']:.0f} s; agreement {100 * row['agreement']:.1f}% "
        f"(only ours {row['only_ours_fooled']}, only official {row['only_official_fooled']}); "
        f"speed ours/official {row['speed_ratio']:.2f}", flush=True)
  path = HERE / 'results.json'
  saved = json.loads(path.read_text()) if path.exists() else {'runs': []}
  saved['runs'].append({
      'name': args.name or f"{pathlib.Path(args.workdir).name}_{args.learner}",
      'command': ' '.join([sys.executable] + sys.argv), 'rows': rows,
      'versions': reports.library_versions(), 'torch': torch.__version__,
      'torch_threads': args.torch_threads, 'uptime': open('/proc/loadavg').read().strip()
  })
  path.write_text(json.dumps(saved, indent=2, default=str))
  write_markdown(saved, HERE / 'results.md')


def write_markdown(saved: dict, path: pathlib.Path) -> None:
  lines = [
      '# Our AutoAttack vs the official one', '',
      'Official: fra31/auto-attack as packaged on PyPI (`pyautoattack==0.2.0`, checked '
      'against the official sources: the attack files are identical up to imports and '
      "logging), run on the learner's PyTorch twin; ours: `generalist_jax.AutoAttack` on "
      "the flax learner. Same test points, 'standard' budgets, seed 0 on both sides "
      '(different random streams). Accuracies in %; agreement: share of points both call '
      'the same; speed: official seconds / ours (> 1: ours faster).', ''
  ]
  for run_ in saved['runs']:
    lines += [
        f"## {run_['name']}", '', f"`{run_['command']}`; load {run_['uptime']}", '',
        '| attacks | n | ours | official | difference | agreement | only ours fooled | '
        'only official fooled | ours s | official s | ours img/s | official img/s | '
        'speed |', '|' + '---|' * 13
    ]
    for r in run_['rows']:
      lines.append(
          f"| {r['component']} | {r['n']} | {100 * r['ours_robust_acc']:.1f} | "
          f"{100 * r['official_robust_acc']:.1f} | {100 * r['difference']:+.1f} | "
          f"{100 * r['agreement']:.1f} | {r['only_ours_fooled']} | {r['only_official_fooled']} | "
          f"{r['ours_seconds']:.0f} | {r['official_seconds']:.0f} | {r['ours_img_s']:.1f} | "
          f"{r['official_img_s']:.1f} | {r['speed_ratio']:.2f} |")
    lines.append('')
  path.write_text('\n'.join(lines))


if __name__ == '__main__':
  main()
