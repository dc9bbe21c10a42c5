r"""Generalist++ (arXiv 2510.13361) l-inf + l2 variant on CIFAR-10: two robust experts,
l-inf PGD-10 at 8/255 and l2 PGD-10 at 0.5, mixed with equal weights into one global
learner; reported, as the paper does, against l-inf attacks (PGD-20, AutoAttack).

The paper's own multi-norm row (its Table I, ResNet-18, CIFAR-10, as quoted in public
notes of that table): 86.94 clean / 50.46 PGD-20 / 46.24 AutoAttack (l-inf 8/255).
Its exact mixing schedule is not public to us: equal weights (1/2 each) throughout,
the CVPR'23 robust expert's optimizer for both (lr [0.01, 0.01, 0.001, 0.0001] at
epochs [0, 40, 80, 120], wd 3.5e-3), its EMA and sync rule (every step of epochs
75, 80, ..., 120); step sizes 2.5 eps / 10 (2/255 for l-inf).

  python -m generalist_jax.main --config=configs/generalist_pp_linf_l2_cifar10.py \
      --workdir=runs/generalist_pp_linf_l2
  python -m generalist_jax.evaluate --workdir=runs/generalist_pp_linf_l2 --attacks=standard \
      --norm=linf --eps=8/255
  # CPU scale with the reference's clock: ...:reference_clock (see
  # experiments/reference_clock_cifar10_cpu); a run-relative miniature: ...:smoke
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' / 'reference_clock' and key=value (epochs, train_size, test_size,
  attack_steps); see config.apply_arg."""
  c = config.base_config()
  c.experts = config.norm_experts(('l2', 'linf'))
  c.eval.best_metric = 'global/sum_acc'   # clean + robust (l-inf PGD) on validation
  return config.apply_arg(c, arg)
