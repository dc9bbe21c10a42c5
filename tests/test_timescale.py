"""The run-relative timescale: at the reference's length it IS the reference; at
other lengths every time constant keeps its share of the run."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from generalist_jax import config as config_lib
from generalist_jax.config import validation
from generalist_jax.evaluation import learners as learner_eval
from generalist_jax.method import clock
from generalist_jax.method import schedules
from generalist_jax.method import timescale


def meta(timescale_='relative', **sync):
  c = config_lib.base_config().meta
  c.timescale = timescale_
  c.sync.update(sync)
  return c


def sync_steps(meta_config, steps_per_epoch, num_epochs):
  timeline = timescale.make_timeline(meta_config, num_epochs, steps_per_epoch)
  fn = schedules.make_sync_schedule(meta_config.sync, timeline)
  return np.flatnonzero(np.asarray(fn(np.arange(timeline.total_steps))))


def test_relative_at_the_reference_length_is_the_reference():
  ref_steps = sync_steps(meta('epochs'), 391, 120)
  assert np.array_equal(sync_steps(meta('relative'), 391, 120), ref_steps)
  # Every step of epochs 75, 80, ..., 120 counted from 1, and nothing else.
  expected = [s for s in range(46920) if (s // 391 + 1) >= 75 and (s // 391 + 1) % 5 == 0]
  assert list(ref_steps) == expected and len(expected) == 10 * 391
  cap = timescale.ema_cap(meta('relative'), 46920)
  assert np.float32(cap) == np.float32(0.999)  # the precision the step uses
  assert timescale.ema_cap(meta('epochs'), 1234) == 0.999


def test_sync_steps_of_a_2400_step_run_by_hand():
  # T = 2,400: virtual epochs of 20 steps; windows = virtual epochs 75, 80, ..., 120.
  steps = sync_steps(meta('relative'), 100, 24)
  by_hand = [s for v in range(75, 121, 5) for s in range((v - 1) * 20, v * 20)]
  assert list(steps) == by_hand
  assert by_hand[:2] == [1480, 1481] and by_hand[-1] == 2399 and len(by_hand) == 200
  windows = timescale.sync_windows(
      schedules.make_sync_schedule(
          meta('relative').sync, timescale.make_timeline(meta('relative'), 24, 100)), 2400)
  assert windows[0] == (1480, 1499) and len(windows) == 10
  # The EMA horizon keeps its share: 1,000 / 46,920 of 2,400 steps = 51.15 steps.
  assert timescale.ema_cap(meta('relative'), 2400) == pytest.approx(1 - 1 / (1000 * 2400 / 46920))


def test_each_constant_can_be_set_on_its_own():
  # Two-epoch windows ending at the same epochs; the first still ends at virtual epoch 75.
  wide = sync_steps(meta('relative', window_epochs=2), 100, 24)
  assert wide[0] == 73 * 20 and len(wide) == 400
  # 240 virtual epochs with the rule doubled is the same run as 120.
  fine = sync_steps(
      meta('relative', virtual_epochs=240, start_epoch=150, every_epochs=10, window_epochs=2), 100,
      24)
  assert np.array_equal(fine, sync_steps(meta('relative'), 100, 24))
  horizon = meta('relative')
  horizon.ema_horizon = 0.1
  assert timescale.ema_cap(horizon, 2400) == pytest.approx(1 - 1 / 240)


def test_integer_clock_reads_the_schedule_at_the_epoch_counted_from_one():
  opt = ml_collections.ConfigDict(
      dict(schedule='piecewise_linear', lr_epochs=(0, 40, 80, 120),
           lr_values=(0.01, 0.01, 0.001, 0.0001)))
  integer = timescale.Timeline(10, 120, clock='integer')
  lr = schedules.make_lr_schedule(opt, 120, integer.epoch)
  # main.py: lr = interp(epoch) for every step of epoch 41 (steps 400..409).
  expected = np.interp(41, (0, 40, 80, 120), (0.01, 0.01, 0.001, 0.0001))
  np.testing.assert_allclose([lr(400), lr(409)], [expected, expected], rtol=1e-6)
  fractional = schedules.make_lr_schedule(opt, 120, timescale.Timeline(10, 120).epoch)
  assert float(fractional(400)) != float(fractional(409))
  # Relative + integer: the virtual epoch, in real-epoch units.
  relative = timescale.Timeline(10, 12, clock='integer', virtual_epochs=120)
  assert float(relative.epoch(jnp.asarray(0))) == pytest.approx(0.1)


def test_drift_lr_scale_multiplies_the_lr_from_the_first_sync_step():
  base = lambda step: jnp.full((), 0.01)
  scaled = schedules.scaled_after(base, 1480, 5.0)
  assert float(scaled(1479)) == pytest.approx(0.01) and float(scaled(1480)) == pytest.approx(0.05)


def test_too_short_a_relative_run_is_refused_with_the_numbers():
  c = config_lib.baseline_config('pgd')
  c.experts.natural = config_lib.generalist_experts().natural
  c.experts.robust.mix_values = config_lib.ROBUST_MIX
  c.meta.sync.kind = 'reference'
  config_lib.miniature(c, 3)
  with pytest.raises(config_lib.ConfigError, match=r'horizon of 2\.5 steps'):
    validation.validate_for_data(c, clock.make_clock(c, 39))  # 117 steps: the old smoke
  assert validation.validate_for_data(c, clock.make_clock(c, 800)) == []  # 2,400: faithful
  warnings = validation.validate_for_data(c, clock.make_clock(c, 130))  # 390: 8.3-step horizon
  assert any('horizon of only 8.3 steps' in w for w in warnings), warnings


def test_selection_picks_the_best_clean_plus_robust_above_the_floor():
  records = [{
      'step': 10, 'val/global/clean_acc': 0.50, 'val/global/robust_acc': 0.30,
      'val/global/sum_acc': 0.80
  }, {
      'step': 20, 'val/global/clean_acc': 0.40, 'val/global/robust_acc': 0.45,
      'val/global/sum_acc': 0.85
  }, {
      'step': 30, 'val/global/clean_acc': 0.60, 'val/global/robust_acc': 0.22,
      'val/global/sum_acc': 0.82
  }, {'step': 30, 'train/global/loss': 1.0}]
  assert learner_eval.select_best(records, 'global/sum_acc') == (20, 0.85)
  assert learner_eval.select_best(records, 'global/sum_acc', clean_floor=0.45) == (30, 0.82)
  assert learner_eval.select_best(records, 'global/sum_acc', clean_floor=0.7) is None
  assert learner_eval.select_best(records, 'global/robust_acc') == (20, 0.45)


def test_generalist_configs_select_on_clean_plus_robust():
  from tests.test_config import load
  for name in ('generalist_cifar10', 'generalist_pp_full_cifar10'):
    assert load(name, None).eval.best_metric == 'global/sum_acc'
  # At full scale the paper config is the reference: epochs timescale, unchanged.
  full = load('generalist_cifar10', None)
  assert (full.meta.timescale, full.meta.ema_max_decay, full.num_epochs) == ('epochs', 0.999, 120)


def test_ema_decay_warm_up_is_kept_under_the_relative_cap():
  cap = timescale.ema_cap(meta('relative'), 2400)
  assert float(schedules.ema_decay(0, cap)) == pytest.approx(0.1)
  assert float(schedules.ema_decay(10**6, cap)) == pytest.approx(cap, rel=1e-6)
