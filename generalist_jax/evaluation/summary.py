"""The numbers of an evaluation, computed from its per-example flags.

`runner.run_evaluation` fills int8 flags per example and column (1 robust, 0
fooled, -1 not run: already broken, -2 pending; `attacks.autoattack`). Here
they become the report's tables: accuracy after each attack, the worst case per
norm and over the union of norms (`summarize`), and the checks that flag a
masked, randomised or broken evaluation (`sanity_checks`, `determinism_gap`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry


def is_complete(state: dict, plan) -> bool:
  """Whether every flag is filled in: the clean column and every attack of `plan`.

  Args:
    state: the flag state (`runner.new_state`'s columns).
    plan: the evaluation's `runner.AttackSpec`s.

  Returns:
    False while some example is still pending (an evaluation stopped early).
  """
  return all(np.all(state[c] != aa.PENDING) for c in ['clean'] + [s.column for s in plan])


def summarize(state: dict, plan: list) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
  """The report's numbers of a finished evaluation (every flag filled in).

  Args:
    state: the complete flag state (`runner.new_state`'s columns).
    plan: the evaluation's `runner.AttackSpec`s, in the order they ran.

  Returns:
    (summary, worst, union). summary: n_ex, clean_acc, robust_acc (fractions),
    'attacks' (column -> robust_acc_after: the worst case over the attacks of
    its norm up to it, newly_fooled, attacked, settings) and 'worst_case' (norm
    -> accuracy, and 'union' over several norms); worst: norm -> [N] bool,
    robust to every attack of that norm; union: [N] bool, robust in every norm
    (the clean flags when the plan is empty).

  Raises:
    ValueError: a flag is still pending (`attacks.autoattack.worst_case`).
  """
  clean = state['clean'] == 1
  norms = list(dict.fromkeys(s.norm for s in plan))
  out = {'n_ex': int(len(clean)), 'clean_acc': float(clean.mean()), 'attacks': {}, 'worst_case': {}}
  worst = {}
  for norm in norms:
    specs = [s for s in plan if s.norm == norm]
    for k, spec in enumerate(specs):
      col = state[spec.column]
      out['attacks'][spec.column] = {
          'robust_acc_after': float(
              aa.worst_case(clean, [state[s.column] for s in specs[:k + 1]]).mean()),
          'newly_fooled': int((col == aa.FOOLED).sum()), 'attacked': int(
              (col != aa.SKIPPED).sum()), 'settings': spec.settings()
      }
    worst[norm] = aa.worst_case(clean, [state[s.column] for s in specs])
    out['worst_case'][norm] = float(worst[norm].mean())
  union = aa.union_over_norms(worst) if worst else clean
  out['worst_case']['union' if len(norms) > 1 else norms[0] if norms else 'none'] = float(
      union.mean())
  out['robust_acc'] = float(union.mean())
  return out, worst, union


def _black_box_beats_white_box(state: dict, plan) -> int:
  """How many examples a black-box attack broke that every white-box attack of its
  norm missed: a sign of gradient masking."""
  count = 0
  for spec in plan:
    if registry.ATTACKS[spec.name].box != 'black':
      continue
    white = [
        state[s.column]
        for s in plan
        if s.norm == spec.norm and registry.ATTACKS[s.name].box == 'white'
    ]
    beaten = (state[spec.column]
              == aa.FOOLED) & np.logical_and.reduce([w != aa.FOOLED for w in white] +
                                                    [np.ones(len(state['clean']), bool)])
    count += int(beaten.sum())
  return count


def _warnings(checks: dict, determinism_gap: float) -> list[str]:
  """One sentence per check that failed, saying what it suggests."""
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
  return warnings


def sanity_checks(state: dict, plan, determinism_gap: float) -> dict:
  """Counts of what makes an evaluation suspect, and a warning for each that is not 0.

  Args:
    state: the complete flag state (`runner.new_state`'s columns, with the
      'grad_zero', 'grad_nonfinite' and 'outside_ball' flags).
    plan: the evaluation's `runner.AttackSpec`s.
    determinism_gap: `determinism_gap` of the model (0 for a deterministic one).

  Returns:
    {'zero_input_gradient', 'nonfinite_input_gradient',
    'adversarial_outside_ball_or_box', 'black_box_beats_white_box': example
    counts; 'output_changes_between_identical_calls': the gap; 'warnings': the
    sentences}.
  """
  checks = {
      'zero_input_gradient': int(state['grad_zero'].sum()),
      'nonfinite_input_gradient': int(state['grad_nonfinite'].sum()),
      'adversarial_outside_ball_or_box': int(state['outside_ball'].sum()),
      'output_changes_between_identical_calls': float(determinism_gap),
      'black_box_beats_white_box': _black_box_beats_white_box(state, plan)
  }
  checks['warnings'] = _warnings(checks, determinism_gap)
  return checks


def determinism_gap(apply_fn, params, images) -> float:
  """Largest change of the logits between two identical calls of the model.

  Args:
    apply_fn: the predictor, `apply_fn(params, x [B, H, W, C] in [0, 1]) -> logits`.
    params: its weights.
    images: [B, H, W, C] uint8 or float in [0, 1].

  Returns:
    max |logits_1 - logits_2|: 0 for a deterministic model.
  """
  x = data_lib.to_float(images) if images.dtype == np.uint8 else np.asarray(images, np.float32)
  fn = jax.jit(apply_fn, compiler_options=models.compiler_options())
  return float(jnp.max(jnp.abs(fn(params, x) - fn(params, x))))
