r"""TRADES (Zhang et al., ICML 2019, "Theoretically Principled Trade-off between
Robustness and Accuracy"; code yaodongyu/TRADES) on CIFAR-10: one expert.

Loss CE(f(x), y) + beta * KL(f(x) || f(x')), beta = 6 (the paper's CIFAR-10
value, 1/lambda); x' maximises the KL by l-inf PGD-10, eps 8/255 (the paper's
0.031), step 0.007, from x + 0.001 N(0, 1). The paper trains a WRN-34-10 with
lr 0.1, wd 2e-4 for 76 epochs; here the optimizer and budget are PGD-AT's
(configs/pgd_at_cifar10.py: 120 epochs, lr [0.01, 0.01, 0.001, 0.0001], wd
3.5e-3), so the trade-off table compares losses, not schedules.

  python -m generalist_jax.main --config=configs/trades_cifar10.py --workdir=runs/trades_cifar10
  # CPU scale: --config=configs/trades_cifar10.py:smoke,epochs=5,attack_steps=5 plus
  # --config.data.source=npz --config.data.path=/path/to/cifar10.npz
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  c = config.baseline_config('trades', config.pgd_attack(step_size=0.007), beta=6.0)
  return config.apply_arg(c, arg)
