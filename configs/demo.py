r"""Offline demo: standard training, PGD-AT and Generalist on scikit-learn's 8x8 digits.

  python -m generalist_jax.main --config=configs/demo.py --workdir=runs/demo

A suite (generalist_jax/run/suite.py): the three runs train one after another in
runs/demo/{generalist,pgd_at,standard}, each is evaluated on the 297 test digits
with PGD and APGD-CE (l-inf and l2), and the comparison is printed and written to
runs/demo/demo_table.{md,json} and runs/demo/report.md, with PNG plots in every
run's plots/. No download: the digits ship inside scikit-learn.

Threat model: l-inf eps = 0.2 (the training and model-selection attack) and l2
eps = 0.5, pixels in [0, 1]. A digit pixel has 17 grey levels (steps of 1/16), so
0.2 moves every pixel by about 3 levels: plainly visible on an 8x8 image, yet it
does not turn one digit into another for a human reader. At 0.1 a standard model
kept about half its test accuracy (51.5% worst case in a 15-epoch trial) and PGD-AT cost no
clean accuracy at all, so there was no trade-off to show; at 0.2 the standard model
falls to about 1% while PGD-AT keeps over 40%. l2 0.5 is the size of an l-inf-0.2
change on 6 of the 64 pixels (a stroke): a second threat model that no run trained
for. It turned out weaker than l-inf 0.2 here (the standard model keeps 56%), and every
image broken in l2 was broken in l-inf too, so the union column equals the l-inf one.

Each run: an MLP (2 x 256, BatchNorm), batch 64, 1,300 training images (200 more
held out for validation), 10 epochs of 20 steps, SGD lr 0.1 -> 0.0001 with the
reference schedule's shape; the robust expert trains on l-inf PGD-5, validation
uses PGD-5, the final test of every learner PGD-10; the suite's evaluation then
runs PGD-20 and APGD-CE-20 per norm. Generalist syncs every half epoch from epoch 6.
Every number is set in this file (`digits_expert`, `digits_run`, `get_config`), on top
of `config.base_config()`.

Cost: 2:19 wall for the whole command on 2 CPU cores shared with other jobs (load 19),
71 s of CPU (experiments/demo/README.md).
Expected result (297 test digits, checkpoint best on validation, clean / worst case
over l-inf PGD + APGD-CE at 0.2, %): standard 98.3 / 0.7, PGD-AT 97.6 / 43.4,
Generalist (global) 97.3 / 48.1; identical in three runs (experiments/demo/README.md).

Smaller (the test uses this): --config=configs/demo.py:epochs=2,train_size=128,test_size=64
(with --config.compare.attacks=pgd --config.compare.steps=3: 1.5 minutes on 2 busy CPU
cores, docs/configs.md).
"""
import ml_collections

from generalist_jax import config
from generalist_jax.config import expert, pgd_attack, sgd

EPS_LINF = 0.2  # the training, model-selection and first evaluation radius
EPS_L2 = 0.5  # the second evaluation radius (no run trains for it)
EPOCHS = 10


def train_attack():
  """l-inf PGD-5, step 2.5 eps / 5: every expert's training attack."""
  return pgd_attack(eps=EPS_LINF, step_size=0.1, steps=5)


def digits_expert(task, weight_decay, mix_values):
  """An expert of the demo: the reference's lr shape x10 (few epochs), knots in the
  reference's 120 epochs (rescaled to the demo's by `digits_run`)."""
  return expert(task,
                sgd(lr_epochs=(0, 40, 80, 120), lr_values=(0.1, 0.1, 0.01, 0.0001),
                    weight_decay=weight_decay, momentum=0.9), mix_values=mix_values,
                attack=train_attack())  # set on the natural expert too (unused there)


def digits_run(experts, best_metric: str, num_epochs: int, train_size, test_size,
               sync_every_steps=None):
  """One run of the suite on digits at the demo's scale."""
  c = config.base_config()
  c.data.source = 'sklearn_digits'
  c.data.val_size = 200
  c.data.train_size = train_size
  c.data.test_size = test_size
  c.data.augment = 'none'  # crops of 4 px and flips destroy 8x8 digits
  c.data.num_threads = 1
  c.model.name = 'mlp'
  c.model.width = 1.0
  c.batch_size = 64
  for name, e in experts.items():
    c.experts[name] = e
  c.meta.mix_epochs = (0, 40, 80, 120)  # knots of mix_values, rescaled below
  c.meta.timescale = 'epochs'
  c.meta.clock = 'fractional'
  c.meta.ema_max_decay = 0.999  # EMA decay min(0.999, (t+1)/(t+10))
  c.meta.sync.kind = 'never'
  c.meta.sync.start_epoch = 75  # rescaled below: epoch 6 of 10
  # Short PGDs during training (CPU compile time grows with unrolled steps); the
  # suite's evaluation afterwards runs PGD-20 and APGD-CE-20.
  c.eval.val_attack = train_attack()
  c.eval.test_attack = pgd_attack(eps=EPS_LINF, step_size=0.05, steps=10)  # 2.5 eps / 10
  c.eval.batch_size = 100
  c.eval.best_metric = best_metric
  c.num_epochs = 120
  config.scale_epochs(c, num_epochs)  # every epoch knot x num_epochs / 120
  if sync_every_steps is not None:  # as smoke(): every half epoch from 5/8 of training
    c.meta.sync.kind = 'every_steps'
    c.meta.sync.every_steps = sync_every_steps
  c.log_every_steps = 10
  c.progress_bar = False
  return c


def get_config(arg: str | None = None):
  """arg: epochs=N, train_size=N, test_size=N (comma separated) shrink the demo."""
  opts = config.parse_arg(arg, ('epochs', 'train_size', 'test_size'))
  epochs = int(opts.get('epochs', EPOCHS))
  train_size = int(opts['train_size']) if 'train_size' in opts else None
  test_size = int(opts['test_size']) if 'test_size' in opts else None
  scale = dict(num_epochs=epochs, train_size=train_size, test_size=test_size)
  steps_per_epoch = (train_size or 1300) // 64  # 1,300 training digits, batch 64

  c = ml_collections.ConfigDict()
  c.runs = dict(
      standard=digits_run(
          dict(natural=digits_expert('natural', 5e-4, mix_values=(1.0, 1.0, 1.0, 1.0))),
          best_metric='natural/clean_acc', **scale),
      pgd_at=digits_run(dict(robust=digits_expert('pgd', 3.5e-3, mix_values=(1.0, 1.0, 1.0, 1.0))),
                        best_metric='robust/robust_acc', **scale),
      generalist=digits_run(
          dict(natural=digits_expert('natural', 5e-4, mix_values=(0.0, 0.0, 0.0, 0.6)),
               robust=digits_expert('pgd', 3.5e-3, mix_values=(1.0, 1.0, 1.0, 0.4))),
          best_metric='global/robust_acc', sync_every_steps=max(1, steps_per_epoch // 2), **scale),
  )
  c.compare = config.compare_config(name='demo', order=('standard', 'pgd_at', 'generalist'),
                                    checkpoint='best', attacks='pgd,apgd-ce', norms=('linf', 'l2'),
                                    eps=(EPS_LINF, EPS_L2), steps=20, n_ex=test_size or 297,
                                    batch_size=100)
  return c
