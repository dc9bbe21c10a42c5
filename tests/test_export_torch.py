"""Exported learners give the same logits in their PyTorch twins (eval mode)."""
import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from generalist_jax import config as config_lib
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.method import step as step_lib
from generalist_jax.models import torch_convert
from generalist_jax.models import torch_models

TINY = 0.125
CASES = {   # name: (model fields, image shape)
    'preact_resnet18': (dict(name='preact_resnet18', width=TINY), (32, 32, 3)),
    'resnet18': (dict(name='resnet18', width=TINY), (32, 32, 3)),
    'wide_resnet': (dict(name='wide_resnet', width=TINY, depth=10, widen_factor=2),
                    (32, 32, 3)),
    'small_cnn': (dict(name='small_cnn', width=TINY, batch_norm=False), (32, 32, 3)),
    'small_cnn_bn': (dict(name='small_cnn', width=TINY, batch_norm=True), (32, 32, 3)),
    'small_cnn_bn_mnist': (dict(name='small_cnn', width=TINY, batch_norm=True), (28, 28, 1)),
    'mlp': (dict(name='mlp', width=TINY, batch_norm=True), (8, 8, 1)),
    'mlp_no_bn': (dict(name='mlp', width=TINY, batch_norm=False), (8, 8, 3)),
}


def test_every_registered_model_has_a_twin_and_a_case():
  """Fault kind: a model listed as valid (mlp) could not be exported."""
  assert set(models.MODEL_NAMES) == set(torch_models.TWINS)
  assert set(models.MODEL_NAMES) == {fields['name'] for fields, _ in CASES.values()}


@functools.lru_cache(maxsize=None)
def _trained(case, steps=3, batch=8):
  """A few real natural-training steps (step_lib.train_step), so BatchNorm running
  statistics and weights are far from their init values."""
  fields, image_shape = CASES[case]
  c = config_lib.single_expert_config('natural', 'global/clean_acc')
  c.model.update(fields)
  c.num_epochs = 1
  c.experts.natural.optimizer.schedule = 'constant'
  c.experts.natural.optimizer.lr = 0.1
  channels = image_shape[-1]
  info = data_lib.DatasetInfo(10, image_shape, tuple(np.linspace(0.3, 0.6, channels)),
                              tuple(np.linspace(0.2, 0.3, channels)))
  setup = step_lib.make_setup(c, info, steps_per_epoch=steps)
  state = step_lib.create_train_state(setup, image_shape, seed=0)
  rng = np.random.default_rng(0)
  step = None
  for _ in range(steps):
    data = {
        'image': rng.uniform(size=(batch, *image_shape)).astype(np.float32),
        'label': rng.integers(0, 10, batch).astype(np.int32)
    }
    step = step or _compile(lambda s, b: step_lib.train_step(setup, s, b), state, data)
    state, _ = step(state, data)
  return setup.model, info, state.experts[0]


def _compile(fn, *args):
  # XLA:CPU's backend optimisation is most of a tiny model's compile time and
  # does not change what is computed (to float rounding); level 0 halves it.
  options = ({'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None)
  return jax.jit(fn).lower(*args).compile(options)


@pytest.mark.parametrize('case', sorted(CASES))
def test_same_logits(case):
  fields, image_shape = CASES[case]
  model, info, variables = _trained(case)
  if variables['batch_stats']:  # the statistics really moved
    leaf = jax.tree.leaves(variables['batch_stats'])[0]
    assert np.abs(np.asarray(leaf)).max() > 1e-3
  twin = torch_convert.torch_twin(fields, info.num_classes, info.mean, info.std, image_shape,
                                  variables)
  x = np.random.default_rng(1).uniform(size=(5, *image_shape)).astype(np.float32)
  forward = lambda v, x: models.apply_model(model, v, x, train=False)[0]
  expected = np.asarray(_compile(forward, variables, x)(variables, x))
  with torch.no_grad():
    got = twin(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_mismatched_width_is_refused():
  fields, image_shape = CASES['small_cnn_bn']
  _, info, variables = _trained('small_cnn_bn')
  with pytest.raises(ValueError, match='shape'):
    torch_convert.torch_twin(dict(fields, width=0.25), 10, info.mean, info.std, image_shape,
                             variables)


# RobustBench's / kuangliu's key names, made from the twins' by the inverse renames.
ROBUSTBENCH_NAMES = {
    'wide_resnet': ((r'^(block\d)_(\d+)\.', r'\1.layer.\2.'), (r'\.shortcut\.', '.convShortcut.'),
                    (r'^bn\.', 'bn1.')),
    'preact_resnet18': ((r'^(layer\d)_(\d+)\.', r'\1.\2.'), (r'\.shortcut\.', '.shortcut.0.')),
    'resnet18': ((r'^(layer\d)_(\d+)\.', r'\1.\2.'), (r'\.shortcut_conv\.', '.shortcut.0.'),
                 (r'\.shortcut_bn\.', '.shortcut.1.')),
}


@pytest.mark.parametrize('case',
                         ['wide_resnet', 'preact_resnet18', 'resnet18', 'small_cnn_bn', 'mlp'])
@pytest.mark.parametrize('names', ['ours', 'robustbench'])
def test_a_pytorch_state_dict_imports_with_the_same_logits(case, names):
  import re
  fields, image_shape = CASES[case]
  if names == 'robustbench' and fields['name'] not in ROBUSTBENCH_NAMES:
    pytest.skip('no RobustBench naming for this architecture')
  torch.manual_seed(0)
  twin = torch_models.create_model(fields, 10, (0.0,), (1.0,), image_shape).eval()
  with torch.no_grad():  # BatchNorm statistics away from their init values
    for module in twin.modules():
      if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)
  state = twin.state_dict()
  if names == 'robustbench':
    renamed = {}
    for key, value in state.items():
      for pattern, replacement in ROBUSTBENCH_NAMES[fields['name']]:
        key = re.sub(pattern, replacement, key)
      renamed['module.' + key] = value  # as saved from a DataParallel model
    state = renamed
  model = models.create_model(fields, 10, (0.0,), (1.0,))
  template = models.init_variables(model, jax.random.PRNGKey(0), image_shape)
  variables = torch_convert.flax_variables(state, twin, template)
  x = np.random.default_rng(1).uniform(size=(4, *image_shape)).astype(np.float32)
  expected = twin(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
  got = np.asarray(models.apply_model(model, variables, x, train=False)[0])
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_importing_another_architecture_names_what_is_missing():
  fields, image_shape = CASES['resnet18']
  twin = torch_models.create_model(fields, 10, (0.0,), (1.0,), image_shape)
  other = torch_models.create_model(CASES['preact_resnet18'][0], 10, (0.0,), (1.0,), image_shape)
  model = models.create_model(fields, 10, (0.0,), (1.0,))
  template = models.init_variables(model, jax.random.PRNGKey(0), image_shape)
  with pytest.raises(ValueError, match='has no'):
    torch_convert.flax_variables(other.state_dict(), twin, template)
