r"""Generalist++ variant (b) on CIFAR-10: one expert per threat model, l1 + l2 +
l-inf, mixed into one global learner for union robustness.

OUR READING of the Generalist++ abstract (arXiv 2510.13361: "split the overall
goal into sub-tasks, one expert each"); the paper's exact schedule is not
public to us. Each expert is PGD-10 adversarial training in its norm (radii
12, 0.5, 8/255 as in E-AT; step 2.5 eps / steps; l1 with the sparse top-k
step), with the CVPR'23 robust expert's optimizer (lr [0.01, 0.01, 0.001,
0.0001] over 120 epochs, wd 3.5e-3); mixing weights 1/3 each throughout; the
CVPR'23 EMA and sync rule (every step of epochs 75, 80, ..., 120).

  python -m generalist_jax.main --config=configs/generalist_pp_multinorm_cifar10.py \
      --workdir=runs/generalist_pp_multinorm
  # CPU scale: ...:smoke,epochs=5,attack_steps=5
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  c = config.base_config()
  c.experts = config.norm_experts(('l1', 'l2', 'linf'))
  c.eval.best_metric = 'global/sum_acc'   # clean + robust on validation (the reference's quantity)
  return config.apply_arg(c, arg)
