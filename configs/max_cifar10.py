r"""MAX multi-norm adversarial training on CIFAR-10 (Tramer & Boneh, NeurIPS 2019;
as the baseline of Maini et al. 2020 and Croce & Hein 2022): one expert.

Every batch is attacked in l1, l2 and l-inf (independent PGD-10 each; radii
12, 0.5, 8/255; step 2.5 eps / steps); each example trains on the norm whose
attack gave the highest cross-entropy (worst case per example). Optimizer and
budget: PGD-AT's (configs/pgd_at_cifar10.py). Model selection on l-inf PGD.

  python -m generalist_jax.main --config=configs/max_cifar10.py --workdir=runs/max_cifar10
  # CPU scale: --config=configs/max_cifar10.py:smoke,epochs=5,attack_steps=5
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  c = config.baseline_config('max', norms=('l1', 'l2', 'linf'))
  return config.apply_arg(c, arg)
