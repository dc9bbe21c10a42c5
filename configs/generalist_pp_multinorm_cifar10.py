r"""Generalist++ variant (b) on CIFAR-10: one expert per threat model, l1 + l2 + l-inf,
mixed into one global learner for union robustness.

OUR READING of the Generalist++ abstract (arXiv 2510.13361: "split the overall goal into
sub-tasks, one expert each"); the paper's exact schedule is not public to us. Each expert
is PGD-10 adversarial training in its norm (radii 12, 0.5, 8/255 as in E-AT; step 2.5
eps / steps; l1 with the sparse top-k step), with the CVPR'23 robust expert's optimizer;
mixing weights 1/3 each throughout; the CVPR'23 EMA and sync rule.

Every run-defining number is set below, on top of `config.base_config()`; the
config arg only picks a scale (config.apply_arg).

Paper run (TFDS cifar10):
  python -m generalist_jax.main --config=configs/generalist_pp_multinorm_cifar10.py \
      --workdir=runs/generalist_pp_multinorm
  Cost: not timed (no GPU measured).
  Expected result: none published for this reading (our variant).

CPU miniature (`:smoke,epochs=10,train_size=5000,test_size=500,attack_steps=3` plus
--config.data.source=npz --config.data.path=cifar10.npz; experiments/multinorm_cifar10_cpu):
  Cost: 1,273 s of training on one core (the other core busy).
  Expected result (clean / l1 / l2 / l-inf / union %, APGD-CE + APGD-T on 500 test
  images, one seed, global learner; experiments/multinorm_cifar10_cpu/results.md):
  35.2 / 12.8 / 22.6 / 12.0 / 10.2.
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
  for norm, eps, step in (('l1', 12.0, 3.0), ('l2', 0.5, 0.125), ('linf', 8 / 255, 2 / 255)):
    c.experts[norm] = expert(
        'pgd',
        sgd(
            lr_epochs=(0, 40, 80, 120),  # the CVPR'23 robust expert's optimizer
            lr_values=(0.01, 0.01, 0.001, 0.0001),
            weight_decay=3.5e-3,
            momentum=0.9),
        mix_values=(1 / 3, 1 / 3, 1 / 3, 1 / 3),  # equal weights throughout
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
