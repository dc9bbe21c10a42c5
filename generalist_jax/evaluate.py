r"""Robustness evaluation of a trained run: AutoAttack-style, per-example, resumable.

  python -m generalist_jax.evaluate --workdir=runs/generalist_cifar10 \
      [--checkpoint=last|best|<step>] [--learner=global|<expert>] \
      [--attacks=standard|fast|apgd-ce,apgd-t,...] [--norm=linf[,l2,l1]] \
      [--eps=8/255[,0.5,12]] [--n_ex=1000] [--batch_size=256] [--seed=0] [--name=NAME]

Restores the checkpoint, runs the attacks of every norm in order on the TEST
split (a fixed random subset of n_ex examples), each attack only on the examples that all earlier
ones (for that norm) failed to break, and writes

  <workdir>/eval/<name>.json   accuracies, settings, seed, versions, sanity checks
  <workdir>/eval/<name>.csv    per-example flags (1 robust, 0 fooled, -1 not run:
                               already broken) and the worst cases
  <workdir>/eval/<name>.md     one column per attack, worst case per norm, union

The flags are saved after every batch (`<name>.state.npz`), so starting the
same command again continues where an interrupted evaluation stopped; batches
and keys are fixed by the flags of finished attacks, so the result is the same
as an uninterrupted run.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from generalist_jax import attacks
from generalist_jax import autoattack as aa
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax import plots


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  norm: str
  name: str
  eps: float
  overrides: tuple = ()      # (key, value) pairs changing the standard budget

  @property
  def column(self) -> str:
    return f'{self.norm}/{self.name}'

  def settings(self) -> dict:
    s = dict(aa.standard_settings(self.name, self.norm))
    for k, v in self.overrides:
      k = 'n_queries' if (self.name == 'square' and k == 'steps') else k
      if k in s:
        s[k] = v
    return dict(s, eps=self.eps)


def make_plan(norms, eps, attack_list: str, overrides: dict | None = None) -> list[AttackSpec]:
  overrides = tuple(sorted((k, v) for k, v in (overrides or {}).items() if v is not None))
  plan = []
  for norm, e in zip(norms, eps):
    names = (aa.version_components(attack_list, norm) if attack_list in ('standard', 'fast')
             else tuple(a.strip() for a in attack_list.split(',') if a.strip()))
    for name in names:
      aa.make_component(name, norm=norm, eps=e, **dict(overrides))   # validates early
      plan.append(AttackSpec(norm, name, float(e), overrides))
  return plan


# ----------------------------------------------------------------------------
# Jitted per-batch functions (cached: one compile per model and attack).
# ----------------------------------------------------------------------------

_COMPILED = {}


def _logits_fn(model, variables):
  return lambda inputs: models.apply_model(model, variables, inputs, train=False)[0]


def clean_batch_fn(model):
  key = ('clean', repr(model))
  if key not in _COMPILED:
    @jax.jit
    def clean(variables, x, y):
      logits_fn = _logits_fn(model, variables)
      grad = jax.grad(lambda v: attacks.cross_entropy(logits_fn(v), y).sum())(x)
      flat = grad.reshape(grad.shape[0], -1)
      return {'correct': jnp.argmax(logits_fn(x), -1) == y,
              'grad_zero': jnp.all(flat == 0, -1),
              'grad_nonfinite': ~jnp.all(jnp.isfinite(flat), -1)}
    _COMPILED[key] = clean
  return _COMPILED[key]


def attack_batch_fn(model, spec: AttackSpec):
  key = ('attack', repr(model), spec)
  if key not in _COMPILED:
    attack = aa.make_component(spec.name, norm=spec.norm, eps=spec.eps, **dict(spec.overrides))

    @jax.jit
    def run(variables, x, y, rng):
      logits_fn = _logits_fn(model, variables)
      x_adv = attack(logits_fn, x, y, rng)
      norm = attacks.lp_norm(x_adv - x, spec.norm)
      inside = (norm <= spec.eps * (1 + 1e-4) + 1e-6) & jnp.all(
          (x_adv >= 0) & (x_adv <= 1), axis=tuple(range(1, x.ndim)))
      return {'correct': jnp.argmax(logits_fn(x_adv), -1) == y, 'inside': inside}
    _COMPILED[key] = run
  return _COMPILED[key]


# ----------------------------------------------------------------------------
# The resumable loop over (attack, batch of still-robust examples).
# ----------------------------------------------------------------------------

def new_state(n: int, plan: list[AttackSpec]) -> dict:
  state = {'clean': np.full(n, aa.PENDING, np.int8),
           'grad_zero': np.zeros(n, bool), 'grad_nonfinite': np.zeros(n, bool),
           'outside_ball': np.zeros(n, bool)}
  for spec in plan:
    state[spec.column] = np.full(n, aa.PENDING, np.int8)
  return state


def _padded(indices: np.ndarray, batch_size: int) -> np.ndarray:
  """Pads a chunk by repeating its last index, up to a multiple of 8 (at most
  batch_size): few shapes to compile, and the last chunk of an attack (often a
  handful of still-robust examples) does not pay for a full batch."""
  size = min(batch_size, -(-len(indices) // 8) * 8)
  pad = size - len(indices)
  return np.concatenate([indices, np.repeat(indices[-1:], pad)]) if pad else indices


def _chunks(indices, batch_size):
  return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def run_evaluation(model, variables, images, labels, plan: list[AttackSpec], *,
                   batch_size: int, seed: int, state: dict | None = None,
                   save=None, progress: bool = True, stop_after_batches: int | None = None
                   ) -> dict:
  """Fills `state` (per-example int8 flags per column) and returns it.

  `save(state)` is called after every batch; `stop_after_batches` stops early
  (as an interruption would; tests use it).
  """
  n = len(labels)
  state = state if state is not None else new_state(n, plan)
  as_float = lambda idx: data_lib.to_float(images[idx]) if images.dtype == np.uint8 else (
      np.asarray(images[idx], np.float32))
  bar = tqdm.tqdm(total=n * (1 + len(plan)), unit='ex', disable=not progress,
                  dynamic_ncols=True, mininterval=1.0)
  batches_done = 0

  def step_done(count):
    nonlocal batches_done
    bar.update(count)
    if save is not None:
      save(state)
    batches_done += 1
    return stop_after_batches is not None and batches_done >= stop_after_batches

  clean = clean_batch_fn(model)
  for chunk in _chunks(np.arange(n), batch_size):
    if np.all(state['clean'][chunk] != aa.PENDING):
      bar.update(len(chunk))
      continue
    idx = _padded(chunk, batch_size)
    out = jax.device_get(clean(variables, as_float(idx), labels[idx].astype(np.int32)))
    m = len(chunk)
    state['clean'][chunk] = out['correct'][:m]
    state['grad_zero'][chunk] = out['grad_zero'][:m]
    state['grad_nonfinite'][chunk] = out['grad_nonfinite'][:m]
    if step_done(m):
      bar.close()
      return state

  base_key = jax.random.PRNGKey(seed)
  for column_index, spec in enumerate(plan):
    col = state[spec.column]
    earlier = [state[s.column] for s in plan[:column_index] if s.norm == spec.norm]
    todo_mask = aa.still_robust(state['clean'] == 1, earlier)
    col[~todo_mask & (col == aa.PENDING)] = aa.SKIPPED
    bar.update(int((~todo_mask).sum()))
    todo = np.flatnonzero(todo_mask)
    run = attack_batch_fn(model, spec)
    column_key = jax.random.fold_in(base_key, column_index + 1)
    for chunk_index, chunk in enumerate(_chunks(todo, batch_size)):
      if np.all(col[chunk] != aa.PENDING):
        bar.update(len(chunk))
        continue
      idx = _padded(chunk, batch_size)
      bar.set_description(spec.column)
      out = jax.device_get(run(variables, as_float(idx), labels[idx].astype(np.int32),
                               jax.random.fold_in(column_key, chunk_index)))
      m = len(chunk)
      col[chunk] = out['correct'][:m]
      state['outside_ball'][chunk] |= ~out['inside'][:m]
      if step_done(m):
        bar.close()
        return state
  bar.close()
  return state


def is_complete(state: dict, plan) -> bool:
  return all(np.all(state[c] != aa.PENDING) for c in ['clean'] + [s.column for s in plan])


# ----------------------------------------------------------------------------
# Tables.
# ----------------------------------------------------------------------------

def summarize(state: dict, plan: list[AttackSpec]) -> dict:
  clean = state['clean'] == 1
  norms = list(dict.fromkeys(s.norm for s in plan))
  out = {'n_ex': int(len(clean)), 'clean_acc': float(clean.mean()), 'attacks': {},
         'worst_case': {}}
  worst = {}
  for norm in norms:
    specs = [s for s in plan if s.norm == norm]
    for k, spec in enumerate(specs):
      col = state[spec.column]
      out['attacks'][spec.column] = {
          'robust_acc_after': float(aa.worst_case(clean, [state[s.column]
                                                           for s in specs[:k + 1]]).mean()),
          'newly_fooled': int((col == aa.FOOLED).sum()),
          'attacked': int((col != aa.SKIPPED).sum()),
          'settings': spec.settings()}
    worst[norm] = aa.worst_case(clean, [state[s.column] for s in specs])
    out['worst_case'][norm] = float(worst[norm].mean())
  union = aa.union_over_norms(worst) if worst else clean
  out['worst_case']['union' if len(norms) > 1 else norms[0] if norms else 'none'] = float(
      union.mean())
  out['robust_acc'] = float(union.mean())
  return out, worst, union


def sanity_checks(state: dict, plan, determinism_gap: float) -> dict:
  checks = {'zero_input_gradient': int(state['grad_zero'].sum()),
            'nonfinite_input_gradient': int(state['grad_nonfinite'].sum()),
            'adversarial_outside_ball_or_box': int(state['outside_ball'].sum()),
            'output_changes_between_identical_calls': float(determinism_gap),
            'black_box_beats_white_box': 0}
  for spec in plan:
    if spec.name not in aa.BLACK_BOX:
      continue
    white = [state[s.column] for s in plan if s.norm == spec.norm and s.name in aa.WHITE_BOX]
    beaten = (state[spec.column] == aa.FOOLED) & np.logical_and.reduce(
        [w != aa.FOOLED for w in white] + [np.ones(len(state['clean']), bool)])
    checks['black_box_beats_white_box'] += int(beaten.sum())
  warnings = []
  if checks['zero_input_gradient'] or checks['nonfinite_input_gradient']:
    warnings.append('some examples have zero or non-finite input gradients: gradient '
                    'attacks cannot work there (masking?)')
  if checks['black_box_beats_white_box']:
    warnings.append('Square (black-box) broke examples that every white-box attack '
                    'missed: a sign of gradient masking; trust the worst case, not PGD')
  if determinism_gap > 0:
    warnings.append('the model output changed between two identical calls: randomised '
                    'or stateful model; use EOT-style evaluation')
  if checks['adversarial_outside_ball_or_box']:
    warnings.append('some adversarial examples left the eps-ball or [0, 1]: a bug')
  checks['warnings'] = warnings
  return checks


def determinism_gap(model, variables, images) -> float:
  x = data_lib.to_float(images) if images.dtype == np.uint8 else np.asarray(images, np.float32)
  fn = jax.jit(lambda v, x: models.apply_model(model, v, x, train=False)[0])
  return float(jnp.max(jnp.abs(fn(variables, x) - fn(variables, x))))


def library_versions() -> dict:
  import flax
  import optax
  import orbax.checkpoint
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': importlib.metadata.version('jaxlib'),
          'flax': flax.__version__, 'optax': optax.__version__,
          'orbax_checkpoint': orbax.checkpoint.__version__, 'numpy': np.__version__,
          'backend': jax.default_backend()}


def write_reports(stem: pathlib.Path, state, plan, labels, meta: dict) -> dict:
  summary, worst, union = summarize(state, plan)
  report = dict(meta, **summary)
  stem.parent.mkdir(parents=True, exist_ok=True)
  stem.with_suffix('.json').write_text(json.dumps(report, indent=2))

  columns = ['clean'] + [s.column for s in plan]
  lines = ['index,label,' + ','.join(columns + [f'worst/{n}' for n in worst] + ['worst/all'])]
  for i in range(len(labels)):
    values = [int(state[c][i]) for c in columns] + [int(w[i]) for w in worst.values()]
    lines.append(f'{i},{int(labels[i])},' + ','.join(map(str, values + [int(union[i])])))
  stem.with_suffix('.csv').write_text('\n'.join(lines) + '\n')

  header = ['clean'] + [s.column for s in plan] + [f'worst {n}' for n in worst]
  values = [summary['clean_acc']] + [summary['attacks'][s.column]['robust_acc_after']
                                     for s in plan] + list(summary['worst_case'][n]
                                                           for n in worst)
  if len(worst) > 1:
    header.append('worst (union)')
    values.append(summary['robust_acc'])
  md = [f"# {meta['name']}: {meta['workdir']}",
        '',
        f"Checkpoint `{meta['checkpoint']}` (step {meta['step']}), learner "
        f"`{meta['learner']}`, {summary['n_ex']} TEST examples (fixed random subset), seed {meta['seed']}.",
        'Attack columns: robust accuracy after that attack (attacks run in order, each on '
        'the examples all earlier ones of its norm missed); worst = per-example AND.',
        '',
        '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header),
        '| ' + ' | '.join(f'{100 * v:.2f}' for v in values) + ' |', '',
        '## Attacks', '']
  for s in plan:
    md.append(f'- `{s.column}`: ' + ', '.join(f'{k}={v}' for k, v in s.settings().items()))
  if meta.get('missing_components'):
    md.append(f"- not implemented, so not run: {meta['missing_components']}")
  md += ['', '## Sanity checks', '']
  md += [f'- {k}: {v}' for k, v in meta['sanity'].items() if k != 'warnings']
  md += [f'- WARNING: {w}' for w in meta['sanity']['warnings']]
  md += ['', '## Versions', '', '- ' + ', '.join(f'{k} {v}' for k, v in
                                                meta['versions'].items())]
  stem.with_suffix('.md').write_text('\n'.join(md) + '\n')
  return report


# ----------------------------------------------------------------------------
# Resumable state on disk.
# ----------------------------------------------------------------------------

def save_state(path: pathlib.Path, state: dict, settings: dict) -> None:
  tmp = path.with_name(path.name + '.tmp.npz')
  arrays = {k.replace('/', '__'): v for k, v in state.items()}
  np.savez(tmp, settings=np.array(json.dumps(settings, sort_keys=True)), **arrays)
  os.replace(tmp, path)      # atomic: a kill leaves the old or the new state


def load_state(path: pathlib.Path, settings: dict) -> dict | None:
  if not path.exists():
    return None
  with np.load(path) as f:
    saved = json.loads(str(f['settings']))
    if saved != json.loads(json.dumps(settings, sort_keys=True)):
      raise ValueError(f'{path} holds an evaluation with other settings:\n  saved:   '
                       f'{saved}\n  current: {settings}\nuse another --name (or delete it).')
    return {k.replace('__', '/'): f[k].copy() for k in f.files if k != 'settings'}


# ----------------------------------------------------------------------------
# Restoring a run.
# ----------------------------------------------------------------------------

def restore_run(workdir: pathlib.Path, checkpoint: str):
  """(config, dataset, setup, state, step) of a run's checkpoint ('last', 'best' or a step)."""
  import ml_collections
  import orbax.checkpoint as ocp
  from generalist_jax import checkpointing
  from generalist_jax import train
  config = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  dataset = data_lib.load_dataset(config.data)
  setup = train.make_setup(config, dataset.info, data_lib.steps_per_epoch(
      dataset, config.batch_size))
  template = jax.tree.map(ocp.utils.to_shape_dtype_struct, train.create_train_state(
      setup, dataset.info.image_shape, config.seed))
  ckpts = checkpointing.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep,
                                       read_only=True)   # safe beside a live run
  try:
    which, step = (checkpoint, None) if checkpoint in ('last', 'best') else (
        'last', int(checkpoint))
    restored = ckpts.restore(template, which, step)
  finally:
    ckpts.close()
  if restored is None:
    raise ValueError(f'no {checkpoint!r} checkpoint in {workdir / "checkpoints"}')
  state, _ = restored
  return config, dataset, setup, state, int(state.step)


def _parse_eps(text: str) -> float:
  if '/' in text:
    a, b = text.split('/')
    return float(a) / float(b)
  return float(text)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True)
  p.add_argument('--checkpoint', default='best', help="'last', 'best' or a step")
  p.add_argument('--learner', default='global', help="'global' or an expert's name")
  p.add_argument('--attacks', default='standard',
                 help="'standard', 'fast' or a list: apgd-ce,apgd-dlr,apgd-t,fab-t,"
                      'square (linf, l2),pgd,pgd-cw,fgsm,mim')
  p.add_argument('--norm', default='linf', help='linf, l2, l1 or a comma list (union)')
  p.add_argument('--eps', default=None, help='one per norm, e.g. 8/255,0.5 (default: '
                 'the CIFAR conventions 8/255, 0.5, 12)')
  p.add_argument('--n_ex', type=int, default=1000)
  p.add_argument('--batch_size', type=int, default=256)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--name', default=None)
  p.add_argument('--steps', type=int, default=None,
                 help='override iterations (APGD, PGD, MIM) / queries (Square)')
  p.add_argument('--n_targets', type=int, default=None, help='override APGD-T targets')
  p.add_argument('--restarts', type=int, default=None, help='override APGD/PGD restarts')
  p.add_argument('--no_progress', action='store_true')
  return p.parse_args(argv)


def main(argv=None, *, stop_after_batches: int | None = None) -> dict | None:
  args = parse_args(argv)
  workdir = pathlib.Path(args.workdir)
  norms = [n.strip() for n in args.norm.split(',')]
  eps = ([_parse_eps(e) for e in args.eps.split(',')] if args.eps
         else [aa.DEFAULT_EPS[n] for n in norms])
  if len(eps) != len(norms):
    raise ValueError(f'--eps needs one value per norm ({norms}), got {eps}')
  overrides = {'steps': args.steps, 'n_targets': args.n_targets, 'restarts': args.restarts}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  name = args.name or (f"{args.attacks.replace(',', '+')}_{'+'.join(norms)}_"
                       f'{args.checkpoint}_{args.learner}_n{args.n_ex}')

  config, dataset, setup, train_state, step = restore_run(workdir, args.checkpoint)
  from generalist_jax import train
  learners = train.learners(train_state, setup)
  if args.learner not in learners:
    raise ValueError(f'--learner={args.learner!r}; this run has {sorted(learners)}')
  variables = learners[args.learner]
  images, labels = dataset.test
  # A fixed random subset, not the first n_ex: test files are often sorted by class.
  if args.n_ex < len(labels):
    keep = np.sort(np.random.default_rng([0, 0xE7A1]).permutation(len(labels))[:args.n_ex])
    images, labels = images[keep], np.asarray(labels[keep])

  plan = make_plan(norms, eps, args.attacks, overrides)
  settings = {'checkpoint': args.checkpoint, 'step': step, 'learner': args.learner,
              'n_ex': int(len(labels)), 'batch_size': args.batch_size, 'seed': args.seed,
              'attacks': [dataclasses.asdict(s) for s in plan]}
  eval_dir = workdir / 'eval'
  eval_dir.mkdir(parents=True, exist_ok=True)
  state_path = eval_dir / f'{name}.state.npz'
  state = load_state(state_path, settings)
  if state is not None:
    print(f'resuming {state_path}')
  started = time.time()
  state = run_evaluation(setup.model, variables, images, labels, plan,
                         batch_size=args.batch_size, seed=args.seed, state=state,
                         save=lambda s: save_state(state_path, s, settings),
                         progress=not args.no_progress, stop_after_batches=stop_after_batches)
  if not is_complete(state, plan):
    print(f'stopped early; start the same command again to resume ({state_path})')
    return None
  missing = sorted({f'{n}/{m}' for n in norms for m in aa.missing_components(args.attacks, n)})
  meta = dict(settings, name=name, workdir=str(workdir), versions=library_versions(),
              missing_components=missing, seconds_this_invocation=time.time() - started,
              command=' '.join([sys.executable, '-m', 'generalist_jax.evaluate'] +
                               (argv if argv is not None else sys.argv[1:])),
              sanity=sanity_checks(state, plan, determinism_gap(
                  setup.model, variables, images[:min(len(labels), args.batch_size)])))
  report = write_reports(eval_dir / name, state, plan, labels, meta)
  plots.safely(plots.eval_plots, report, workdir / 'plots', name)   # warns, never raises
  print(f"{name}: clean {100 * report['clean_acc']:.2f}%, robust (worst case) "
        f"{100 * report['robust_acc']:.2f}% -> {eval_dir / name}.md")
  for w in meta['sanity']['warnings']:
    print('WARNING:', w)
  return report


if __name__ == '__main__':
  main()
