r"""Standard (clean) training on CIFAR-10 with ResNet-18: one natural expert.

The budget and optimizer of the natural expert of configs/generalist_cifar10.py.
Validation still reports PGD accuracy; the best checkpoint is picked on clean accuracy.
Every run-defining number is set below, on top of `config.base_config()`; the config
arg only picks a scale (config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/standard_cifar10.py --workdir=runs/standard_cifar10
  Cost: not timed (no GPU measured).
  Expected result: no paper number quoted in this repository.

CPU miniature (`:smoke,epochs=20,train_size=10000,test_size=0,attack_steps=5`,
experiments/fidelity_cifar10_cpu/run.sh):
  Cost: 9 min of training on one core (mean of 3 seeds, the other core busy).
  Expected result: 62.7 clean / 0.0 PGD-20 on 1,000 test images, checkpoint selected on
  validation (mean of 3 seeds; experiments/fidelity_cifar10_cpu/results.md).
"""
from generalist_jax import config
from generalist_jax.config import expert, pgd_attack, sgd


def get_config(arg: str | None = None):
  """arg: a scale ('smoke', 'reference_clock', epochs=N, train_size=N, test_size=N,
  attack_steps=N; comma separated): see config.apply_arg."""
  c = config.base_config()
  c.num_epochs = 120
  c.batch_size = 128
  c.model.name = 'resnet18'

  c.experts.natural = expert(
      'natural',  # clean cross-entropy
      sgd(
          lr_epochs=(0, 40, 80, 120),  # piecewise-linear lr knots (epochs)
          lr_values=(0.01, 0.01, 0.001, 0.0001),  # lr at those knots
          weight_decay=5e-4,
          momentum=0.9),
      mix_values=(1.0, 1.0, 1.0, 1.0))  # the only expert: 'global' is its EMA

  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of mix_values
  c.meta.timescale = 'epochs'  # the constants below as set
  c.meta.clock = 'fractional'  # schedules read at the fractional epoch (TMLlib)
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'never'  # one expert: nothing to sync

  c.eval.val_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10)  # reported only
  c.eval.test_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=20)  # final test
  c.eval.best_metric = 'natural/clean_acc'
  return config.apply_arg(c, arg)
