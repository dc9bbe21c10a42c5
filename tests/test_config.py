"""Bad config values fail before any work, naming the field and what is valid."""
from contextlib import nullcontext
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from generalist_jax import config as config_lib
from generalist_jax.config import validation
from generalist_jax.run import loop
from tests.tiny_config import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path, arg=None):
  sys.path.insert(0, os.path.join(ROOT, 'configs'))
  try:
    module = __import__(path)
  finally:
    sys.path.pop(0)
  return module.get_config(arg)


def _is_suite(file_name):  # runs + compare (generalist_jax/run/suite.py): tests/test_demo.py
  with open(os.path.join(ROOT, 'configs', file_name)) as f:
    return 'config.compare_config(' in f.read()


CONFIG_NAMES = sorted(f[:-3]
                      for f in os.listdir(os.path.join(ROOT, 'configs'))
                      if f.endswith('.py') and not f.startswith('_') and not _is_suite(f))


def test_every_variant_and_baseline_has_a_config():
  assert {
      'generalist_cifar10', 'generalist_pp_multinorm_cifar10', 'generalist_pp_full_cifar10',
      'standard_cifar10', 'pgd_at_cifar10', 'trades_cifar10', 'mart_cifar10', 'avg_cifar10',
      'max_cifar10', 'msd_cifar10', 'eat_cifar10'
  } <= set(CONFIG_NAMES)


@pytest.mark.parametrize('name', CONFIG_NAMES)
@pytest.mark.parametrize(
    'arg', [None, 'smoke', 'smoke,epochs=10,train_size=10000', 'smoke,epochs=3,attack_steps=5'])
def test_shipped_configs_validate(name, arg):
  c = load(name, arg)
  validation.validate_config(c)
  weights = [
      sum(c.experts[n].mix_values[i]
          for n in c.experts.keys())
      for i in range(len(c.meta.mix_epochs))
  ]
  np.testing.assert_allclose(weights, 1.0, rtol=1e-9)


def test_attack_steps_arg_keeps_the_path_length():
  c = load('msd_cifar10', 'attack_steps=5')
  a = c.experts.robust.norm_attacks
  assert a.linf.steps == 5 and a.l1.steps == 5
  np.testing.assert_allclose([a.linf.step_size, a.l2.step_size, a.l1.step_size], [0.03, 0.5, 10.0],
                             rtol=1e-9)  # 50 steps of .003/.05/1 -> 5
  pgd = load('pgd_at_cifar10', 'attack_steps=5').experts.robust.attack
  np.testing.assert_allclose(pgd.step_size, 4 / 255, rtol=1e-9)
  with pytest.raises(ValueError, match='attack_steps'):
    load('pgd_at_cifar10', 'attack_step=5')


def test_mixing_weights_that_do_not_sum_to_one_name_the_field():
  c = load('generalist_pp_full_cifar10')
  c.experts.natural.mix_values = (0.0, 0.0, 0.1, 0.6)  # epoch 80: 1.1
  with pytest.raises(config_lib.ConfigError, match=r'experts\.\*\.mix_values.*epoch 80'):
    validation.validate_config(c)


def test_generalist_config_is_the_reference_setup():
  c = load('generalist_cifar10')
  assert c.num_epochs == 120 and c.batch_size == 128 and c.model.name == 'resnet18'
  assert c.experts.robust.optimizer.weight_decay == 3.5e-3
  assert c.experts.natural.optimizer.weight_decay == 5e-4
  assert tuple(c.experts.robust.optimizer.lr_values) == (0.01, 0.01, 0.001, 0.0001)
  assert tuple(c.experts.robust.mix_values) == (1.0, 1.0, 1.0, 0.4)
  assert c.experts.robust.attack.steps == 10 and abs(c.experts.robust.attack.eps - 8 / 255) < 1e-12
  assert (c.meta.sync.kind, c.meta.sync.start_epoch, c.meta.sync.every_epochs) == ('reference', 75,
                                                                                   5)


def _preset_run(build_experts, best_metric):
  c = config_lib.base_config()
  c.experts = build_experts()
  c.eval.best_metric = best_metric
  return c


# What tests and benchmarks build with the presets, next to the config file that spells
# the same run out number by number: the two may not drift apart.
PRESET_EQUIVALENTS = {
    'generalist_cifar10': lambda: _preset_run(config_lib.generalist_experts, 'global/sum_acc'),
    'generalist_pp_multinorm_cifar10': lambda: _preset_run(
        lambda: config_lib.norm_experts(('l1', 'l2', 'linf')), 'global/sum_acc'),
    'generalist_pp_linf_l2_cifar10': lambda: _preset_run(
        lambda: config_lib.norm_experts(('l2', 'linf')), 'global/sum_acc'),
    'pgd_at_cifar10': lambda: config_lib.single_expert_config('robust', 'robust/robust_acc'),
    'standard_cifar10': lambda: config_lib.single_expert_config('natural', 'natural/clean_acc'),
    'trades_cifar10': lambda: config_lib.baseline_config(
        'trades', config_lib.pgd_attack(step_size=0.007), beta=6.0),
    'mart_cifar10': lambda: config_lib.baseline_config('mart', config_lib.pgd_attack(step_size=0.007
                                                                                    ), beta=6.0),
    'avg_cifar10': lambda: config_lib.baseline_config('avg', norms=('l1', 'l2', 'linf')),
    'max_cifar10': lambda: config_lib.baseline_config('max', norms=('l1', 'l2', 'linf')),
    'eat_cifar10': lambda: config_lib.baseline_config('eat', norms=('l1', 'linf')),
}


@pytest.mark.parametrize('name', sorted(PRESET_EQUIVALENTS))
def test_presets_build_what_the_config_files_spell_out(name):
  assert (PRESET_EQUIVALENTS[name]().to_json_best_effort(
      sort_keys=True) == load(name).to_json_best_effort(sort_keys=True))


def test_epochs_arg_makes_a_relative_miniature():
  c = load('generalist_cifar10', 'epochs=12')
  assert c.num_epochs == 12 and c.meta.timescale == 'relative'
  assert tuple(c.experts.natural.optimizer.lr_epochs) == (0, 4, 8, 12)
  assert tuple(c.meta.mix_epochs) == (0, 4, 8, 12)
  # The sync rule stays the reference's, on 120 virtual epochs of the run.
  assert (c.meta.sync.start_epoch, c.meta.sync.every_epochs, c.meta.sync.virtual_epochs) == (75, 5,
                                                                                             120)
  with pytest.raises(ValueError, match='unknown config arg'):
    load('generalist_cifar10', 'smok')


def _mutations():

  def set_(path, value):

    def apply(c):
      *parents, leaf = path.split('.')
      node = c
      for p in parents:
        node = node[p]
      node[leaf] = value

    return apply

  return [
      (set_('model.name', 'resnet50'), 'model.name', 'small_cnn'),
      (set_('data.name', 'imagenet'), 'data.name', 'npz'),
      (set_('experts.robust.attack.eps', -0.1), 'experts.robust.attack.eps', '>= 0'),
      (set_('experts.robust.attack.steps', 0), 'experts.robust.attack.steps', '>= 1'),
      (set_('num_epochs', 5), 'meta.mix_epochs', 'num_epochs=5'),
      (set_('experts.robust.optimizer.lr_epochs',
            (0, 40, 80, 100)), 'experts.robust.optimizer.lr_epochs', 'do not fit training'),
      (set_('experts.natural.mix_values', (0.0, 0.0, 0.0, 0.5)), 'mix_values', 'sum to 1'),
      (set_('experts.robust.task', 'fgsm_free'), 'experts.robust.task', 'natural'),
      (set_('meta.sync.start_epoch', 500), 'meta.sync.start_epoch', 'outside training'),
      (set_('data.augment', 'mixup'), 'data.augment', 'crop_flip'),
      (set_('eval.best_metric', 'global/auc'), 'eval.best_metric', 'robust_acc'),
      (set_('experts.robust.optimizer.schedule', 'step'), 'schedule', 'cosine'),
  ]


@pytest.mark.parametrize('mutate,field,hint', _mutations())
def test_bad_values_name_the_field_and_the_fix(mutate, field, hint):
  c = load('generalist_cifar10')
  mutate(c)
  with pytest.raises(config_lib.ConfigError) as err:
    validation.validate_config(c)
  assert field in str(err.value) and hint in str(err.value)


def test_unknown_fields_are_rejected_with_a_suggestion():
  c = load('generalist_cifar10')
  with c.unlocked() if hasattr(c, 'unlocked') else nullcontext():
    c.optimiser = 1
  with pytest.raises(config_lib.ConfigError, match='config.optimiser: unknown field'):
    validation.validate_config(c)
  c = load('generalist_cifar10')
  c.experts.robust.attack.epsilon = 0.1
  with pytest.raises(config_lib.ConfigError, match='did you mean eps'):
    validation.validate_config(c)


@pytest.mark.parametrize('path,value,message', [
    (('batch_size',), '128', 'config.batch_size: must be a int, got str'),
    (('experts', 'robust', 'attack', 'steps'), 2.5,
     'config.experts.robust.attack.steps: must be a int, got float'),
    (('model', 'batch_norm'), 'yes', 'config.model.batch_norm: must be a bool'),
])
def test_wrong_types_in_a_config_file_are_named(path, value, message):
  raw = load('generalist_cifar10').to_dict()
  node = raw
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    validation.validate_config(ml_collections.ConfigDict(raw))


def test_sync_period_longer_than_training_is_rejected_once_the_data_is_known(tmp_path, tiny_npz):
  config = tiny_config(tiny_npz)  # 5 steps an epoch, 2 epochs, sync from epoch 1
  config.meta.sync.every_steps = 6
  with pytest.raises(config_lib.ConfigError, match='meta.sync.every_steps: 6 is longer than the 5'):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'checkpoints').exists()


def test_missing_npz_fails_with_the_path(tmp_path):
  config = tiny_config(tmp_path / 'nowhere.npz')
  with pytest.raises(ValueError, match='nowhere.npz'):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'checkpoints').exists()


def test_cli_override_error_reaches_the_user(tmp_path):
  """`--config.<field>=<value>` overrides work and a bad one stops the CLI early."""
  proc = subprocess.run([
      sys.executable, '-m', 'generalist_jax.main', '--config=configs/generalist_cifar10.py:smoke',
      f'--workdir={tmp_path / "run"}', '--config.experts.robust.attack.eps=-0.5'
  ], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert 'config.experts.robust.attack.eps: must be >= 0, got -0.5' in proc.stderr


@pytest.mark.parametrize('kind,norm,ok', [('fab-t', 'l1', True), ('square', 'l2', True),
                                          ('square', 'l1', True), ('apgd-x', 'linf', False)])
def test_attack_kind_must_be_implemented_for_its_norm(kind, norm, ok):
  c = tiny_config('unused.npz')
  c.eval.test_attack.kind, c.eval.test_attack.norm = kind, norm
  c.eval.test_attack.eps = 1.0
  if ok:
    validation.validate_config(c)
    return
  with pytest.raises(config_lib.ConfigError,
                     match='config.eval.test_attack.kind: .*(not implemented for norm|unknown)'):
    validation.validate_config(c)
