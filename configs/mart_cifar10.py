r"""MART (Wang et al., ICLR 2020, "Improving Adversarial Robustness Requires
Revisiting Misclassified Examples"; code YisenWang/MART) on CIFAR-10: one expert.

Loss BCE(f(x'), y) + beta * KL(f(x) || f(x')) * (1 - p_y(x)), beta = 6 (the
paper's value); x' by l-inf CE-PGD-10, eps 8/255, step 0.007, from x + 0.001
N(0, 1). The optimizer is the paper's ResNet-18 one and PGD-AT's here (lr 0.01,
wd 3.5e-3, momentum 0.9), with the shared 120-epoch piecewise schedule.

  python -m generalist_jax.main --config=configs/mart_cifar10.py --workdir=runs/mart_cifar10
  # CPU scale: --config=configs/mart_cifar10.py:smoke,epochs=5,attack_steps=5
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  c = config.baseline_config('mart', config.pgd_attack(step_size=0.007), beta=6.0)
  return config.apply_arg(c, arg)
