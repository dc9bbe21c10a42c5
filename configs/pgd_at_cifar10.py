r"""PGD-AT (Madry et al. 2018) on CIFAR-10 with ResNet-18: one l-inf PGD-10 expert.

The same budget and optimizer as the robust expert of configs/generalist_cifar10.py
(120 epochs, lr [0, 40, 80, 120] -> [0.01, 0.01, 0.001, 0.0001], wd 3.5e-3,
eps 8/255, step 2/255, 10 steps), so a comparison isolates the Generalist
machinery. No sync; the 'global' learner reported beside it is its EMA.

Paper run (TFDS cifar10; not timed here, no GPU):
  python -m generalist_jax.main --config=configs/pgd_at_cifar10.py --workdir=runs/pgd_at_cifar10

Smoke run (5,000 images, BN SmallCNN, 10 epochs as a run-relative miniature; not timed
alone: the 20-epoch, 10,000-image PGD-5 run of experiments/fidelity_cifar10_cpu took
49 minutes on one shared core):
  python -m generalist_jax.main --config=configs/pgd_at_cifar10.py:smoke \
      --workdir=runs/pgd_at_smoke --config.data.source=npz --config.data.path=/path/to/cifar10.npz
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size); see config.apply_arg."""
  c = config.single_expert_config('robust', best_metric='robust/robust_acc')
  return config.apply_arg(c, arg)
