r"""Generalist++ variant (c) on CIFAR-10: a natural expert plus one expert per
threat model (l1, l2, l-inf), mixed into one global learner.

OUR READING of the Generalist++ abstract (arXiv 2510.13361), extending the
CVPR'23 schedule: the natural expert gets the CVPR'23 natural weight
1 - beta(t) (beta = interp([0, 40, 80, 120] -> [1, 1, 1, 0.4])), the three
norm experts share beta(t) equally. Natural expert: clean CE, wd 5e-4; norm
experts: PGD-10 in their norm (radii 12, 0.5, 8/255; step 2.5 eps / steps),
wd 3.5e-3; all lr [0.01, 0.01, 0.001, 0.0001] over 120 epochs; the CVPR'23
EMA and sync rule.

  python -m generalist_jax.main --config=configs/generalist_pp_full_cifar10.py \
      --workdir=runs/generalist_pp_full
  # CPU scale: ...:smoke,epochs=5,attack_steps=5
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  c = config.base_config()
  c.experts = config.norm_experts(('l1', 'l2', 'linf'))
  for n in c.experts.keys():
    c.experts[n].mix_values = tuple(b / 3 for b in config.ROBUST_MIX)
  c.experts.natural = config.generalist_experts().natural
  c.eval.best_metric = 'global/sum_acc'   # clean + robust on validation (the reference's quantity)
  return config.apply_arg(c, arg)
