r"""MART (Wang et al., ICLR 2020, "Improving Adversarial Robustness Requires
Revisiting Misclassified Examples"; code YisenWang/MART) on CIFAR-10: one expert.

Loss BCE(f(x'), y) + beta * KL(f(x) || f(x')) * (1 - p_y(x)), beta = 6 (the paper's
value); x' by l-inf CE-PGD-10, eps 8/255, step 0.007, from x + 0.001 N(0, 1). The
optimizer is the paper's ResNet-18 one and PGD-AT's here (lr 0.01, wd 3.5e-3, momentum
0.9), with the shared 120-epoch piecewise schedule. Every run-defining number is set
below, on top of `config.base_config()`; the config arg only picks a scale
(config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/mart_cifar10.py --workdir=runs/mart_cifar10
  Cost: not timed (no GPU measured).
  Expected result: no paper number quoted in this repository.

CPU miniature (`:smoke,epochs=10,train_size=5000,test_size=1000,attack_steps=5` plus
--config.data.source=npz --config.data.path=cifar10.npz; experiments/tradeoff_cifar10_cpu):
  Cost: 9 min of training on one core (the other core busy).
  Expected result: 30.4 clean / 16.4 PGD-20 / 11.8 APGD-CE+T on 500 test images, one
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
      'mart',
      sgd(
          lr_epochs=(0, 40, 80, 120),  # PGD-AT's optimizer
          lr_values=(0.01, 0.01, 0.001, 0.0001),
          weight_decay=3.5e-3,
          momentum=0.9),
      mix_values=(1.0, 1.0, 1.0, 1.0),  # the only expert: 'global' is its EMA
      attack=pgd_attack(eps=8 / 255, step_size=0.007, steps=10),  # CE-PGD
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
