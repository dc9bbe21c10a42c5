r"""MSD, Multi Steepest Descent (Maini, Wong & Kolter, ICML 2020, "Adversarial
Robustness Against the Union of Multiple Perturbation Models"; code locuslab/robust_union)
on CIFAR-10: one expert.

One attack per batch: from delta = 0, each of 50 iterations takes the l1, l2 and l-inf
steepest-ascent steps from ONE gradient and keeps, per example, the one with the highest
loss. The paper's CIFAR-10 steps: l-inf 0.003, l2 0.05, l1 1.0, 50 iterations; radii
here 8/255, 0.5, 12 (E-AT's, for one table; the paper's l-inf radius is 0.03).
Optimizer and budget: PGD-AT's (configs/pgd_at_cifar10.py). Model selection on l-inf PGD.

Every run-defining number is set below, on top of `config.base_config()`; the
config arg only picks a scale (config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/msd_cifar10.py --workdir=runs/msd_cifar10
  Cost: not timed (no GPU measured).
  Expected result: no paper number quoted in this repository
  (the paper reports another l-inf radius).

CPU miniature (`:smoke,epochs=10,train_size=5000,test_size=500,attack_steps=3` plus
--config.data.source=npz --config.data.path=cifar10.npz; experiments/multinorm_cifar10_cpu):
  Cost: 427 s of training on one core (the other core busy).
  Expected result (clean / l1 / l2 / l-inf / union %, APGD-CE + APGD-T on 500 test
  images, one seed; experiments/multinorm_cifar10_cpu/results.md): 29.8 / 15.4 / 21.2 / 16.0 / 14.6.
"""
import ml_collections

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
      'msd',
      sgd(
          lr_epochs=(0, 40, 80, 120),  # PGD-AT's optimizer
          lr_values=(0.01, 0.01, 0.001, 0.0001),
          weight_decay=3.5e-3,
          momentum=0.9),
      mix_values=(1.0, 1.0, 1.0, 1.0),  # the only expert: 'global' is its EMA
      norms=('l1', 'l2', 'linf'),  # one steepest step each per iteration
      per_norm=ml_collections.ConfigDict(
          dict(  # one attack per threat model
              linf=pgd_attack(eps=8 / 255, step_size=0.003, steps=50, norm='linf'),
              l2=pgd_attack(eps=0.5, step_size=0.05, steps=50, norm='l2'),
              l1=pgd_attack(eps=12.0, step_size=1.0, steps=50, norm='l1'))))

  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of mix_values
  c.meta.timescale = 'epochs'  # the constants below as set
  c.meta.clock = 'fractional'  # schedules read at the fractional epoch (TMLlib)
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'never'  # one expert: nothing to sync

  c.eval.val_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10)  # model selection
  c.eval.test_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=20)  # final test
  c.eval.best_metric = 'robust/robust_acc'  # on l-inf PGD
  return config.apply_arg(c, arg)
