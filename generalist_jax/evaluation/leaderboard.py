"""A RobustBench leaderboard entry (`model_info/<dataset>/<threat>/<name>.json` in
RobustBench's repository) from one evaluation: the same keys, accuracies as percent
strings with two decimals, eps as RobustBench writes it ("8/255", "0.5"), plus
threat_model ("Linf", "L2", "L1"; RobustBench's folder). What only the authors know
(link, name, venue, additional_data, ...) is left an empty string to fill in.
An entry is an AutoAttack 'standard' result in one threat model at the standard
budgets, so other evaluations get none (`not_an_entry` says why).
"""
from __future__ import annotations

import json

from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry

THREAT_MODELS = {'linf': 'Linf', 'l2': 'L2', 'l1': 'L1'}  # RobustBench's folder names
ARCHITECTURES = {
    'wide_resnet': 'WideResNet', 'preact_resnet18': 'PreActResNet-18', 'resnet18': 'ResNet-18',
    'small_cnn': 'SmallCNN', 'mlp': 'MLP'
}


def not_an_entry(plan) -> str | None:
  """Why an evaluation of `plan` (`runner.AttackSpec`s) is no RobustBench entry, or None
  when it is AutoAttack 'standard' in one norm at the standard budgets.

  Args:
    plan: the evaluation's `runner.AttackSpec`s.

  Returns:
    A sentence, or None.
  """
  norms = sorted({s.norm for s in plan})
  if len(norms) != 1:
    return f'an entry holds one threat model; this evaluation has {norms}'
  names = [s.name for s in plan]
  if names != list(aa.version_components('standard', norms[0])):
    return f"entries are AutoAttack 'standard' results; this evaluation ran {names}"
  changed = [
      s.name
      for s in plan
      if registry.settings(s.name, s.norm, dict(s.overrides)) != registry.standard_settings(
          s.name, s.norm)
  ]
  if changed:
    return f'budgets of {changed} differ from the standard ones (--steps, --n_targets, ...)'
  return None


def eps_string(norm: str, eps: float) -> str:
  """'8/255' for an l-inf radius that is a whole number of 1/255 steps, else '0.5'
  (`eps` with %g).

  Args:
    norm: 'linf', 'l2' or 'l1'.
    eps: the radius in pixel units of [0, 1].
  """
  steps = eps * 255
  if norm == 'linf' and steps >= 1 and abs(steps - round(steps)) < 1e-6:
    return f'{round(steps)}/255'
  return f'{eps:g}'


def architecture_name(model: dict) -> str:
  """RobustBench's spelling of a model config ('WideResNet-34-10', 'PreActResNet-18');
  a width multiplier other than 1 is appended ('SmallCNN (width 0.125)').

  Args:
    model: a model config as a dict (name, width, depth, widen_factor); names
      outside ARCHITECTURES are kept as they are.
  """
  name = ARCHITECTURES.get(model.get('name'), str(model.get('name', '')))
  if model.get('name') == 'wide_resnet':
    name = f"{name}-{model.get('depth', 34)}-{model.get('widen_factor', 10)}"
  width = float(model.get('width', 1.0))
  return name if width == 1 else f'{name} (width {width:g})'


def model_info(report: dict, spec, *, dataset: str, architecture: str) -> dict:
  """The entry of a finished 'standard' evaluation. A model whose output changed
  between identical calls gets no number_forward_passes (RobustBench wants
  deterministic ones). The footnote says when fewer than the whole test split were
  evaluated.

  Args:
    report: an evaluation report (clean_acc, robust_acc fractions; n_ex,
      test_split_size, subset, sanity).
    spec: one of its `runner.AttackSpec`s (norm, eps).
    dataset: RobustBench's dataset name, e.g. 'cifar10'.
    architecture: e.g. `architecture_name(model_config)`.

  Returns:
    The model_info dict, RobustBench's keys plus threat_model.
  """
  n, total = report['n_ex'], report.get('test_split_size')
  footnote = ''
  if total and n < total:
    footnote = (f"AutoAttack on {n} of the {total} test points "
                f"({report.get('subset', 'random')} subset).")
  deterministic = report['sanity']['output_changes_between_identical_calls'] == 0
  return {
      'link': '', 'name': '', 'authors': '', 'additional_data': '',
      'number_forward_passes': 1 if deterministic else '', 'dataset': dataset, 'venue': '',
      'architecture': architecture, 'eps': eps_string(spec.norm, spec.eps),
      'clean_acc': f"{100 * report['clean_acc']:.2f}", 'reported': '',
      'autoattack_acc': f"{100 * report['robust_acc']:.2f}", 'footnote': footnote, 'unreliable': '',
      'threat_model': THREAT_MODELS[spec.norm]
  }


def write(path, info: dict) -> None:
  """Writes a RobustBench entry as indented JSON.

  Args:
    path: the file.
    info: the entry (`model_info`).
  """
  with open(path, 'w') as f:
    f.write(json.dumps(info, indent=2) + '\n')
