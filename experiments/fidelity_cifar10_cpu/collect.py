r"""Tables and plots of the fidelity runs (issue 15), from their files.

  python experiments/fidelity_cifar10_cpu/collect.py RUNS_DIR [OUT_DIR] [N_EX]

Writes OUT_DIR (default: this folder) results.json, table.md (rows x {last,
selected} x {clean, PGD-20, APGD-CE+T}, mean +- std over seeds, wall times), the
seed-paired differences against PGD-AT's EMA and against beta = 1 paired.md, the
per-sync-window table windows.md (all three also spliced into results.md between its
`<!-- begin table.md -->` / `<!-- end table.md -->` markers, so the prose file never
quotes stale tables), and PNGs: windows.png (each expert's EMA at the end of the
free phase before a window, the global learner just after it), trajectory_<run>.png
(validation clean vs robust of every learner through training) and the copied
interpolation curves. (The work is experiments/study_tables.py.)
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluate import STUDY  # noqa: E402

sys.path.insert(0, str(HERE.parent))
import eval_tables  # noqa: E402
import study_tables as st  # noqa: E402
from generalist_jax.evaluation import plots  # noqa: E402

N_EX = 1000  # default test images per evaluation (evaluate.py --n_ex)
ROWS = [('Generalist (relative timescale)', 'generalist', 'global'), ('PGD-AT', 'pgd_at', 'robust'),
        ("PGD-AT's EMA (same horizon)", 'pgd_at', 'robust_ema'),
        ('standard training', 'standard', 'natural'),
        ('Generalist, beta = 1 throughout', 'generalist_beta1', 'global'),
        ('Generalist without sync', 'generalist_nosync', 'global'),
        ('ablation: Generalist, free-phase lr x10', 'generalist_drift10', 'global')]
# (reference row, which rows to compare with it: label prefixes, None for all)
PAIRED_REFERENCES = (
    ("PGD-AT's EMA (same horizon)", None),  # the baseline to beat
    (
        'Generalist, beta = 1 throughout',  # the same run, no mixing
        ('Generalist', 'ablation')))


def main(argv):
  runs_dir = pathlib.Path(argv[1])
  out = pathlib.Path(argv[2]) if len(argv) > 2 else HERE
  n_ex = int(argv[3]) if len(argv) > 3 else N_EX
  times = {}
  for t in eval_tables.times(runs_dir):
    # A resumed run logs one entry per sitting: its training time is their sum.
    times[t['run']] = times.get(t['run'], 0) + t['train_seconds']
  cells, raw = st.table(STUDY, ROWS, runs_dir, {a: n_ex for a in STUDY.attacks}, times)
  per_window = st.windows(STUDY, runs_dir)
  md = st.table_lines(cells, with_times=True)
  (out / 'table.md').write_text('\n'.join(md) + '\n')
  paired_lines = []
  for reference, prefixes in PAIRED_REFERENCES:
    lines = st.paired_table(raw, reference, prefixes)
    paired_lines += lines + [''] if lines else []
  (out / 'paired.md').write_text('\n'.join(paired_lines))
  window_lines = st.window_table(per_window) if per_window else []
  (out / 'windows.md').write_text('\n'.join(window_lines) +
                                  '\n' if per_window else 'no sync windows logged\n')
  if per_window:
    st.window_plot(per_window, out / 'windows.png')
  for name in ('generalist_s0', 'generalist_nosync_s0', 'pgd_at_s0'):
    run = runs_dir / name
    series = plots.validation_series(plots.read_metrics(run)) if run.exists() else {}
    if series:
      plots.tradeoff_plot(series, out / f'trajectory_{name}.png',
                          f'Validation path of every learner: {name}', 'l-inf PGD-5, 8/255')
    st.copy_interpolation_plots(run, out, name)
  (out / 'results.json').write_text(json.dumps({'rows': raw, 'windows': per_window}, indent=2))
  st.splice_file(out / 'results.md',
                 {'table.md': md, 'paired.md': paired_lines, 'windows.md': window_lines})
  print('\n'.join(md))


if __name__ == '__main__':
  main(sys.argv)
