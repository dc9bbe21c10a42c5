"""Our AutoAttack against the official one (fra31/auto-attack, as packaged on PyPI by
`pyautoattack==0.2.0`, the `parity` extra) on the same model and points.

The flax learner is exported to its PyTorch twin (`models.torch_models`, same logits
to float rounding), the official AutoAttack runs on the twin, ours on the flax
model, and the per-example robust flags are compared: the accuracy difference and
how many points the two call differently. Budgets can be shrunk alike on both
sides (`iterations`, `targets`, `queries`) for quick checks.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from generalist_jax.evaluation import api

NORM_NAMES = {'linf': 'Linf', 'l2': 'L2', 'l1': 'L1'}


@dataclasses.dataclass
class Comparison:
  """Ours against the official AutoAttack on the same points: robust accuracies
  (fractions), counts of points by who fooled them, and each side's seconds."""
  attacks: tuple
  norm: str
  eps: float
  n: int
  ours_robust_acc: float
  official_robust_acc: float
  both_robust: int
  both_fooled: int
  only_ours_fooled: int  # we broke it, the official attack did not
  only_official_fooled: int
  ours_seconds: float
  official_seconds: float

  @property
  def difference(self) -> float:
    """Our robust accuracy minus the official one's (> 0: ours is weaker)."""
    return self.ours_robust_acc - self.official_robust_acc

  def row(self) -> dict:
    """The fields plus difference, agreement (fraction of points both call the
    same), each side's images a second and speed_ratio (official / our seconds)."""
    return dict(dataclasses.asdict(self), difference=self.difference,
                agreement=(self.both_robust + self.both_fooled) / self.n,
                ours_img_s=self.n / self.ours_seconds,
                official_img_s=self.n / self.official_seconds,
                speed_ratio=self.official_seconds / self.ours_seconds)


def _official(torch_model, norm: str, eps: float, attacks, seed: int, iterations, targets, queries):
  from pyautoattack import AutoAttack  # pylint: disable=g-import-not-at-top
  adversary = AutoAttack(torch_model, norm=NORM_NAMES[norm], eps=eps, version='standard', seed=seed,
                         device='cpu')
  adversary.attacks_to_run = list(attacks)  # 'standard' budgets, these attacks only
  if iterations is not None:
    for attack in (adversary.apgd, adversary.apgd_targeted, adversary.fab):
      attack.n_iter = iterations
    for attack in (adversary.apgd, adversary.apgd_targeted):
      attack.n_iter_orig = iterations  # what the l1 3 eps -> eps schedule splits
  if targets is not None:
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
  if queries is not None:
    adversary.square.n_queries = queries
  return adversary


def compare(logits_fn, params, torch_model, x: np.ndarray, y: np.ndarray, *, norm: str, eps: float,
            attacks=('apgd-ce', 'apgd-t', 'fab-t', 'square'), seed: int = 0,
            iterations: int | None = None, targets: int | None = None, queries: int | None = None,
            batch_size: int = 500) -> Comparison:
  """Runs both AutoAttacks on the same points and compares their robust flags.

  Args:
    logits_fn: `logits_fn(params, x) -> logits`, attacked by ours.
    params: its weights.
    torch_model: the PyTorch twin (NCHW, eval mode), attacked by the official one
      on the CPU.
    x: [N, H, W, C] float32 in [0, 1].
    y: [N] int labels.
    norm: 'linf', 'l2' or 'l1'.
    eps: the radius, pixel units of [0, 1].
    attacks: AutoAttack's names, run at 'standard' budgets on both sides.
    seed: both sides' seed.
    iterations, targets, queries: shrunk budgets applied to both sides (None:
      the standard ones).
    batch_size: both sides' batch size.

  Returns:
    The `Comparison`.
  """
  import torch  # pylint: disable=g-import-not-at-top
  # 'steps' would also set Square's queries; the later 'n_queries' wins for Square.
  overrides = {'steps': iterations, 'n_targets': targets, 'n_queries': queries}
  adversary = api.AutoAttack(logits_fn, params=params, norm=NORM_NAMES[norm], eps=eps,
                             version='custom', attacks_to_run=list(attacks), seed=seed,
                             overrides=overrides)
  started = time.perf_counter()
  ours = adversary.run(x, y, batch_size=batch_size).robust
  ours_seconds = time.perf_counter() - started

  official = _official(torch_model, norm, eps, attacks, seed, iterations, targets, queries)
  x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  y_t = torch.from_numpy(y.astype(np.int64))
  started = time.perf_counter()
  x_adv, _ = official.run_standard_evaluation(x_t, y_t, batch_size=batch_size)
  official_seconds = time.perf_counter() - started
  with torch.no_grad():
    theirs = (torch_model(x_adv).argmax(1) == y_t).numpy()
  return Comparison(attacks=tuple(attacks), norm=norm, eps=float(eps), n=int(len(y)),
                    ours_robust_acc=float(ours.mean()), official_robust_acc=float(theirs.mean()),
                    both_robust=int((ours & theirs).sum()), both_fooled=int(
                        (~ours & ~theirs).sum()), only_ours_fooled=int(
                            (~ours & theirs).sum()), only_official_fooled=int(
                                (ours & ~theirs).sum()), ours_seconds=ours_seconds,
                    official_seconds=official_seconds)
