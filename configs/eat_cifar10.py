r"""E-AT, extreme-norm adversarial training (Croce & Hein, ICML 2022, "Adversarial
Robustness against Multiple lp-Threat Models at the Price of One and How to
Quickly Fine-Tune Robust Models to Another Threat Model"; code
fra31/robust-finetuning) on CIFAR-10: one expert.

Each batch is adversarially trained in ONE threat model, l1 (eps 12) or l-inf
(eps 8/255), drawn per batch; l2 (eps 0.5) robustness follows from the two
extremes. 10 attack iterations (the paper's training budget). Deviations: the
paper's attack is APGD, here PGD (l1 with the sparse top-k step of `generalist_jax/attacks/threat.py`);
the draw is uniform from the step key, the reference's rule until it reweights
by 1 - running robust accuracy per norm (state not kept here). Optimizer and
budget: PGD-AT's (configs/pgd_at_cifar10.py). Model selection on l-inf PGD.

  python -m generalist_jax.main --config=configs/eat_cifar10.py --workdir=runs/eat_cifar10
  # CPU scale: --config=configs/eat_cifar10.py:smoke,epochs=5,attack_steps=5
"""
from generalist_jax import config


def get_config(arg: str | None = None):
  """arg: 'smoke' and/or key=value (epochs, train_size, test_size, attack_steps)."""
  c = config.baseline_config('eat', norms=('l1', 'linf'))
  return config.apply_arg(c, arg)
