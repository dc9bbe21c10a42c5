"""The one evaluation path. The `AutoAttack` API, external PyTorch checkpoints
(`external.py`) and a run's checkpoints (`run/evaluate_run.py`) all call
`evaluate`: eps checked against the image size, the plan made, the attacks run
resumably (`runner.run_evaluation`), then the report (accuracies per attack, worst
case per norm, union, missing components, sanity checks, versions). The command-line
paths (external checkpoints, runs) call it through `evaluate_and_write`, which then
writes their files (`write_outputs`).
"""
from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from generalist_jax import parallel
from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.attacks import threat
from generalist_jax.evaluation import leaderboard
from generalist_jax.evaluation import reports
from generalist_jax.evaluation import runner
from generalist_jax.evaluation import summary as summary_lib

SUBSETS = ('random', 'first')


@dataclasses.dataclass
class Evaluation:
  """A finished evaluation. `report`: JSON-ready (the resume settings, seed, n_ex,
  clean_acc, attacks, worst_case, robust_acc, missing_components, sanity, versions);
  `state`: per-example int8 flags per column of `plan` (and 'x_adv' when kept);
  `worst`: norm -> [N] bool robust to every attack of that norm; `union`: [N] bool."""
  report: dict
  state: dict
  plan: list
  worst: dict
  union: np.ndarray


def check_settings(norms, eps, attacks: str, overrides: dict | None = None) -> list:
  """The plan of an evaluation, checked before any data is read.

  Args:
    norms: threat models.
    eps: one radius per norm, pixel units of [0, 1].
    attacks: an AutoAttack version or a comma list of attacks.
    overrides: budget changes (`runner.make_plan`).

  Returns:
    The `runner.AttackSpec`s.

  Raises:
    ValueError: a count mismatch, an unknown attack or version, a size override
      below 1.
  """
  if len(list(eps)) != len(list(norms)):
    raise ValueError(f'--eps needs one value per norm ({list(norms)}), got {list(eps)}')
  return runner.make_plan(list(norms), [float(e) for e in eps], attacks, overrides)


def check_eps(norms, eps, image_shape, *, allow_large_eps: bool,
              names=('--eps', '--allow_large_eps')) -> None:
  """Refuses a radius whose ball holds every image (eps typed in 0-255 units?).

  Args:
    norms, eps: one radius per norm.
    image_shape: (H, W, C) of the images.
    allow_large_eps: accept such a radius.
    names: how the caller spells the eps and override arguments in the message.

  Raises:
    ValueError: such a radius (`threat.eps_problem`), unless allow_large_eps.
  """
  for norm, e in zip(norms, eps):
    problem = threat.eps_problem(norm, float(e), int(np.prod(image_shape)))
    if problem and not allow_large_eps:
      raise ValueError(f'{names[0]}: {problem} ({names[1]} to run it anyway)')


def check_subset(subset: str) -> None:
  """Refuses a test subset other than SUBSETS ('random', 'first').

  Args:
    subset: the --subset value.

  Raises:
    ValueError: another value.
  """
  if subset not in SUBSETS:
    raise ValueError(f'--subset={subset!r}: use one of {SUBSETS}')


def check_save_adv(save_adv: bool, norms) -> None:
  """Refuses --save_adv with several norms: one x_adv is kept per example.

  Args:
    save_adv: whether the adversarial examples are written.
    norms: the evaluation's threat models.

  Raises:
    ValueError: save_adv with more than one norm.
  """
  if save_adv and len(list(norms)) != 1:
    raise ValueError(f'--save_adv keeps one adversarial example per image: evaluate one '
                     f'norm at a time (got {list(norms)}).')


def choose_subset(images, labels, n_ex: int, subset: str = 'random'):
  """The test examples to evaluate.

  Args:
    images, labels: the test split, [N, H, W, C] and [N].
    n_ex: how many; all N when n_ex >= N.
    subset: 'random', a fixed random subset (`runner.sample_test_points`), or
      'first', the first n_ex in the split's order (as RobustBench's benchmark
      takes them).

  Returns:
    (images, labels, indices into the split).

  Raises:
    ValueError: n_ex < 1, another subset.
  """
  check_subset(subset)
  if subset == 'random':
    return runner.sample_test_points(images, labels, n_ex)
  registry.check_positive({'n_ex': n_ex})
  keep = np.arange(min(n_ex, len(labels)))
  return images[keep], np.asarray(labels[keep]), keep


def missing_components(attacks: str, norms) -> list[str]:
  """The components of an AutoAttack version that no norm of the evaluation has.

  Args:
    attacks: a version, or an attack list (nothing is missing then).
    norms: the evaluation's threat models.

  Returns:
    Sorted 'norm/attack' names (`attacks.autoattack.missing_components`).
  """
  return sorted({f'{n}/{m}' for n in norms for m in aa.missing_components(attacks, n)})


def clean_floats(images) -> np.ndarray:
  """The x_adv buffer before any attack: the clean images as floats.

  Args:
    images: [N, H, W, C] uint8 (divided by 255) or float in [0, 1].

  Returns:
    A float32 copy.
  """
  images = np.asarray(images)
  return (images.astype(np.float32) /
          np.float32(255.0) if images.dtype == np.uint8 else np.array(images, np.float32))


def _keep_x_adv(state: dict, x_adv) -> dict:
  """Puts the caller's buffer in the state, so the state file carries the points
  found before an interruption (restored into the buffer on resume)."""
  if x_adv is None:
    return state
  if 'x_adv' in state:
    x_adv[...] = state['x_adv']
  state['x_adv'] = x_adv
  return state


def _settings(identity, seed, n: int, plan, *, keeps_x_adv: bool) -> dict:
  """What defines the evaluation (the caller's identity, seed, n_ex, the plan): the
  state file must match it to resume, and the report starts from it."""
  settings = dict(identity or {}, seed=int(seed), n_ex=int(n),
                  attacks=[dataclasses.asdict(s) for s in plan])
  if keeps_x_adv:  # only then: state files written without x_adv still resume
    settings['keeps_x_adv'] = True
  return settings


def _resume(state_path, settings: dict):
  """(the state saved at `state_path` or None, save(state) or None): an interrupted
  evaluation resumes from its file, which is rewritten after every batch."""
  state = save = None
  if state_path is not None:
    path = pathlib.Path(state_path)
    state = reports.load_state(path, settings)  # every process reads it
    if state is not None and parallel.is_main_process():
      print(f'resuming {path}')
    if parallel.is_main_process():  # one writer; every process has the flags
      save = lambda s: reports.save_state(path, s, settings)
  return state, save


def _finished(apply_fn, params, images, state: dict, plan, settings: dict, attacks: str,
              norms) -> Evaluation:
  """The `Evaluation` of a complete state: the summary, the sanity checks (the model
  called twice on `images`), the library versions and the missing components."""
  summary, worst, union = summary_lib.summarize(state, plan)
  # A randomised model ('rand') changes between calls by design.
  gap = 0.0 if attacks == 'rand' else summary_lib.determinism_gap(apply_fn, params, images)
  report = dict(settings, versions=reports.library_versions(),
                missing_components=missing_components(attacks, norms),
                sanity=summary_lib.sanity_checks(state, plan, gap), **summary)
  return Evaluation(report, state, plan, worst, union)


def evaluate(apply_fn, params, images, labels, *, norms, eps, attacks: str = 'standard',
             overrides: dict | None = None, seed: int = 0, batch_size: int = 256, example_ids=None,
             state_path=None, identity: dict | None = None, x_adv=None,
             allow_large_eps: bool = False, eps_names=('--eps', '--allow_large_eps'),
             progress: bool = True, stop_after_batches: int | None = None,
             model_name: str = 'apply_fn') -> Evaluation | None:
  """Runs `attacks` (a version of `attacks.autoattack` or a comma list) per norm, in
  order, each on the examples every earlier one of its norm missed.

  Args:
    apply_fn: predictor `apply_fn(params, x [B, H, W, C] in [0, 1]) -> logits [B, K]`.
    params: its weights (a pytree).
    images: [N, H, W, C] uint8 or float in [0, 1]; labels: [N] int class ids.
    norms, eps: one radius per norm, pixel units of [0, 1].
    overrides: budget changes (steps, n_targets, restarts, n_queries); None values
      are dropped.
    seed, example_ids: each example's attack keys (`runner.column_key`); ids default
      to 0..N-1 (e.g. indices into the test split).
    state_path: an .npz saved after every batch; an existing one resumes, refused
      (ValueError) when its settings differ.
    identity: settings that define the evaluation beyond seed, n_ex and the plan
      (checkpoint, learner, ...): part of the state file's check and of the report.
    x_adv: optional float32 [N, H, W, C] buffer (e.g. `clean_floats(images)`); each
      fooled example's adversarial point is written there (kept in the state file).
    eps_names: how the caller spells eps and allow_large_eps in errors.
    stop_after_batches: stop early, as an interruption would (tests).
    model_name: names the model in errors.

  Returns:
    The `Evaluation`, or None when stopped before every attack finished.

  Raises:
    ValueError, before any attack runs: an unknown attack or norm, a size below 1,
    an eps whose ball holds every image (unless `allow_large_eps`), inputs or a
    model off `checks`' contract, a state file with other settings.
  """
  registry.check_positive({'batch_size': batch_size})
  norms, eps = list(norms), [float(e) for e in eps]
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  plan = check_settings(norms, eps, attacks, overrides)
  images, labels = np.asarray(images), np.asarray(labels)
  check_eps(norms, eps, images.shape[1:], allow_large_eps=allow_large_eps, names=eps_names)
  n = len(labels)
  settings = _settings(identity, seed, n, plan, keeps_x_adv=x_adv is not None)
  state, save = _resume(state_path, settings)
  state = _keep_x_adv(state if state is not None else runner.new_state(n, plan), x_adv)
  state = runner.run_evaluation(apply_fn, params, images, labels, plan, batch_size=batch_size,
                                seed=seed, example_ids=example_ids, state=state, save=save,
                                progress=progress, stop_after_batches=stop_after_batches,
                                x_adv=x_adv, model_name=model_name)
  if not summary_lib.is_complete(state, plan):
    return None
  return _finished(apply_fn, params, images[:min(n, batch_size)], state, plan, settings, attacks,
                   norms)


def write_adversarial(path, x_adv, labels, evaluation: Evaluation, example_ids) -> None:
  """Writes the adversarial examples of an evaluation as an .npz: x_adv, y, clean and
  robust [N] bool (robust: the union over norms) and example_ids.

  Args:
    path: the file.
    x_adv: float32 [N, H, W, C], the clean image where no attack succeeded (as
      AutoAttack's run_standard_evaluation returns it).
    labels: [N].
    evaluation: the finished `Evaluation` (its clean flags and union).
    example_ids: [N] indices into the test split.
  """
  np.savez(path, x_adv=np.asarray(x_adv, np.float32), y=np.asarray(labels),
           clean=evaluation.state['clean'] == 1, robust=evaluation.union,
           example_ids=np.asarray(example_ids))


def write_outputs(stem: pathlib.Path, evaluation: Evaluation, labels, meta: dict, *, x_adv=None,
                  example_ids=None, dataset: str = '', architecture: str = '') -> dict:
  """Writes an evaluation's files and prints its accuracies and warnings.

  Args:
    stem: the files' path without suffix.
    evaluation: the finished `Evaluation`.
    labels: [N], for the csv.
    meta: the entry point's fields (name, workdir, command, ...) over
      `evaluation.report`.
    x_adv, example_ids: when x_adv is given, <stem>.adv.npz (`write_adversarial`).
    dataset, architecture: RobustBench's names, for the entry.

  Only process 0 of a multi-process job writes and prints; every process returns
  the report.

  Returns:
    The report as written: <stem>.{json,csv,md} (`reports.write_reports`), and
    <stem>.model_info.json where the evaluation is a RobustBench entry
    (`leaderboard`; otherwise the reason is printed).
  """
  if not parallel.is_main_process():  # process 0 writes and prints; the same report
    return dict(evaluation.report, **meta)
  report = reports.write_reports(stem, evaluation.state, evaluation.plan, labels,
                                 dict(evaluation.report, **meta))
  if x_adv is not None:
    path = stem.parent / f'{stem.name}.adv.npz'
    write_adversarial(path, x_adv, labels, evaluation, example_ids)
    print(f'adversarial examples -> {path}')
  reason = leaderboard.not_an_entry(evaluation.plan)
  if reason:
    print(f'no RobustBench entry: {reason}')
  else:
    path = stem.parent / f'{stem.name}.model_info.json'
    leaderboard.write(
        path,
        leaderboard.model_info(report, evaluation.plan[0], dataset=dataset,
                               architecture=architecture))
    print(f'RobustBench entry -> {path}')
  print(f"{meta['name']}: clean {100 * report['clean_acc']:.2f}%, robust (worst case) "
        f"{100 * report['robust_acc']:.2f}% -> {stem}.md")
  for w in report['sanity']['warnings']:
    print('WARNING:', w)
  return report


def evaluate_and_write(apply_fn, params, images, labels, *, stem: pathlib.Path, meta: dict, norms,
                       eps, attacks: str, overrides: dict | None, seed: int, batch_size: int,
                       example_ids, identity: dict, save_adv: bool, allow_large_eps: bool,
                       progress: bool, stop_after_batches: int | None, model_name: str,
                       dataset: str, architecture: str) -> dict | None:
  """The command-line paths' evaluation (a run's checkpoint, an external one):
  `evaluate`, resumable from <stem>.state.npz, then `write_outputs` to <stem>.*.

  Args:
    apply_fn, params, images, labels, norms, eps, attacks, overrides, seed,
      batch_size, example_ids, identity, allow_large_eps, progress,
      stop_after_batches, model_name: as `evaluate`.
    stem: the output files' path without suffix (its folder must exist).
    meta: the entry point's report fields (name, workdir, command, subset, ...);
      seconds_this_invocation is added.
    save_adv: also keep the adversarial examples and write <stem>.adv.npz.
    dataset, architecture: RobustBench's names, for the entry (`write_outputs`).

  Returns:
    The report as written, or None when stopped early (how to resume is printed).

  Raises:
    ValueError: as `evaluate`, before any attack runs.
  """
  started = time.time()
  x_adv = clean_floats(images) if save_adv else None
  state_path = stem.parent / f'{stem.name}.state.npz'
  done = evaluate(apply_fn, params, images, labels, norms=norms, eps=eps, attacks=attacks,
                  overrides=overrides, seed=seed, batch_size=batch_size, example_ids=example_ids,
                  state_path=state_path, identity=identity, x_adv=x_adv,
                  allow_large_eps=allow_large_eps, progress=progress,
                  stop_after_batches=stop_after_batches, model_name=model_name)
  if done is None:
    if parallel.is_main_process():
      print(f'stopped early; start the same command again to resume ({state_path})')
    return None
  meta = dict(meta, seconds_this_invocation=time.time() - started)
  return write_outputs(stem, done, labels, meta, x_adv=x_adv, example_ids=example_ids,
                       dataset=dataset, architecture=architecture)
