"""The `:reference_clock` preset keeps the reference's schedule in steps (PKU-ML/
Generalist `main.py`), and `data.downsample` makes the images small instead."""
import json

import numpy as np
import pytest

from generalist_jax import data as data_lib
from generalist_jax.config import validation
from generalist_jax.data import downsample
from generalist_jax.data import splits
from generalist_jax.method import step as step_lib
from generalist_jax.run import run_config
from configs import generalist_cifar10
from tests.conftest import write_tiny_npz

STEPS_PER_EPOCH = 382  # (50,000 - 1,000 validation) // 128


@pytest.fixture(scope='module')
def preset():
  config = generalist_cifar10.get_config('reference_clock')
  validation.validate_config(config)
  info = splits.DatasetInfo(num_classes=10, image_shape=(16, 16, 3), mean=(0.5,) * 3,
                            std=(0.25,) * 3)
  return config, step_lib.make_setup(config, info, STEPS_PER_EPOCH)


def _reference_epoch(step):
  """main.py's epoch of a 0-based step: counted from 1, constant within the epoch."""
  return step // STEPS_PER_EPOCH + 1


def test_the_data_and_the_model_shrink_not_the_clock(preset):
  config, setup = preset
  assert (50_000 - config.data.val_size) // config.batch_size == STEPS_PER_EPOCH
  assert config.data.train_size is None and config.data.downsample == 2
  assert setup.clock.total_steps == 120 * STEPS_PER_EPOCH == 45_840
  assert abs(setup.clock.total_steps / (120 * 391) - 1) < 0.0235  # 2.30% shorter
  assert (config.model.name, config.model.width) == ('small_cnn', 0.5)
  attack = config.experts.robust.attack
  assert (attack.steps, attack.eps, attack.step_size) == (10, 8 / 255, 2 / 255)


def test_sync_is_every_step_of_epochs_75_80_to_120(preset):
  _, setup = preset
  steps = np.arange(setup.clock.total_steps)
  epochs = _reference_epoch(steps)
  expected = (epochs >= 75) & (epochs % 5 == 0)
  np.testing.assert_array_equal(np.asarray(setup.clock.is_sync(steps)), expected)
  assert setup.clock.sync_windows[0] == (74 * STEPS_PER_EPOCH, 75 * STEPS_PER_EPOCH - 1)
  assert len(setup.clock.sync_windows) == 10


def test_ema_decay_is_the_reference_warm_up_capped_at_0999(preset):
  _, setup = preset
  assert setup.clock.ema_max_decay == 0.999
  for t in (0, 1, 10, 500, 8990, 8991, 20_000):
    expected = min(0.999, (t + 1) / (t + 10))
    assert float(setup.clock.ema_decay(t)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('step', [0, 381, 382, 15_280, 20_000, 30_559, 30_560, 38_000, 45_839])
def test_lr_and_mixing_weight_at_chosen_steps(preset, step):
  config, setup = preset
  epoch = _reference_epoch(step)
  lr = np.interp(epoch, [0, 40, 80, 120], [0.01, 0.01, 0.001, 0.0001])
  beta = np.interp(epoch, [0, 40, 80, 120], [1, 1, 1, 0.4])
  names = setup.expert_names
  for i in range(len(names)):
    assert float(setup.clock.lr(i, step)) == pytest.approx(lr, rel=1e-5)
  weights = np.asarray(setup.clock.mix_weights(step))
  assert weights[names.index('robust')] == pytest.approx(beta, rel=1e-6)
  assert weights[names.index('natural')] == pytest.approx(1 - beta, abs=1e-6)
  assert config.meta.clock == 'integer'


def test_reference_clock_refuses_a_scaled_clock():
  with pytest.raises(ValueError, match='reference_clock'):
    generalist_cifar10.get_config('reference_clock,smoke')


def test_block_mean_by_hand():
  images = np.array([[[[0], [1], [10], [20]], [[2], [4], [30], [41]]]], np.uint8)  # 1 x 2 x 4 x 1
  np.testing.assert_array_equal(downsample.block_mean(images, 2)[0, :, :, 0], [[2, 25]])
  # (0 + 1 + 2 + 4) / 4 = 1.75 -> 2 and (10 + 20 + 30 + 41) / 4 = 25.25 -> 25


def test_downsample_every_split_of_an_npz(tmp_path):
  npz = write_tiny_npz(tmp_path / 'tiny.npz')
  config = dict(source='npz', path=str(npz), val_size=8)
  full = data_lib.load_dataset(config)
  small = data_lib.load_dataset(dict(config, downsample=2))
  assert small.info.image_shape == (16, 16, 3)
  for a, b in ((full.val[0], small.val[0]), (full.test[0], small.test[0]), (full.train.images,
                                                                            small.train.images)):
    np.testing.assert_array_equal(downsample.block_mean(a, 2), b)
  assert small.info.mean == pytest.approx(full.info.mean, abs=2 / 255)
  assert all(s < f for s, f in zip(small.info.std, full.info.std))  # block means spread less


def test_downsample_wraps_a_lazy_source():
  images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
  lazy = [(im, i) for i, im in enumerate(images)]  # not an ArraySource: reduced per read
  dataset = splits.Dataset(info=splits.DatasetInfo(10, (8, 8, 3), (0.5,) * 3, (0.2,) * 3),
                           train=lazy, val=(images[:2], np.zeros(2, np.int32)),
                           test=(images[2:], np.zeros(3, np.int32)))
  small = downsample.downsample_dataset(dataset, 4)
  image, label = small.train[3]
  np.testing.assert_array_equal(image, downsample.block_mean(images[3], 4))
  assert label == 3 and small.info.image_shape == (2, 2, 3)


def test_downsample_that_does_not_divide_the_images_is_refused(tmp_path):
  npz = write_tiny_npz(tmp_path / 'tiny.npz')
  with pytest.raises(ValueError, match=r'data\.downsample=3 .*32x32'):
    data_lib.load_dataset(dict(source='npz', path=str(npz), val_size=8, downsample=3))
  config = generalist_cifar10.get_config()
  config.data.downsample = 0
  with pytest.raises(validation.ConfigError, match=r'data\.downsample'):
    validation.validate_config(config)


def test_a_field_added_later_reads_as_its_default_in_a_saved_config():
  current = json.loads(generalist_cifar10.get_config().to_json_best_effort())
  saved = json.loads(json.dumps(current))
  del saved['data']['downsample']
  del saved['init_from']
  assert run_config.config_differences(saved, current) == {}
  current['data']['downsample'] = 2
  assert run_config.config_differences(saved, current) == {'data.downsample': (1, 2)}
