"""Evaluating a model trained elsewhere: a PyTorch state_dict (ours, or RobustBench's
PreAct-ResNet-18 / ResNet-18 / WideResNet key names) loaded into the flax twin and
attacked with our AutoAttack.

  python -m generalist_jax.evaluate --torch_checkpoint=model.pt --arch=wrn-28-10 \
      --data=cifar10 --attacks=standard --norm=linf --eps=8/255 --n_ex=1000 --out=DIR

The evaluation is `pipeline.evaluate`'s, as for a run: resumable from
<DIR>/<name>.state.npz (refused when the settings or the checkpoint's bytes differ).
"""
from __future__ import annotations

import hashlib
import pathlib
import re

import jax

from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.attacks import registry
from generalist_jax.evaluation import jitted
from generalist_jax.evaluation import leaderboard
from generalist_jax.evaluation import pipeline

ARCHS = {'preact_resnet18': {'name': 'preact_resnet18'}, 'resnet18': {'name': 'resnet18'}}


def arch_fields(arch: str) -> dict:
  """'wrn-28-10', 'wrn-34-10', 'preact_resnet18', 'resnet18' -> model config fields.

  Args:
    arch: 'wrn-<depth>-<widen>' or a key of ARCHS (the --arch flag).

  Returns:
    A model config dict (name, and depth / widen_factor for a WRN).

  Raises:
    ValueError: another spelling.
  """
  wrn = re.fullmatch(r'wrn-(\d+)-(\d+)', arch)
  if wrn:
    return {'name': 'wide_resnet', 'depth': int(wrn[1]), 'widen_factor': int(wrn[2])}
  if arch not in ARCHS:
    raise ValueError(f"--arch={arch!r}: use 'wrn-<depth>-<widen>' (e.g. wrn-28-10), "
                     f'or one of {tuple(ARCHS)}.')
  return dict(ARCHS[arch])


def load_torch_learner(path, arch: str, num_classes: int, mean, std, image_shape):
  """(flax model, variables) from a PyTorch checkpoint (a state_dict, or a dict holding
  one under 'state_dict' / 'model_state_dict' / 'model' as training scripts save them).

  Args:
    path: the checkpoint file (`torch.load`, weights_only).
    arch: as `arch_fields`.
    num_classes: the model's logits.
    mean, std: the normalisation the model applies inside, [0, 1] units.
    image_shape: (H, W, C) of the data.

  Returns:
    (flax module, {'params', 'batch_stats'}).

  Raises:
    ValueError: an unknown arch, or a state_dict that does not fit it
      (`torch_convert.flax_variables`).
  """
  import torch  # pylint: disable=g-import-not-at-top
  from generalist_jax.models import torch_convert  # pylint: disable=g-import-not-at-top
  from generalist_jax.models import torch_models  # pylint: disable=g-import-not-at-top
  state = torch.load(path, map_location='cpu', weights_only=True)
  for key in ('state_dict', 'model_state_dict', 'model'):
    if isinstance(state, dict) and key in state and isinstance(state[key], dict):
      state = state[key]
  fields = arch_fields(arch)
  twin = torch_models.create_model(fields, num_classes, mean, std, image_shape)
  model = models.create_model(fields, num_classes, mean, std)
  template = models.init_variables(model, jax.random.PRNGKey(0), image_shape)
  return model, torch_convert.flax_variables(state, twin, template)


def file_sha256(path) -> str:
  """The checkpoint's content hash: a resume must attack the same weights.

  Args:
    path: the file, read in 1 MiB blocks.

  Returns:
    The SHA-256 hex digest.
  """
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def default_name(path, arch: str, attacks: str, norms, n_ex: int, subset: str) -> str:
  """<checkpoint stem>_<arch>_<attacks>[_<norms> unless linf]_n<n_ex>[_first]: the
  output files' name (commas of an attack list become '+').

  Args:
    path: the checkpoint file.
    arch, attacks, norms, n_ex, subset: as `evaluate_torch_checkpoint` (n_ex: the
      examples actually evaluated).
  """
  norm_part = '' if list(norms) == ['linf'] else '_' + '+'.join(norms)
  return (f"{pathlib.Path(path).stem}_{arch}_{attacks.replace(',', '+')}{norm_part}_n{n_ex}" +
          ('_first' if subset == 'first' else ''))


def data_name(data_config: dict) -> str:
  """The dataset's name: the file's stem for an .npz source, else the config's
  `name` (e.g. 'cifar10'), '' without one.

  Args:
    data_config: `config.data` as a dict.
  """
  if data_config.get('source') == 'npz':
    return pathlib.Path(data_config['path']).stem
  return data_config.get('name', '')


def _checked_overrides(norms, eps, attacks: str, overrides: dict | None, *, n_ex: int,
                       batch_size: int, save_adv: bool, subset: str) -> dict:
  """The overrides without None values, once the arguments pass every check that needs
  no data (ValueError otherwise): nothing is loaded for a typo."""
  registry.check_positive({'n_ex': n_ex, 'batch_size': batch_size})
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  pipeline.check_settings(norms, eps, attacks, overrides)
  pipeline.check_save_adv(save_adv, norms)
  pipeline.check_subset(subset)
  return overrides


def _identity(path, arch: str, data_config, num_classes: int, mean, std, *, n_ex: int,
              split_size: int, batch_size: int, subset: str) -> dict:
  """What defines the evaluation beyond seed, n_ex and the plan (the checkpoint's
  bytes among it): a resume must match it."""
  return {
      'checkpoint_sha256': file_sha256(path), 'step': None, 'learner': arch,
      'data': data_name(dict(data_config)), 'num_classes': num_classes,
      'mean': [float(m) for m in mean], 'std': [float(s) for s in std], 'n_ex_requested': int(n_ex),
      'test_split_size': int(split_size), 'batch_size': batch_size, 'subset': subset
  }


def evaluate_torch_checkpoint(path, *, arch: str, data_config, out_dir, attacks: str = 'standard',
                              norms=('linf',), eps=(8 / 255,), n_ex: int = 1000,
                              batch_size: int = 256, seed: int = 0, num_classes: int = 10,
                              mean=(0.0,), std=(1.0,), overrides: dict | None = None,
                              allow_large_eps: bool = False, progress: bool = True,
                              command: str = '', subset: str = 'random', save_adv: bool = False,
                              name: str | None = None,
                              stop_after_batches: int | None = None) -> dict | None:
  """Evaluates the checkpoint on n_ex test examples as a run's evaluation does
  (`pipeline.evaluate_and_write`): <out_dir>/<name>.{json,csv,md}, resumable from
  <name>.state.npz (refused when the settings or the checkpoint's bytes differ).

  Args:
    path: the PyTorch checkpoint (`load_torch_learner`); arch: as `arch_fields`.
    data_config: `config.data` of the test set (`data.load_dataset`).
    out_dir: where the files go (created).
    attacks: an AutoAttack version or a comma list of attacks.
    norms, eps: one radius per norm, pixel units of [0, 1].
    n_ex: test examples to evaluate (all when not fewer than the split).
    batch_size, seed: examples per attack call; the attacks' randomness.
    num_classes, mean, std: the model's logits; the normalisation it applies inside,
      [0, 1] units (RobustBench's CIFAR models mostly take [0, 1] inputs: 0 and 1).
    overrides: budget changes (steps, n_targets, restarts, n_queries; None: standard).
    allow_large_eps: run even when eps looks like 0-255 units.
    progress, command: show a progress bar; the command line, for the report.
    subset: 'random' (a fixed random subset) or 'first' (the first n_ex, as RobustBench).
    save_adv: also write the adversarial examples, <name>.adv.npz (one norm only).
    name: the files' name; None for `default_name`.
    stop_after_batches: stop early, as an interruption would (tests).

  Returns:
    The report as written (a single-norm 'standard' evaluation also writes the
    RobustBench entry <name>.model_info.json), or None when stopped early.

  Raises:
    ValueError: before anything is loaded: n_ex or batch_size below 1, an unknown
      attack or subset, save_adv with several norms; as `pipeline.evaluate` before
      any attack runs.
  """
  overrides = _checked_overrides(norms, eps, attacks, overrides, n_ex=n_ex, batch_size=batch_size,
                                 save_adv=save_adv, subset=subset)
  dataset = data_lib.load_dataset(data_config)
  model, variables = load_torch_learner(path, arch, num_classes, tuple(mean), tuple(std),
                                        dataset.info.image_shape)
  images, labels, ids = pipeline.choose_subset(*dataset.test, n_ex, subset)
  name = name or default_name(path, arch, attacks, norms, len(labels), subset)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  identity = _identity(path, arch, data_config, num_classes, mean, std, n_ex=n_ex,
                       split_size=len(dataset.test[1]), batch_size=batch_size, subset=subset)
  meta = dict(name=name, workdir=str(path), checkpoint=str(path), command=command, subset=subset)
  return pipeline.evaluate_and_write(
      jitted.model_apply_fn(model), variables, images, labels, stem=out_dir / name, meta=meta,
      norms=norms, eps=eps, attacks=attacks, overrides=overrides, seed=seed, batch_size=batch_size,
      example_ids=ids, identity=identity, save_adv=save_adv, allow_large_eps=allow_large_eps,
      progress=progress, stop_after_batches=stop_after_batches,
      model_name=f'the {arch} model of {path}', dataset=data_name(dict(data_config)),
      architecture=leaderboard.architecture_name(arch_fields(arch)))
