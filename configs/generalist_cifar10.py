r"""Generalist (Wang et al., CVPR 2023; code PKU-ML/Generalist) on CIFAR-10: a natural
expert and an l-inf PGD-10 expert, ResNet-18, mixed into one global learner.

Every number that defines the run is set in `get_config` below; the rest (data
pipeline, evaluation cadence, checkpointing) are `config.base_config()`'s defaults
(generalist_jax/config/builders.py). The config arg only picks a scale
(generalist_jax/config/presets.py: apply_arg).

Paper run (needs prepared TFDS cifar10, see README):
  python -m generalist_jax.main --config=configs/generalist_cifar10.py \
      --workdir=runs/generalist_cifar10
  Cost: not timed (no GPU measured). On CPU a Generalist-2 step costs 1.11-1.14 PGD-AT
  steps (README "Speed"; experiments/benchmarks/results/ab_*_generalist_ratios_v9.json).
  Expected result (ResNet-18, l-inf 8/255, clean / PGD-20 / AutoAttack): the
  Generalist++ paper's Table I row for natural + l-inf experts ("Generalist-D"),
  89.09 / 50.01 / 46.07, as quoted in DESIGN.md; not reproduced here.

Reference clock (the reference's 45,840 steps on 16x16 images and a BN SmallCNN w0.5):
  python -m generalist_jax.main --config=configs/generalist_cifar10.py:reference_clock \
      --workdir=runs/generalist_rc --config.data.source=npz --config.data.path=cifar10.npz
  Cost: 0.154-0.163 s a step on one core of a 2-core AMD EPYC Zen 5, validation about 5%
  on top: about 2.1 hours (experiments/reference_clock_cifar10_cpu/README.md).
  Expected result: that study is in progress, no verdict yet.

CPU miniature (`:smoke,epochs=20,train_size=10000,test_size=0,attack_steps=5`, the
run-relative miniature protocol of experiments/fidelity_cifar10_cpu/run.sh):
  Cost: 59 min of training on one core (mean of 3 seeds, the other core busy).
  Expected result: global learner, checkpoint selected on validation, 1,000 test images:
  37.3 clean / 24.8 PGD-20 / 21.3 APGD-CE+T (mean of 3 seeds;
  experiments/fidelity_cifar10_cpu/results.md). `:smoke` alone (5,000 images, 10
  epochs, PGD-10) was not timed.
"""
from generalist_jax import config
from generalist_jax.config import expert, pgd_attack, sgd


def get_config(arg: str | None = None):
  """arg: a scale ('smoke', 'reference_clock', epochs=N, train_size=N, test_size=N,
  attack_steps=N; comma separated): see config.apply_arg."""
  c = config.base_config()
  c.num_epochs = 120  # the reference's budget
  c.batch_size = 128
  c.model.name = 'resnet18'

  # Both experts: SGD with a piecewise-linear lr through (epoch, lr) knots; they
  # differ in task and weight decay. mix_values: weight in the global learner at
  # each of meta.mix_epochs (beta for the robust expert, 1 - beta for the natural).
  c.experts.natural = expert(
      'natural',  # clean cross-entropy
      sgd(lr_epochs=(0, 40, 80, 120), lr_values=(0.01, 0.01, 0.001, 0.0001), weight_decay=5e-4,
          momentum=0.9),
      mix_values=(0.0, 0.0, 0.0, 0.6))  # 1 - beta
  c.experts.robust = expert(
      'pgd',  # PGD-AT: cross-entropy on PGD examples
      sgd(
          lr_epochs=(0, 40, 80, 120),
          lr_values=(0.01, 0.01, 0.001, 0.0001),
          weight_decay=3.5e-3,  # the reference's robust-expert decay
          momentum=0.9),
      mix_values=(1.0, 1.0, 1.0, 0.4),  # beta = interp(epoch, knots, these)
      attack=pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10))

  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of every expert's mix_values
  c.meta.timescale = 'epochs'  # the constants below as set, in epochs / steps
  c.meta.clock = 'fractional'  # schedules read at the fractional epoch (TMLlib);
  # reference_clock switches to main.py's 'integer'
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'reference'  # global learner copied into both experts ...
  c.meta.sync.start_epoch = 75  # ... from epoch 75 ...
  c.meta.sync.every_epochs = 5  # ... in every epoch e with e % 5 == 0 ...
  c.meta.sync.window_epochs = 1  # ... on every step of that one epoch

  c.eval.val_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=10)  # model selection
  c.eval.test_attack = pgd_attack(eps=8 / 255, step_size=2 / 255, steps=20)  # final test
  c.eval.best_metric = 'global/sum_acc'  # clean + robust on validation (the reference's
  # quantity, there on the test set)
  return config.apply_arg(c, arg)
