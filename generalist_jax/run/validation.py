"""Validation during training (every learner, keep the best checkpoint) and the
final test of the last and best-on-validation checkpoints."""
from __future__ import annotations

import json
import pathlib

from generalist_jax import parallel
from generalist_jax.evaluation import learners as learner_eval
from generalist_jax.evaluation import tables
from generalist_jax.method import step as step_lib


def write_table(path_stem: pathlib.Path, results: dict, description: str) -> None:
  """`<stem>.json` and `<stem>.md` (a Markdown table, one row per learner).

  Args:
    path_stem: the files' path without suffix (its folder is created).
    results: a `final_test` entry; its 'learners' (name -> metrics) make the rows.
    description: the line above the table.
  """
  path_stem.parent.mkdir(parents=True, exist_ok=True)
  path_stem.with_suffix('.json').write_text(json.dumps(results, indent=2, sort_keys=True))
  rows = [[name, tables.percent(m['clean_acc']),
           tables.percent(m['robust_acc'])] for name, m in results['learners'].items()]
  table = tables.markdown_table(['learner', 'clean acc', 'robust acc'], rows)
  path_stem.with_suffix('.md').write_text(f'{description}\n\n' + '\n'.join(table) + '\n')


def final_test(config, setup, ckpts, template, dataset, workdir: pathlib.Path) -> dict:
  """Test-set clean and robust accuracy of the last and the best-on-validation state
  under `eval.test_attack`; writes eval/test_{last,best}.{json,md} (process 0).

  Args:
    config: the run config.
    setup: the run's `step.Setup`.
    ckpts: the run's `RunCheckpoints`.
    template: what to restore into (`restore.state_template`).
    dataset: the loaded dataset; its test split is used.
    workdir: the run directory.

  Returns:
    'last' / 'best' -> {'step', 'meta', 'learners', 'n_test', 'attack'}, for each
    checkpoint that exists.
  """
  eval_fn = learner_eval.make_eval_fn(setup.model, config.eval.test_attack, setup.mesh,
                                      setup.compute_dtype)
  attack = config.eval.test_attack
  results = {}
  for which in ('last', 'best'):
    restored = ckpts.restore(template, which)
    if restored is None:
      continue
    state, ckpt_meta = restored
    per_learner = {}
    for name, variables in step_lib.learners(state, setup).items():
      per_learner[name] = learner_eval.summarize(
          learner_eval.evaluate_flags(eval_fn, variables, *dataset.test, config.eval.batch_size,
                                      config.seed + 1))
    step = int(parallel.to_host(state.step))
    results[which] = {
        'step': step, 'meta': ckpt_meta, 'learners': per_learner,
        'n_test': int(len(dataset.test[1])), 'attack': attack.to_dict()
    }
    if not parallel.is_main_process():
      continue
    write_table(
        workdir / 'eval' / f'test_{which}', results[which],
        f"Test set ({len(dataset.test[1])} images), checkpoint '{which}' at step "
        f"{step}: {attack.norm} {attack.kind.upper()}-{attack.steps}, "
        f'eps={attack.eps:.5f}, step={attack.step_size:.5f}, '
        f'restarts={attack.restarts}.')
  return results


def validate(config, setup, dataset, state, eval_fn, writer, bar, step: int,
             prefix: str = 'val') -> dict:
  """Validation of every learner, logged as '<prefix>/<learner>/<metric>' (prefix
  'presync' / 'postsync' for the validations around a sync window).

  Args:
    config, setup, dataset: the run's config, `step.Setup` and data (its val split).
    state: the TrainState to validate.
    eval_fn: `learners.make_eval_fn` of `eval.val_attack`.
    writer: the run's metric writer.
    bar: the progress bar, to print a summary line on (process 0).
    step: the optimizer step, for the log.
    prefix: the metrics' prefix.

  Returns:
    The logged metrics, '<prefix>/<learner>/<metric>' -> value.
  """
  val = learner_eval.evaluate_learners(eval_fn, step_lib.learners(state, setup), dataset.val,
                                       config.eval.batch_size, config.seed + 1)
  val = {f'{prefix}/{k}': v for k, v in val.items()}
  writer.write(step, val)
  if parallel.is_main_process():
    when = (f'epoch {step // setup.clock.steps_per_epoch}' if prefix == 'val' else
            f'{prefix} at step {step} (epoch {step / setup.clock.steps_per_epoch:.2f})')
    bar.write(f'{when}: ' + ', '.join(f'{n} {100 * val[f"{prefix}/{n}/clean_acc"]:.1f}/'
                                      f'{100 * val[f"{prefix}/{n}/robust_acc"]:.1f}'
                                      for n in step_lib.learner_names(setup)) + ' (clean/robust %)')
  return val


def validate_and_keep_best(config, setup, dataset, state, run_meta, eval_fn, ckpts, writer, bar,
                           step: int) -> dict:
  """Validation of every learner; saves `checkpoints/best` when `eval.best_metric`
  improves among validations whose clean accuracy is >= `eval.clean_floor`.

  Args:
    config, setup, dataset, state, eval_fn, writer, bar, step: as `validate`.
    run_meta: {'best_value', 'best_step'} so far.
    ckpts: the run's `RunCheckpoints`.

  Returns:
    The updated run meta (best value and step).
  """
  val = validate(config, setup, dataset, state, eval_fn, writer, bar, step)
  value = learner_eval.selection_value(val, config.eval.best_metric,
                                       config.eval.get('clean_floor', 0.0))
  if value is not None and value > run_meta['best_value']:
    run_meta = {'best_value': value, 'best_step': step}
    ckpts.save(step, state,
               dict(run_meta, epoch=step / setup.clock.steps_per_epoch, data_position=step),
               best=True)
  return run_meta
