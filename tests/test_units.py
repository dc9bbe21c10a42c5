"""eps is in pixel units of [0, 1]: radii typed in 0-255 units are refused (with the
reason) at every entry point, and a fraction like 8/255 is accepted everywhere."""
import subprocess
import sys

import pytest

from generalist_jax import config as config_lib
from generalist_jax.attacks import threat
from generalist_jax.config import validation
from generalist_jax.method import clock
from tests.test_config import ROOT


@pytest.mark.parametrize('norm,eps,refused', [('linf', 8 / 255, False), ('linf', 0.999, False),
                                              ('linf', 8.0, True), ('linf', 1.0, True),
                                              ('l2', 0.5, False), ('l2', 55.0, False),
                                              ('l2', 500.0, True), ('l1', 12.0, False),
                                              ('l1', 3072.0, False), ('l1', 3073.0, True)])
def test_the_ball_must_not_hold_every_cifar_image(norm, eps, refused):
  problem = threat.eps_problem(norm, eps, 32 * 32 * 3)
  assert (problem is not None) == refused
  if refused:
    assert 'pixel units' in problem and '8/255' in problem


def test_training_configs_refuse_radii_in_0_255_units():
  c = config_lib.baseline_config('pgd')
  c.experts.robust.attack.eps = 8.0
  with pytest.raises(config_lib.ConfigError, match=r'experts\.robust\.attack\.eps.*pixel'):
    validation.validate_config(c)
  c = config_lib.baseline_config('pgd', config_lib.pgd_attack(eps=500.0, norm='l2'))
  validation.validate_config(c)  # d is not known yet ...
  with pytest.raises(config_lib.ConfigError, match=r'sqrt\(d\) = 55'):
    validation.validate_for_data(c, clock.make_clock(c, 10), (32, 32, 3))  # ... and is here
  c = config_lib.single_expert_config('natural', 'natural/clean_acc')
  c.eval.test_attack.eps = 8
  with pytest.raises(config_lib.ConfigError, match=r'eval\.test_attack\.eps'):
    validation.validate_config(c)


def test_fractions_parse_everywhere_eps_is_given():
  assert config_lib.parse_eps('8/255') == pytest.approx(0.0313725490)
  assert config_lib.FractionParser().parse('8/255') == config_lib.parse_eps('8/255')
  assert config_lib.FractionParser().parse('0.5') == 0.5
  with pytest.raises(ValueError, match='fraction like 8/255'):
    config_lib.parse_eps('8/')


def test_the_training_cli_takes_a_fraction_and_refuses_8(tmp_path):
  base = [
      sys.executable, '-m', 'generalist_jax.main', '--config=configs/pgd_at_cifar10.py:epochs=2',
      '--config.data.source=sklearn_digits', '--config.model.name=mlp',
      '--config.data.val_size=200', f'--workdir={tmp_path / "w"}'
  ]
  run = lambda *extra: subprocess.run(base + list(extra), cwd=ROOT, capture_output=True, text=True,
                                      timeout=300)
  # num_epochs=0 stops at validation, after the fraction was parsed and accepted.
  ok = run('--config.experts.robust.attack.eps=8/255', '--config.num_epochs=0')
  assert 'config.num_epochs: must be >= 1' in ok.stderr, ok.stderr[-2000:]
  bad = run('--config.experts.robust.attack.eps=8')
  assert 'config.experts.robust.attack.eps: linf eps=8 reaches 1' in bad.stderr, bad.stderr[-2000:]
