r"""Generalist++ (arXiv 2510.13361) l-inf + l2 variant on CIFAR-10: two robust experts,
l-inf PGD-10 at 8/255 and l2 PGD-10 at 0.5, mixed with equal weights into one global
learner; reported, as the paper does, against l-inf attacks (PGD-20, AutoAttack).

Its exact mixing schedule is not public to us: equal weights (1/2 each) throughout, the
CVPR'23 robust expert's optimizer for both, its EMA and sync rule; step sizes 2.5 eps /
10 (2/255 for l-inf).

Every run-defining number is set below, on top of `config.base_config()`; the
config arg only picks a scale (config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/generalist_pp_linf_l2_cifar10.py \
      --workdir=runs/generalist_pp_linf_l2
  python -m generalist_jax.evaluate --workdir=runs/generalist_pp_linf_l2 --attacks=standard \
      --norm=linf --eps=8/255
  Cost: not timed (no GPU measured).
  Expected result (ResNet-18, l-inf 8/255, clean / PGD-20 / AutoAttack): the paper's
  multi-norm row of its Table I, 86.94 / 50.46 / 46.24, as quoted in DESIGN.md; not
  reproduced here.

CPU scale: `:reference_clock` (see experiments/reference_clock_cifar10_cpu) or a
run-relative miniature, `:smoke`; neither was run with this config (not timed).
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

  # One PGD-10 expert per threat model: (norm, radius, step = 2.5 radius / 10).
  for norm, eps, step in (('l2', 0.5, 0.125), ('linf', 8 / 255, 2 / 255)):
    c.experts[norm] = expert(
        'pgd',
        sgd(
            lr_epochs=(0, 40, 80, 120),  # the CVPR'23 robust expert's optimizer
            lr_values=(0.01, 0.01, 0.001, 0.0001),
            weight_decay=3.5e-3,
            momentum=0.9),
        mix_values=(0.5, 0.5, 0.5, 0.5),  # equal weights throughout
        attack=pgd_attack(eps=eps, step_size=step, steps=10, norm=norm))

  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of every expert's mix_values
  c.meta.timescale = 'epochs'  # the constants below as set, in epochs / steps
  c.meta.clock = 'fractional'  # schedules read at the fractional epoch (TMLlib)
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'reference'  # global learner copied into every expert ...
  c.meta.sync.start_epoch = 75  # ... from epoch 75 ...
  c.meta.sync.every_epochs = 5  # ... in every epoch e with e % 5 == 0 ...
  c.meta.sync.window_epochs = 1  # ... on every step of that one epoch

  c.eval.val_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10)  # model selection
  c.eval.test_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=20)  # final test
  c.eval.best_metric = 'global/sum_acc'  # clean + l-inf PGD on validation (the CVPR'23
  # reference's quantity)
  return config.apply_arg(c, arg)
