r"""PGD-AT (Madry et al., ICLR 2018) on CIFAR-10 with ResNet-18: one l-inf PGD-10 expert.

The budget and optimizer of the robust expert of configs/generalist_cifar10.py, so a
comparison isolates the Generalist machinery. No sync; the 'global' learner reported
beside it is its EMA. Every run-defining number is set below, on top of
`config.base_config()`; the config arg only picks a scale (config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/pgd_at_cifar10.py --workdir=runs/pgd_at_cifar10
  Cost: not timed (no GPU measured).
  Expected result (ResNet-18, l-inf 8/255, clean / PGD-20 / AutoAttack): 82.78 / 51.30 /
  44.63, PGD-AT under a comparable protocol as reported by CURE (ICLR'24), quoted in
  DESIGN.md; not reproduced here.

CPU miniature (`:smoke,epochs=20,train_size=10000,test_size=0,attack_steps=5`,
experiments/fidelity_cifar10_cpu/run.sh):
  Cost: 45 min of training on one core (mean of 3 seeds, the other core busy).
  Expected result: checkpoint selected on validation, 1,000 test images: 36.7 clean /
  24.8 PGD-20 / 21.0 APGD-CE+T (mean of 3 seeds; experiments/fidelity_cifar10_cpu/results.md).
  `:smoke,epochs=10,train_size=5000,test_size=1000,attack_steps=5`: 7 min of training on
  one core; 29.0 / 21.6 / 17.6 on 500 test images, one seed
  (experiments/tradeoff_cifar10_cpu/README.md, results.md).
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

  c.experts.robust = expert(
      'pgd',  # cross-entropy on PGD examples
      sgd(
          lr_epochs=(0, 40, 80, 120),  # piecewise-linear lr knots (epochs)
          lr_values=(0.01, 0.01, 0.001, 0.0001),  # lr at those knots
          weight_decay=3.5e-3,
          momentum=0.9),
      mix_values=(1.0, 1.0, 1.0, 1.0),  # the only expert: 'global' is its EMA
      attack=pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10))

  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of mix_values
  c.meta.timescale = 'epochs'  # the constants below as set
  c.meta.clock = 'fractional'  # schedules read at the fractional epoch (TMLlib)
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'never'  # one expert: nothing to sync

  c.eval.val_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10)  # model selection
  c.eval.test_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=20)  # final test
  c.eval.best_metric = 'robust/robust_acc'  # PGD accuracy of the network itself
  return config.apply_arg(c, arg)
