"""Tests for generalist_jax.data (offline: mock TFDS data or tmp npz files)."""

import itertools

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from generalist_jax import data
from generalist_jax.data import pipeline
from tests.conftest import write_tiny_npz


def _config(**overrides):
  cfg = ml_collections.ConfigDict(
      dict(
          source='npz',
          name='toy',
          data_dir=None,
          path=None,
          val_size=10,
          split_seed=0,
          train_size=None,
          test_size=None,
          augment='crop_flip',
          num_threads=2,
          prefetch=2,
      ))
  cfg.update(overrides)
  return cfg


def _write_npz(path, n_train=60, n_test=25, shape=(32, 32, 3), seed=0, **kw):
  rng = np.random.default_rng(seed)
  arrays = dict(
      x_train=rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
      y_train=rng.integers(0, 10, n_train),
      x_test=rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
      y_test=rng.integers(0, 10, n_test),
  )
  arrays.update(kw)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez(path, **arrays)
  return arrays


def _rows(images):
  return {img.tobytes() for img in images}


@pytest.fixture
def npz_dataset(tmp_path):
  path = tmp_path / 'toy.npz'
  arrays = _write_npz(path)
  return data.load_dataset(_config(path=str(path))), arrays


def _take(it, n):
  return list(itertools.islice(it, n))


# --- TFDS (mocked) -------------------------------------------------------------


def test_tfds_cifar10_mock():
  with tfds.testing.mock_data(num_examples=40):
    ds = data.load_dataset(
        _config(source='tfds', name='cifar10', val_size=8, train_size=20, test_size=12))
    assert ds.info.num_classes == 10
    assert ds.info.image_shape == (32, 32, 3)
    assert len(ds.info.mean) == len(ds.info.std) == 3
    assert len(ds.train) == 20
    x_val, y_val = ds.val
    x_test, y_test = ds.test
    assert x_val.shape == (8, 32, 32, 3) and x_val.dtype == np.uint8
    assert y_val.shape == (8,) and y_val.dtype == np.int32
    assert x_test.shape == (12, 32, 32, 3) and x_test.dtype == np.uint8
    assert y_test.dtype == np.int32
    train = [ds.train[i] for i in range(len(ds.train))]
    for image, label in train:
      assert image.shape == (32, 32, 3) and image.dtype == np.uint8
      assert isinstance(label, int) and 0 <= label < 10
    # Val is held out of train (mock images are random, hence unique).
    assert not _rows(x_val) & _rows(img for img, _ in train)
    assert len(_rows(img for img, _ in train)) == 20

    batch = next(data.train_batches(ds, 8, seed=0))
    assert batch['image'].shape == (8, 32, 32, 3)
    assert batch['image'].dtype == np.float32
    assert batch['label'].dtype == np.int32


def _prepare_fake_cifar10(data_dir, n_train, n_test):
  """Writes a small real array_record 'cifar10' (random pixels) without TF.

  Scaffolding only: TFDS needs TensorFlow to PNG-encode images, so the encoder
  is swapped for PIL's. Returns the train and test images in generation order.
  """
  import io  # pylint: disable=g-import-not-at-top

  from PIL import Image as PILImage  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  images = {
      'train': rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
      'test': rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
  }

  class Cifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('3.0.2')

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              'id': tfds.features.Text(),
              'image': tfds.features.Image(shape=(32, 32, 3)),
              'label': tfds.features.ClassLabel(num_classes=10),
          }),
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(s) for s in images}

    def _generate_examples(self, split):
      for i, image in enumerate(images[split]):
        yield i, {'id': str(i), 'image': image, 'label': i % 10}

  def encode_png(self, image):
    del self
    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(image)).save(buf, format='PNG')
    return buf.getvalue()

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(tfds.features.Image, 'encode_example', encode_png)
    try:
      Cifar10(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      pytest.skip(f'cannot build a TF-free array_record fixture here: {e!r}')
  return images


def test_tfds_real_array_record(tmp_path):
  """Reads real array_record files (PNG decoding, grain threads), no mocks."""
  images = _prepare_fake_cifar10(tmp_path, n_train=60, n_test=20)
  ds = data.load_dataset(_config(source='tfds', name='cifar10', data_dir=str(tmp_path),
                                 val_size=10))
  assert len(ds.train) == 50
  assert ds.val[0].shape == (10, 32, 32, 3)
  assert ds.test[0].shape == (20, 32, 32, 3) and ds.test[1].dtype == np.int32
  train_images = [ds.train[i][0] for i in range(len(ds.train))]
  assert not _rows(ds.val[0]) & _rows(train_images)
  assert _rows(ds.val[0]) | _rows(train_images) == _rows(images['train'])
  assert _rows(ds.test[0]) == _rows(images['test'])
  full = _take(data.train_batches(ds, 16, seed=0), 7)
  resumed = _take(data.train_batches(ds, 16, seed=0, start_step=4, num_threads=4, prefetch=6), 3)
  for a, b in zip(full[4:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_tfds_not_prepared(tmp_path):
  empty = tmp_path / 'empty_tfds'
  empty.mkdir()
  with pytest.raises(data.DataNotPreparedError) as err:
    data.load_dataset(_config(source='tfds', name='mnist', data_dir=str(empty)))
  msg = str(err.value)
  assert isinstance(err.value, ValueError)
  assert 'mnist' in msg and str(empty) in msg
  assert "pip install -e '.[prepare]'" in msg
  assert 'python -m generalist_jax.prepare_data --dataset=mnist' in msg
  assert f'--data_dir={empty}' in msg
  assert "data.source='npz'" in msg


def test_tfds_unknown_name():
  with pytest.raises(ValueError) as err:
    data.load_dataset(_config(source='tfds', name='imagenet2012'))
  for name in ('cifar10', 'cifar100', 'svhn_cropped', 'mnist', 'fashion_mnist'):
    assert name in str(err.value)


# --- npz -----------------------------------------------------------------------


def test_npz_loads_and_split_is_deterministic(tmp_path, npz_dataset):
  ds, arrays = npz_dataset
  assert ds.info.num_classes == int(max(arrays['y_train'].max(), arrays['y_test'].max())) + 1
  assert ds.info.image_shape == (32, 32, 3)
  np.testing.assert_allclose(ds.info.mean, arrays['x_train'].mean(axis=(0, 1, 2)) / 255, rtol=1e-6)
  np.testing.assert_allclose(ds.info.std, arrays['x_train'].std(axis=(0, 1, 2)) / 255, rtol=1e-5)
  assert len(ds.train) == 50
  x_val, y_val = ds.val
  assert x_val.shape == (10, 32, 32, 3) and y_val.dtype == np.int32
  np.testing.assert_array_equal(ds.test[0], arrays['x_test'])
  np.testing.assert_array_equal(ds.test[1], arrays['y_test'])
  train_images = [ds.train[i][0] for i in range(len(ds.train))]
  assert not _rows(x_val) & _rows(train_images)
  assert _rows(x_val) | _rows(train_images) == _rows(arrays['x_train'])
  # Labels stay attached to their images.
  lookup = {x.tobytes(): y for x, y in zip(arrays['x_train'], arrays['y_train'])}
  for i in range(len(ds.train)):
    image, label = ds.train[i]
    assert lookup[image.tobytes()] == label

  path = tmp_path / 'toy.npz'
  again = data.load_dataset(_config(path=str(path)))
  np.testing.assert_array_equal(again.val[0], x_val)
  np.testing.assert_array_equal(again.val[1], y_val)
  other = data.load_dataset(_config(path=str(path), split_seed=1))
  assert _rows(other.val[0]) != _rows(x_val)

  # train_size keeps a subset of the same non-validation examples; test_size
  # keeps a fixed random subset of the test examples (not the first ones: files
  # sorted by class would give a few classes only).
  small = data.load_dataset(_config(path=str(path), train_size=7, test_size=5))
  assert len(small.train) == 7
  np.testing.assert_array_equal(small.val[0], x_val)
  assert _rows(small.train[i][0] for i in range(7)) <= _rows(train_images)
  test_rows = _rows(arrays['x_test'])
  assert len(small.test[0]) == 5 and _rows(small.test[0]) <= test_rows
  np.testing.assert_array_equal(small.test[0],
                                data.load_dataset(_config(path=str(path), test_size=5)).test[0])


def test_npz_grayscale_nhw(tmp_path):
  path = tmp_path / 'gray.npz'
  _write_npz(path, shape=(28, 28))
  ds = data.load_dataset(_config(path=str(path)))
  assert ds.info.image_shape == (28, 28, 1)
  assert len(ds.info.mean) == 1
  assert ds.val[0].shape == (10, 28, 28, 1)
  assert ds.train[0][0].shape == (28, 28, 1)
  batch = next(data.train_batches(ds, 4, seed=0, augment='crop'))
  assert batch['image'].shape == (4, 28, 28, 1)


@pytest.mark.parametrize(
    'kwargs, expected',
    [
        (dict(y_test=None), 'y_test'),
        (dict(x_train=None, y_test=None), 'x_train, y_test'),
        (dict(x_train=np.zeros((60, 32, 32, 3), np.float32)), 'uint8'),
        (dict(x_train=np.zeros((60, 3, 32, 32), np.uint8)), 'NCHW'),
        (dict(x_train=np.zeros((60, 32 * 32 * 3), np.uint8)), 'NHWC'),
        (dict(y_train=np.zeros(59, np.int64)), 'same length'),
        (dict(y_train=np.full(60, -1)), 'y_train has labels'),
        (dict(y_train=np.zeros(60, np.float32)), 'integer'),
        (dict(n_train=10), 'val_size'),
    ],
)
def test_npz_errors(tmp_path, kwargs, expected):
  path = tmp_path / 'bad.npz'
  _write_npz(path, **kwargs)
  with pytest.raises(ValueError) as err:
    data.load_dataset(_config(path=str(path)))
  assert str(path) in str(err.value)
  assert expected in str(err.value)


def test_npz_label_out_of_range_with_num_classes(tmp_path):
  path = tmp_path / 'bad.npz'
  _write_npz(path)
  with pytest.raises(ValueError, match='outside'):
    data.load_dataset(_config(path=str(path), num_classes=5))


def test_one_stray_label_is_refused_not_taken_for_246_classes_more(tmp_path):
  """Fault kind: a single 255 among labels 0-9 loaded as 256 classes."""
  path = tmp_path / 'stray.npz'
  rng = np.random.default_rng(0)
  y_train = np.arange(60) % 10
  y_train[7] = 255
  np.savez(path, x_train=rng.integers(0, 256, (60, 4, 4, 3), dtype=np.uint8), y_train=y_train,
           x_test=rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8), y_test=np.arange(20) % 10)
  with pytest.raises(ValueError, match=r'256 classes.*245 of the ids.*data\.num_classes'):
    data.load_dataset(_config(path=str(path)))
  with pytest.raises(ValueError, match=r'y_train has labels in \[0, 255\], outside \[0, 9\]'):
    data.load_dataset(_config(path=str(path), num_classes=10))
  y_train[7] = 3  # every class present: inferred as before
  np.savez(path, x_train=np.zeros((60, 4, 4, 3), np.uint8), y_train=y_train, x_test=np.zeros(
      (20, 4, 4, 3), np.uint8), y_test=np.arange(20) % 10)
  assert data.load_dataset(_config(path=str(path))).info.num_classes == 10


def test_npz_missing_file(tmp_path):
  path = tmp_path / 'nope.npz'
  with pytest.raises(ValueError) as err:
    data.load_dataset(_config(path=str(path)))
  assert str(path) in str(err.value) and 'not found' in str(err.value)


# --- pipelines -----------------------------------------------------------------


def test_train_batches_resume_is_exact(npz_dataset):
  ds, _ = npz_dataset
  assert data.steps_per_epoch(ds, 16) == 3
  full = _take(data.train_batches(ds, 16, seed=3), 11)
  resumed = _take(data.train_batches(ds, 16, seed=3, start_step=5), 6)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Thread count does not change the result.
  single = _take(data.train_batches(ds, 16, seed=3, num_threads=0), 11)
  for a, b in zip(full, single):
    np.testing.assert_array_equal(a['image'], b['image'])

  for b in full:
    assert b['image'].shape == (16, 32, 32, 3)
    assert b['image'].dtype == np.float32
    assert b['label'].shape == (16,) and b['label'].dtype == np.int32
    assert b['image'].min() >= 0.0 and b['image'].max() <= 1.0

  other = _take(data.train_batches(ds, 16, seed=4), 3)
  assert any(not np.array_equal(a['image'], b['image']) for a, b in zip(full, other))


def test_train_batches_epochs_reshuffle(npz_dataset):
  ds, _ = npz_dataset
  n = len(ds.train)  # 50
  label_of = {ds.train[i][0].tobytes(): i for i in range(n)}
  # No augmentation so that source examples can be identified.
  batches = _take(data.train_batches(ds, 10, seed=0, augment='none'), 15)
  order = [
      label_of[(np.asarray(img) * 255).round().astype(np.uint8).tobytes()]
      for b in batches
      for img in b['image']
  ]
  epochs = [order[e * n:(e + 1) * n] for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(n))  # each epoch is a permutation
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_augment_none_is_exact_and_crop_flip_keeps_shape(npz_dataset):
  ds, _ = npz_dataset
  source = {ds.train[i][0].tobytes(): ds.train[i] for i in range(len(ds.train))}
  batch = next(data.train_batches(ds, 10, seed=1, augment='none'))
  for img, label in zip(batch['image'], batch['label']):
    uint8 = (img * 255).round().astype(np.uint8)
    src_img, src_label = source[uint8.tobytes()]
    np.testing.assert_array_equal(img, data.to_float(src_img))
    assert label == src_label

  aug = next(data.train_batches(ds, 10, seed=1, augment='crop_flip'))
  assert aug['image'].shape == (10, 32, 32, 3)
  assert aug['image'].dtype == np.float32
  np.testing.assert_array_equal(aug['label'], batch['label'])  # same order
  assert not np.array_equal(aug['image'], batch['image'])

  with pytest.raises(ValueError, match='augment'):
    data.train_batches(ds, 10, seed=1, augment='mixup')
  with pytest.raises(ValueError):
    data.steps_per_epoch(ds, 51)


def test_random_crop_matches_zero_pad_then_crop():
  rng = np.random.default_rng(0)
  image = rng.integers(1, 256, (8, 8, 3), dtype=np.uint8)
  for seed in range(30):
    out = pipeline._random_crop(image, np.random.default_rng(seed), pad=4)
    dy, dx = np.random.default_rng(seed).integers(0, 9, size=2)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    np.testing.assert_array_equal(out, padded[dy:dy + 8, dx:dx + 8])


def test_to_float():
  x = np.array([[0, 128, 255]], np.uint8)
  y = data.to_float(x)
  assert y.dtype == np.float32
  np.testing.assert_array_equal(y, np.float32([[0, 128 / 255, 1]]))


def test_eval_batches_pads(npz_dataset):
  ds, arrays = npz_dataset
  x_test, y_test = ds.test  # 25 examples
  batches = list(data.eval_batches(x_test, y_test, 10))
  assert [n for _, _, n in batches] == [10, 10, 5]
  for x, y, _ in batches:
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (10,) and y.dtype == np.int32
  x_all = np.concatenate([x[:n] for x, _, n in batches])
  y_all = np.concatenate([y[:n] for _, y, n in batches])
  np.testing.assert_array_equal(x_all, data.to_float(arrays['x_test']))
  np.testing.assert_array_equal(y_all, arrays['y_test'])
  assert list(data.eval_batches(x_test[:0], y_test[:0], 10)) == []


def test_test_subset_is_spread_over_classes_when_the_file_is_sorted(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / 'sorted.npz'
  np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
           y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (100, 8, 8, 3), dtype=np.uint8),
           y_test=np.repeat(np.arange(10), 10))  # sorted by class
  ds = data.load_dataset(_config(path=str(path), val_size=4, test_size=20))
  assert len(np.unique(ds.test[1])) >= 6  # the first 20 hold only 2


def test_a_runs_normalisation_is_part_of_the_run(tmp_path, capsys):
  """Fault kind: mean/std were recomputed from the data at evaluation time, so
  adding training images to the npz changed the evaluated model."""
  from generalist_jax.run import evaluate_run
  from generalist_jax.run import loop
  from generalist_jax.run import restore
  from tests.tiny_config import tiny_config
  npz = write_tiny_npz(tmp_path / 'd.npz', n_train=48, n_test=24)
  config = tiny_config(npz)
  config.eval.final_test = False
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(config, str(workdir))
  kwargs = dict(checkpoint='last', attacks='pgd', norms=['linf'], eps=[0.01], n_ex=24, batch_size=8,
                overrides={'steps': 1}, progress=False)
  before = evaluate_run.evaluate_run(workdir, name='before', **kwargs)
  saved = restore.restore_run(workdir).dataset.info
  with np.load(npz) as f:  # the same test set; more, brighter training images
    arrays = dict(f)
  arrays['x_train'] = np.concatenate([arrays['x_train'], np.full_like(arrays['x_train'], 250)])
  arrays['y_train'] = np.concatenate([arrays['y_train'], arrays['y_train']])
  np.savez(npz, **arrays)
  capsys.readouterr()
  after = evaluate_run.evaluate_run(workdir, name='after', **kwargs)
  assert 'normalisation statistics differ' in capsys.readouterr().out
  assert after['clean_acc'] == before['clean_acc']
  flags = lambda name: (workdir / 'eval' / f'{name}.csv').read_text()
  assert flags('after') == flags('before')
  assert restore.restore_run(workdir).dataset.info == saved  # the run's own constants
