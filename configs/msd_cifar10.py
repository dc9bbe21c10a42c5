r"""MSD, Multi Steepest Descent (Maini, Wong & Kolter, ICML 2020, "Adversarial
Robustness Against the Union of Multiple Perturbation Models"; code
locuslab/robust_union) on CIFAR-10: one expert.

One attack per batch: from delta = 0, each of 50 iterations takes the l1, l2
and l-inf steepest-ascent steps from ONE gradient and keeps, per example, the
one with the highest loss. The paper's CIFAR-10 steps: l-inf 0.003, l2 0.05,
l1 1.0, 50 iterations; radii here 8/255, 0.5, 12 (E-AT's, for one table; the
paper's l-inf radius is 0.03). Optimizer and budget: PGD-AT's
(configs/pgd_at_cifar10.py). Model selection on l-inf PGD.

  python -m generalist_jax.main --config=configs/msd_cifar10.py --workdir=runs/msd_cifar10
  # CPU scale: --config=configs/msd_cifar10.py:smoke,epochs=5,attack_steps=5
"""
from generalist_jax import config

MSD_STEPS = 50
MSD_STEP_SIZES = {'linf': 0.003, 'l2': 0.05, 'l1': 1.0}


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  per_norm = config.norm_attacks(steps=MSD_STEPS)
  for norm, step in MSD_STEP_SIZES.items():
    per_norm[norm].step_size = step
  c = config.baseline_config('msd', norms=('l1', 'l2', 'linf'), per_norm=per_norm)
  return config.apply_arg(c, arg)
