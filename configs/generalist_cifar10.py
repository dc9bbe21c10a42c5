r"""Generalist (CVPR'23) on CIFAR-10: natural expert + l-inf PGD-10 expert, ResNet-18.

The reference setup (README, "The method, as implemented"): 120 epochs, batch 128, SGD momentum 0.9,
lr piecewise-linear [0, 40, 80, 120] -> [0.01, 0.01, 0.001, 0.0001] for both
experts, weight decay 3.5e-3 (robust) and 5e-4 (natural), eps 8/255, step 2/255;
EMA decay min(0.999, (t+1)/(t+10)); beta = interp(epoch, [0, 40, 80, 120],
[1, 1, 1, 0.4]); the global learner copied into both experts on every step of
epochs 75, 80, ..., 120.

Paper run (needs prepared TFDS cifar10, see README; not timed here, there was no
GPU: count roughly 1.13x a PGD-AT ResNet-18 run):
  python -m generalist_jax.main --config=configs/generalist_cifar10.py \
      --workdir=runs/generalist_cifar10

Smoke run (5,000 CIFAR-10 images, narrow BN SmallCNN, 10 epochs as a run-relative
miniature; not timed alone: the 20-epoch, 10,000-image PGD-5 run of
experiments/fidelity_cifar10_cpu took 65 minutes on one shared core):
  python -m generalist_jax.main --config=configs/generalist_cifar10.py:smoke \
      --workdir=runs/generalist_smoke --config.data.source=npz \
      --config.data.path=/path/to/cifar10.npz
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size); see config.apply_arg."""
  c = config.base_config()
  c.experts = config.generalist_experts()
  c.eval.best_metric = 'global/sum_acc'   # clean + robust on validation (the reference's quantity)
  return config.apply_arg(c, arg)
