r"""Standard (clean) training on CIFAR-10 with ResNet-18: one natural expert.

The same budget and optimizer as the natural expert of configs/generalist_cifar10.py
(120 epochs, lr [0, 40, 80, 120] -> [0.01, 0.01, 0.001, 0.0001], wd 5e-4).
Validation still reports PGD accuracy; the best checkpoint is picked on clean accuracy.

Paper run (TFDS cifar10; not timed here, no GPU):
  python -m generalist_jax.main --config=configs/standard_cifar10.py --workdir=runs/standard_cifar10

Smoke run (5,000 images, BN SmallCNN, 10 epochs as a run-relative miniature; not timed
alone: the 20-epoch, 10,000-image run of experiments/fidelity_cifar10_cpu took 8 minutes
on one core):
  python -m generalist_jax.main --config=configs/standard_cifar10.py:smoke \
      --workdir=runs/standard_smoke --config.data.source=npz --config.data.path=/path/to/cifar10.npz
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size); see config.apply_arg."""
  c = config.single_expert_config('natural', best_metric='natural/clean_acc')
  return config.apply_arg(c, arg)
