"""AutoAttack for any JAX model, called as the official one is (fra31/auto-attack):

    from generalist_jax import AutoAttack
    adversary = AutoAttack(logits_fn, norm='Linf', eps=8 / 255, version='standard', seed=0)
    report = adversary.run(x, y)                       # per-example flags and accuracies
    x_adv = adversary.run_standard_evaluation(x, y)    # as the official one returns

`logits_fn` is any jittable `x [N, H, W, C] float32 in [0, 1] -> logits [N, K]` (a
flax / haiku / equinox model with its weights bound, or a plain function); with
`params=`, it is `logits_fn(params, x)`, so large weights are arguments of the
compiled attacks rather than constants baked into them. For version='rand' the
model is randomised: `logits_fn(x, key)` (or `logits_fn(params, x, key)`).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from generalist_jax import models
from generalist_jax.attacks import registry
from generalist_jax.evaluation import compile_cache
from generalist_jax.evaluation import pipeline
from generalist_jax.evaluation import runner

NORMS = {'Linf': 'linf', 'L2': 'l2', 'L1': 'l1', 'linf': 'linf', 'l2': 'l2', 'l1': 'l1'}


@dataclasses.dataclass
class Report:
  """What `AutoAttack.run` found. Accuracies are fractions in [0, 1]; flags are
  int8 per example and attack (1 robust, 0 fooled, -1 not run: already broken)."""
  norm: str
  eps: float
  version: str
  n_ex: int
  clean_acc: float
  robust_acc: float  # per-example worst case over every attack
  robust_acc_after: dict  # attack -> robust accuracy after it and those before
  clean: np.ndarray  # [N] bool: correct on the clean input
  robust: np.ndarray  # [N] bool: correct on every attack's point
  flags: dict  # attack -> [N] int8
  settings: dict  # attack -> its settings (budget, eps)
  missing_components: tuple
  sanity: dict
  versions: dict

  def to_dict(self) -> dict:
    """JSON-ready: numbers, settings and the per-example robust flags as lists."""
    out = {
        k: v
        for k, v in dataclasses.asdict(self).items()
        if not isinstance(v, (np.ndarray, dict)) or k in ('robust_acc_after', 'settings', 'sanity',
                                                          'versions')
    }
    out.update(clean=self.clean.astype(int).tolist(), robust=self.robust.astype(int).tolist(),
               flags={k: v.astype(int).tolist() for k, v in self.flags.items()})
    return out


class AutoAttack:
  """AutoAttack (Croce & Hein, ICML 2020) on a JAX model; see the module docstring.

  Constructing one checks the arguments and turns on the persistent compile cache
  (`compile_cache.enable`); nothing is compiled until `run`.

  Args:
    logits_fn: jittable `x [B, H, W, C] float32 in [0, 1] -> logits [B, K]`;
      `logits_fn(params, x)` with `params`; with version='rand' it also takes a
      PRNG key last.
    norm: 'Linf', 'L2', 'L1' (or 'linf', 'l2', 'l1').
    eps: the radius, in pixel units of [0, 1] (8/255, not 8); an eps whose ball
      holds every image is refused by `run` unless `allow_large_eps`.
    version: 'standard', 'plus', 'rand', 'fast' (APGD-CE, APGD-T) or 'custom'.
    seed: the attacks' randomness (per example, the same whatever the batch).
    attacks_to_run: with version='custom' only: names as AutoAttack's ('apgd-ce',
      'apgd-dlr', 'apgd-t', 'fab', 'fab-t', 'square'), plus our 'pgd', 'pgd-cw',
      'fgsm', 'mim'.
    params: the model's weights, passed to `logits_fn` as an argument of the
      compiled attacks (not baked in as constants); None for a closed-over model.
    allow_large_eps: run even when eps looks like 0-255 units.
    overrides: budget changes for every attack that has them (steps, n_targets,
      restarts, n_queries; e.g. for quick checks).

  Raises:
    ValueError: an unknown norm, version or attack, an attack not implemented in
      `norm`, attacks_to_run without version='custom' (or custom without them),
      a size override below 1.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> from generalist_jax import AutoAttack
    >>> w = jnp.asarray(np.random.default_rng(0).normal(size=(48, 3)), jnp.float32)
    >>> logits_fn = lambda x: x.reshape(len(x), -1) @ w
    >>> x = np.random.default_rng(1).uniform(size=(8, 4, 4, 3)).astype(np.float32)
    >>> y = np.asarray(logits_fn(x)).argmax(-1)            # all correct when clean
    >>> adversary = AutoAttack(logits_fn, norm='Linf', eps=8 / 255, version='custom',
    ...                        attacks_to_run=['apgd-ce'], overrides={'steps': 10})
    >>> report = adversary.run(x, y, batch_size=8)
    >>> report.clean_acc, 0 <= report.robust_acc <= report.clean_acc
    (1.0, True)
  """

  def __init__(self, logits_fn, *, norm: str = 'Linf', eps: float = 8 / 255,
               version: str = 'standard', seed: int = 0, attacks_to_run=(), params=None,
               allow_large_eps: bool = False, overrides: dict | None = None):
    if norm not in NORMS:
      raise ValueError(f"norm={norm!r}: use one of 'Linf', 'L2', 'L1'.")
    if version == 'custom':
      if not attacks_to_run:
        raise ValueError("version='custom' needs attacks_to_run, e.g. ['apgd-ce', 'square'].")
      attack_list = ','.join(attacks_to_run)
    elif attacks_to_run:
      raise ValueError("attacks_to_run is only read with version='custom' (as AutoAttack).")
    else:
      attack_list = version
    self.norm, self.eps, self.version, self.seed = NORMS[norm], float(eps), version, int(seed)
    self.allow_large_eps = allow_large_eps
    self.attack_list, self.overrides = attack_list, dict(overrides or {})
    self.plan = runner.make_plan([self.norm], [self.eps], attack_list, overrides)
    compile_cache.enable()  # the attacks' compiles, kept on disk for the next process
    self.params = params
    if version == 'rand':  # one fixed draw where no key is given (clean pass, final check)
      fixed = jax.random.PRNGKey(self.seed)
      self.apply_fn = ((lambda p, x, key=fixed: logits_fn(p, x, key)) if params is not None else
                       (lambda _, x, key=fixed: logits_fn(x, key)))
    else:
      self.apply_fn = ((lambda p, x, key=None: logits_fn(p, x)) if params is not None else
                       (lambda _, x, key=None: logits_fn(x)))

  def run(self, x, y, *, batch_size: int = 500, state_path: str | None = None, example_ids=None,
          progress: bool = False, x_adv: np.ndarray | None = None) -> Report:
    """Runs the version's attacks in order, each on the examples every earlier one
    missed (`evaluation.pipeline.evaluate`, as the evaluate CLI does).

    Args:
      x: [N, H, W, C] float in [0, 1] (or uint8).
      y: [N] int labels in [0, K).
      batch_size: examples per attack call (one compiled shape).
      state_path: an .npz where the flags (and x_adv, when given) are saved after
        every batch; running again with it resumes (refused if the settings
        differ). None: nothing saved.
      example_ids: [N] ids, which with `seed` key each example's attack
        randomness (e.g. indices into a test split); None for 0..N-1.
      progress: show a tqdm progress bar.
      x_adv: optional float32 array like x (e.g. x itself) that receives each
        fooled example's adversarial point.

    Returns:
      The `Report`.

    Raises:
      ValueError: before any attack runs, naming the argument: x empty, not
        NHWC or outside [0, 1] (0-255 floats: divide by 255); y not [N] integer
        ids in [0, K) (one-hot: y.argmax(-1)); logits_fn not returning one array
        [B, K]; an attack that cannot work with K classes (DLR with < 3, APGD-T
        with < 4, n_targets > K - 1); batch_size < 1 (`evaluation.checks`); an
        eps whose ball holds every image unless `allow_large_eps`.
    """
    done = pipeline.evaluate(self.apply_fn, self.params, x, y, norms=[self.norm], eps=[self.eps],
                             attacks=self.attack_list, overrides=self.overrides, seed=self.seed,
                             batch_size=batch_size, example_ids=example_ids, state_path=state_path,
                             identity={'norm': self.norm, 'eps': self.eps, 'version': self.version
                                      }, x_adv=x_adv, allow_large_eps=self.allow_large_eps,
                             eps_names=('eps', 'allow_large_eps=True'), progress=progress,
                             model_name='logits_fn')
    report = done.report
    return Report(
        norm=self.norm, eps=self.eps, version=self.version, n_ex=report['n_ex'],
        clean_acc=report['clean_acc'], robust_acc=report['robust_acc'], robust_acc_after={
            s.name: report['attacks'][s.column]['robust_acc_after'] for s in done.plan
        }, clean=done.state['clean'] == 1, robust=done.worst[self.norm],
        flags={s.name: done.state[s.column] for s in done.plan
              }, settings={s.name: s.settings() for s in done.plan},
        missing_components=tuple(m.split('/', 1)[1] for m in report['missing_components']),
        sanity=report['sanity'], versions=report['versions'])

  def run_standard_evaluation(self, x, y, bs: int = 250, return_labels: bool = False):
    """The official call; prints the clean and robust accuracy.

    Args:
      x, y: as `run`.
      bs: the batch size.
      return_labels: also return the model's labels on x_adv.

    Returns:
      x_adv [N, H, W, C] float32 (the clean input where no attack succeeded), or
      (x_adv, labels [N]) with `return_labels`.

    Raises:
      ValueError: as `run` does, and for bs < 1.
    """
    registry.check_positive({'bs': bs})
    x_adv = pipeline.clean_floats(x)
    report = self.run(x, y, batch_size=bs, x_adv=x_adv)
    print(f'clean accuracy: {100 * report.clean_acc:.2f}%, robust accuracy: '
          f'{100 * report.robust_acc:.2f}% ({self.version}, {self.norm} eps={self.eps:.5g})')
    if not return_labels:
      return x_adv
    labels = np.concatenate([
        np.argmax(
            np.asarray(
                jax.jit(self.apply_fn,
                        compiler_options=models.compiler_options())(self.params, x_adv[i:i + bs])),
            -1) for i in range(0, len(x_adv), bs)
    ])
    return x_adv, labels
