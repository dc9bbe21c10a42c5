"""Evaluating a model trained elsewhere: a PyTorch state_dict (ours, or RobustBench's
PreAct-ResNet-18 / ResNet-18 / WideResNet key names) loaded into the flax twin and
attacked with our AutoAttack.

  python -m generalist_jax.evaluate --torch_checkpoint=model.pt --arch=wrn-28-10 \
      --data=cifar10 --attacks=standard --norm=linf --eps=8/255 --n_ex=1000 --out=DIR
"""
from __future__ import annotations

import pathlib
import re
import time

import jax
import numpy as np

from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.attacks import registry
from generalist_jax.attacks import threat
from generalist_jax.evaluation import reports
from generalist_jax.evaluation import runner

ARCHS = {'preact_resnet18': {'name': 'preact_resnet18'}, 'resnet18': {'name': 'resnet18'}}


def arch_fields(arch: str) -> dict:
  """'wrn-28-10', 'wrn-34-10', 'preact_resnet18', 'resnet18' -> model config fields."""
  wrn = re.fullmatch(r'wrn-(\d+)-(\d+)', arch)
  if wrn:
    return {'name': 'wide_resnet', 'depth': int(wrn[1]), 'widen_factor': int(wrn[2])}
  if arch not in ARCHS:
    raise ValueError(f"--arch={arch!r}: use 'wrn-<depth>-<widen>' (e.g. wrn-28-10), "
                     f'or one of {tuple(ARCHS)}.')
  return dict(ARCHS[arch])


def load_torch_learner(path, arch: str, num_classes: int, mean, std, image_shape):
  """(flax model, variables) from a PyTorch checkpoint (a state_dict, or a dict holding
  one under 'state_dict' / 'model_state_dict' as training scripts save them)."""
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


def evaluate_torch_checkpoint(path, *, arch: str, data_config, out_dir, attacks: str = 'standard',
                              norms=('linf',), eps=(8 / 255,), n_ex: int = 1000,
                              batch_size: int = 256, seed: int = 0, num_classes: int = 10,
                              mean=(0.0,), std=(1.0,), overrides: dict | None = None,
                              allow_large_eps: bool = False, progress: bool = True,
                              command: str = '') -> dict:
  """Evaluates the checkpoint on a fixed random n_ex of the test split; writes
  <out_dir>/<name>.{json,csv,md} as a run's evaluation does and returns the report.
  mean/std: the normalisation the model expects inside (RobustBench's CIFAR models
  mostly take [0, 1] inputs: 0 and 1). Raises ValueError for n_ex or batch_size
  below 1 before anything is loaded, and as `runner.run_evaluation` before any
  attack runs."""
  registry.check_positive({'n_ex': n_ex, 'batch_size': batch_size})
  dataset = data_lib.load_dataset(data_config)
  model, variables = load_torch_learner(path, arch, num_classes, tuple(mean), tuple(std),
                                        dataset.info.image_shape)
  images, labels, ids = runner.test_subset(*dataset.test, n_ex)
  for norm, e in zip(norms, eps):
    problem = threat.eps_problem(norm, float(e), int(np.prod(images.shape[1:])))
    if problem and not allow_large_eps:
      raise ValueError(f'--eps: {problem} (--allow_large_eps to run it anyway)')
  plan = runner.make_plan(list(norms), list(eps), attacks, overrides)
  apply_fn = runner.model_apply_fn(model)
  started = time.time()
  state = runner.run_evaluation(apply_fn, variables, images, labels, plan, batch_size=batch_size,
                                seed=seed, example_ids=ids, progress=progress,
                                model_name=f'the {arch} model of {path}')
  name = f"{pathlib.Path(path).stem}_{arch}_{attacks.replace(',', '+')}_n{len(labels)}"
  meta = {'name': name, 'workdir': str(path), 'checkpoint': str(path), 'step': None,
          'learner': arch, 'seed': seed, 'n_ex': int(len(labels)),
          'test_split_size': int(len(dataset.test[1])), 'batch_size': batch_size,
          'versions': reports.library_versions(), 'command': command,
          'seconds_this_invocation': time.time() - started, 'missing_components': [],
          'sanity': runner.sanity_checks(state, plan, runner.determinism_gap(
              apply_fn, variables, images[:min(len(labels), batch_size)]))}
  report = reports.write_reports(pathlib.Path(out_dir) / name, state, plan, labels, meta)
  print(f"{name}: clean {100 * report['clean_acc']:.2f}%, robust (worst case) "
        f"{100 * report['robust_acc']:.2f}% -> {pathlib.Path(out_dir) / name}.md")
  return report
