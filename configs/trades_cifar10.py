r"""TRADES (Zhang et al., ICML 2019, "Theoretically Principled Trade-off between
Robustness and Accuracy"; code yaodongyu/TRADES) on CIFAR-10: one expert.

Loss CE(f(x), y) + beta * KL(f(x) || f(x')), beta = 6 (the paper's CIFAR-10 value,
1/lambda); x' maximises the KL by l-inf PGD-10, eps 8/255 (the paper's 0.031), step
0.007, from x + 0.001 N(0, 1). The paper trains a WRN-34-10 with lr 0.1, wd 2e-4 for 76
epochs; here the optimizer and budget are PGD-AT's (configs/pgd_at_cifar10.py), so the
trade-off table compares losses, not schedules. Every run-defining number is set below,
on top of `config.base_config()`; the config arg only picks a scale (config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/trades_cifar10.py --workdir=runs/trades_cifar10
  Cost: not timed (no GPU measured).
  Expected result: no paper number quoted in this repository (the paper's is for a
  WRN-34-10 and its own schedule).

CPU miniature (`:smoke,epochs=10,train_size=5000,test_size=1000,attack_steps=5` plus
--config.data.source=npz --config.data.path=cifar10.npz; experiments/tradeoff_cifar10_cpu):
  Cost: 9 min of training on one core (the other core busy).
  Expected result: 37.0 clean / 18.2 PGD-20 / 13.6 APGD-CE+T on 500 test images, one
  seed (experiments/tradeoff_cifar10_cpu/results.md).
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
      'trades',
      sgd(
          lr_epochs=(0, 40, 80, 120),  # PGD-AT's optimizer
          lr_values=(0.01, 0.01, 0.001, 0.0001),
          weight_decay=3.5e-3,
          momentum=0.9),
      mix_values=(1.0, 1.0, 1.0, 1.0),  # the only expert: 'global' is its EMA
      attack=pgd_attack(eps=8 / 255, step_size=0.007, steps=10),  # maximises the KL
      beta=6.0)  # weight of the KL term

  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of mix_values
  c.meta.timescale = 'epochs'  # the constants below as set
  c.meta.clock = 'fractional'  # schedules read at the fractional epoch (TMLlib)
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'never'  # one expert: nothing to sync

  c.eval.val_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10)  # model selection
  c.eval.test_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=20)  # final test
  c.eval.best_metric = 'robust/robust_acc'
  return config.apply_arg(c, arg)
