"""Image-classification data: loading, train/val split, and input pipelines.

Contract with the model: images are float32 in [0, 1], NHWC; labels are int32.

Two sources are supported (``config.data.source``):

* ``'tfds'``: a TFDS dataset that was prepared beforehand in ``array_record``
  format (see ``generalist_jax.prepare_data``). It is read with
  ``tfds.data_source`` (random access, no TensorFlow needed to read).
* ``'npz'``: a ``.npz`` file with keys ``x_train, y_train, x_test, y_test``
  (uint8 NHWC images, NHW accepted for grayscale; integer labels). Works
  fully offline.
* ``'sklearn_digits'``: scikit-learn's 8x8 handwritten digits (1,797 images,
  shipped inside the package, so offline); a fixed train/test split
  (``DIGITS_TEST_SIZE`` test images). Made for the demo and for tests.

The validation set is carved out of the TRAIN split with a permutation seeded
by ``config.data.split_seed`` (independent of the run seed), so every run of a
comparison selects checkpoints on the same held-out examples. The test split is
never used for model selection.

The training pipeline (:func:`train_batches`) is built with grain and is
deterministic: batch ``k`` is a pure function of ``(seed, k)``, including the
augmentation randomness, so training resumes bit-for-bit from a checkpoint by
passing ``start_step``.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Iterator, Optional, Sequence

import grain
import numpy as np

__all__ = [
    'AUGMENTATIONS',
    'DataNotPreparedError',
    'Dataset',
    'DatasetInfo',
    'SUPPORTED_TFDS_DATASETS',
    'ArraySource',
    'eval_batches',
    'load_dataset',
    'steps_per_epoch',
    'to_float',
    'train_batches',
]

AUGMENTATIONS = ('crop_flip', 'crop', 'none')
CROP_PADDING = 4  # as torchvision RandomCrop(size, padding=4), zero padding.


@dataclasses.dataclass(frozen=True)
class _TfdsSpec:
  num_classes: int
  image_shape: tuple
  mean: tuple
  std: tuple


# Per-channel statistics of the full training split, in [0, 1] units (the
# commonly published values).
SUPPORTED_TFDS_DATASETS = {
    'cifar10': _TfdsSpec(
        10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    ),
    'cifar100': _TfdsSpec(
        100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    ),
    'svhn_cropped': _TfdsSpec(
        10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
    ),
    'mnist': _TfdsSpec(10, (28, 28, 1), (0.1307,), (0.3081,)),
    'fashion_mnist': _TfdsSpec(10, (28, 28, 1), (0.2860,), (0.3530,)),
}


class DataNotPreparedError(ValueError):
  """The requested TFDS dataset has not been prepared in the data_dir."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model needs to know about the data."""
  num_classes: int
  image_shape: tuple  # (H, W, C)
  mean: tuple  # per-channel mean in [0, 1] units (training split)
  std: tuple


class ArraySource:
  """Random-access source over in-memory arrays.

  ``source[i]`` returns ``(uint8 HWC image, int label)``.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f'{len(images)} images but {len(labels)} labels.')
    self.images = images
    self.labels = np.asarray(labels, dtype=np.int32)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i):
    i = int(i)
    return self.images[i], int(self.labels[i])

  def __repr__(self) -> str:
    return f'ArraySource(n={len(self)}, image_shape={self.images.shape[1:]})'


class _TfdsSource:
  """Random-access view of a subset (``indices``) of a TFDS data source.

  ``source[i]`` reads and decodes record ``indices[i]`` and returns
  ``(uint8 HWC image, int label)``. Decoding happens lazily, in the grain
  worker threads.
  """

  def __init__(self, source, indices: np.ndarray, name: str):
    self._source = source
    self._indices = np.asarray(indices, dtype=np.int64)
    self._name = name

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, i):
    example = self._source[int(self._indices[int(i)])]
    return _tfds_example(example)

  def __repr__(self) -> str:
    return f'_TfdsSource({self._name!r}, n={len(self)})'


@dataclasses.dataclass
class Dataset:
  """A loaded dataset: train (random access), validation and test (in memory)."""
  info: DatasetInfo
  train: Any  # random-access source: len(), [i] -> (uint8 HWC, int label)
  val: tuple  # (uint8 NHWC images, int32 labels), in memory
  test: tuple  # (uint8 NHWC images, int32 labels), in memory


# ----------------------------------------------------------------------------
# Loading.
# ----------------------------------------------------------------------------


def _cfg_get(config, key: str, default=None):
  if isinstance(config, dict):
    return config.get(key, default)
  try:
    return config.get(key, default)  # ml_collections.ConfigDict
  except AttributeError:
    return getattr(config, key, default)


def load_dataset(data_config) -> Dataset:
  """Loads the dataset described by ``config.data``."""
  source = _cfg_get(data_config, 'source', 'tfds')
  val_size = int(_cfg_get(data_config, 'val_size', 0) or 0)
  split_seed = int(_cfg_get(data_config, 'split_seed', 0) or 0)
  train_size = _cfg_get(data_config, 'train_size', None)
  test_size = _cfg_get(data_config, 'test_size', None)
  if val_size < 0:
    raise ValueError(f'data.val_size must be >= 0, got {val_size}.')
  if train_size is not None and int(train_size) <= 0:
    raise ValueError(
        f'data.train_size must be a positive int or None, got {train_size}.'
    )
  if test_size is not None and int(test_size) <= 0:
    raise ValueError(
        f'data.test_size must be a positive int or None, got {test_size}.'
    )

  if source == 'tfds':
    return _load_tfds(
        name=_cfg_get(data_config, 'name'),
        data_dir=_cfg_get(data_config, 'data_dir', None),
        val_size=val_size,
        split_seed=split_seed,
        train_size=train_size,
        test_size=test_size,
    )
  if source == 'sklearn_digits':
    return _dataset_from_arrays(
        sklearn_digits_arrays(), 'sklearn_digits', 'the sklearn_digits data',
        val_size=val_size,
        split_seed=split_seed, train_size=train_size, test_size=test_size,
        num_classes=_cfg_get(data_config, 'num_classes', None),
    )
  if source == 'npz':
    return _load_npz(
        path=_cfg_get(data_config, 'path', None),
        val_size=val_size,
        split_seed=split_seed,
        train_size=train_size,
        test_size=test_size,
        num_classes=_cfg_get(data_config, 'num_classes', None),
    )
  raise ValueError(
      f"Unknown data.source={source!r}; expected 'tfds', 'npz' or"
      " 'sklearn_digits'."
  )


def _split_indices(
    n_train: int,
    val_size: int,
    split_seed: int,
    train_size: Optional[int],
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
  """Returns sorted (train_indices, val_indices) into the train split."""
  if n_train < val_size + 1:
    raise ValueError(
        f'{what} has only {n_train} training examples, but data.val_size='
        f'{val_size} must leave at least one for training. Lower data.val_size'
        ' or provide more training examples.'
    )
  perm = np.random.default_rng(split_seed).permutation(n_train)
  val_idx = perm[:val_size]
  train_idx = perm[val_size:]
  if train_size is not None:
    train_size = int(train_size)
    if train_size > len(train_idx):
      raise ValueError(
          f'data.train_size={train_size} but {what} only has'
          f' {len(train_idx)} training examples left after holding out'
          f' data.val_size={val_size}. Lower data.train_size (or set it to'
          ' None to use all of them).'
      )
    train_idx = train_idx[:train_size]
  # Sorted for read locality; order is irrelevant (the pipeline shuffles).
  return np.sort(train_idx), np.sort(val_idx)


def _test_indices(test_size, n_test: int, split_seed: int, what: str) -> np.ndarray:
  """All test examples, or a fixed random subset of `test_size` of them.

  Random, not the first N: files are often sorted by class (the CIFAR-10 JPEG
  archive is), and the first N would then hold only a few classes.
  """
  if test_size is None:
    return np.arange(n_test)
  test_size = int(test_size)
  if test_size > n_test:
    raise ValueError(
        f'data.test_size={test_size} but {what} only has {n_test} test'
        ' examples. Lower data.test_size or set it to None.'
    )
  rng = np.random.default_rng([int(split_seed), 0x7E57])
  return np.sort(rng.permutation(n_test)[:test_size])


# --- TFDS --------------------------------------------------------------------


def _tfds_example(example) -> tuple[np.ndarray, int]:
  image = np.asarray(example['image'], dtype=np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  return image, int(example['label'])


def _read_examples(source, indices, image_shape) -> tuple[np.ndarray, np.ndarray]:
  images = np.empty((len(indices),) + tuple(image_shape), dtype=np.uint8)
  labels = np.empty((len(indices),), dtype=np.int32)
  for j, i in enumerate(indices):
    images[j], labels[j] = _tfds_example(source[int(i)])
  return images, labels


def _default_tfds_data_dir() -> str:
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    return str(tfds.core.constants.DATA_DIR)
  except Exception:  # pylint: disable=broad-except
    return os.path.expanduser('~/tensorflow_datasets')


def _not_prepared_message(name: str, data_dir: Optional[str], cause) -> str:
  looked_in = (
      data_dir
      if data_dir is not None
      else f'{_default_tfds_data_dir()} (TFDS default; data.data_dir=None)'
  )
  data_dir_flag = f' --data_dir={data_dir}' if data_dir is not None else ''
  lines = [
      f"TFDS dataset '{name}' is not prepared (array_record format) in"
      f' data_dir {looked_in}.',
      'Fix (needs internet once; installs TensorFlow only for preparation):',
      f"  pip install -e '.[prepare]' && python -m"
      f' generalist_jax.prepare_data --dataset={name}{data_dir_flag}',
      "Offline alternative: set data.source='npz' and data.path=<file.npz>"
      ' (keys x_train, y_train, x_test, y_test; uint8 NHWC images, integer'
      ' labels).',
  ]
  root = data_dir if data_dir is not None else _default_tfds_data_dir()
  found = sorted(glob.glob(os.path.join(root, name, '**', 'dataset_info.json'),
                           recursive=True))
  if found:
    # Something is there, but not readable as array_record.
    lines.append(
        f'Found TFDS metadata ({found[0]}) but no readable array_record data;'
        ' it may have been prepared in TFRecord format (e.g. by tfds.load),'
        ' which cannot be read without TensorFlow: prepare into a fresh'
        ' --data_dir.'
    )
    lines.append(f'(TFDS said: {type(cause).__name__}: {cause})')
  return '\n'.join(lines)


def _load_tfds(
    name, data_dir, val_size, split_seed, train_size, test_size
) -> Dataset:
  if name not in SUPPORTED_TFDS_DATASETS:
    raise ValueError(
        f'Unsupported TFDS dataset data.name={name!r}. Supported names:'
        f' {", ".join(sorted(SUPPORTED_TFDS_DATASETS))}. (For other data use'
        " data.source='npz'.)"
    )
  spec = SUPPORTED_TFDS_DATASETS[name]
  if data_dir is not None:
    data_dir = os.fspath(data_dir)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  sources = {}
  for split in ('train', 'test'):
    try:
      sources[split] = tfds.data_source(
          name, split=split, data_dir=data_dir, download=False
      )
    except ImportError:
      raise
    except (
        NotImplementedError,  # no metadata -> defaults to TFRECORD format
        KeyError,  # metadata present but no splits
        FileNotFoundError,
        OSError,
        ValueError,
        AssertionError,
    ) as e:
      raise DataNotPreparedError(
          _not_prepared_message(name, data_dir, e)
      ) from e
    if len(sources[split]) == 0:  # pylint: disable=g-explicit-length-test
      raise DataNotPreparedError(
          _not_prepared_message(
              name, data_dir, ValueError(f'split {split!r} is empty')
          )
      )

  what = f"TFDS dataset '{name}'"
  train_idx, val_idx = _split_indices(
      len(sources['train']), val_size, split_seed, train_size, what
  )
  test_idx = _test_indices(test_size, len(sources['test']), split_seed, what)
  val = _read_examples(sources['train'], val_idx, spec.image_shape)
  test = _read_examples(sources['test'], test_idx, spec.image_shape)
  info = DatasetInfo(
      num_classes=spec.num_classes,
      image_shape=tuple(spec.image_shape),
      mean=tuple(spec.mean),
      std=tuple(spec.std),
  )
  return Dataset(
      info=info,
      train=_TfdsSource(sources['train'], train_idx, name),
      val=val,
      test=test,
  )


# --- npz ---------------------------------------------------------------------

_NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def _check_images(x: np.ndarray, key: str, path: str) -> np.ndarray:
  if x.dtype != np.uint8:
    raise ValueError(
        f'{path}: {key} has dtype {x.dtype}, expected uint8 pixels in'
        ' [0, 255]. Convert it, e.g. (np.clip(x, 0, 1) * 255).round()'
        '.astype(np.uint8) for float images in [0, 1].'
    )
  if x.ndim == 3:  # grayscale NHW -> NHW1
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(
        f'{path}: {key} has shape {x.shape}; expected NHWC (4-D) or NHW'
        ' (3-D, grayscale) uint8 images.'
    )
  if x.shape[-1] not in (1, 3, 4):
    hint = (
        ' It looks channels-first (NCHW): use np.transpose(x, (0, 2, 3, 1)).'
        if x.shape[1] in (1, 3, 4)
        else ''
    )
    raise ValueError(
        f'{path}: {key} has shape {x.shape}; expected NHWC with C in'
        f' (1, 3, 4) channels last.{hint}'
    )
  return x


def _check_labels(
    y: np.ndarray, key: str, path: str, n: int, x_key: str
) -> np.ndarray:
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim != 1:
    raise ValueError(
        f'{path}: {key} has shape {y.shape}; expected 1-D integer class ids'
        ' (not one-hot: use y.argmax(-1)).'
    )
  if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
    raise ValueError(
        f'{path}: {key} has dtype {y.dtype}; expected integer class ids'
        ' (e.g. y.astype(np.int64)).'
    )
  if len(y) != n:
    raise ValueError(
        f'{path}: {x_key} has {n} images but {key} has {len(y)} labels;'
        ' they must have the same length.'
    )
  return y.astype(np.int64)


def _channel_stats(x: np.ndarray) -> tuple[tuple, tuple]:
  """Per-channel mean/std of uint8 NHWC images in [0, 1] units."""
  c = x.shape[-1]
  total = np.zeros(c, np.float64)
  total_sq = np.zeros(c, np.float64)
  chunk = 4096
  for start in range(0, len(x), chunk):
    part = x[start : start + chunk].reshape(-1, c).astype(np.float64)
    total += part.sum(0)
    total_sq += np.square(part).sum(0)
  count = x.shape[0] * x.shape[1] * x.shape[2]
  mean = total / count
  var = np.maximum(total_sq / count - np.square(mean), 0.0)
  std = np.sqrt(var)
  std = np.where(std > 0, std, 255.0)  # constant channel: avoid divide by 0
  return tuple(float(v) for v in mean / 255.0), tuple(
      float(v) for v in std / 255.0
  )


def _load_npz(
    path, val_size, split_seed, train_size, test_size, num_classes
) -> Dataset:
  if not path:
    raise ValueError(
        "data.source='npz' needs data.path pointing to a .npz file with keys"
        f' {", ".join(_NPZ_KEYS)}.'
    )
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(
        f'npz file not found: {path}. Set data.path to an existing .npz with'
        f' keys {", ".join(_NPZ_KEYS)}.'
    )
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in _NPZ_KEYS if k not in f.files]
      if missing:
        raise ValueError(
            f'{path} is missing key(s) {", ".join(missing)}; found'
            f' {", ".join(f.files) or "none"}. It needs'
            f' {", ".join(_NPZ_KEYS)} (save with np.savez(path,'
            ' x_train=..., y_train=..., x_test=..., y_test=...)).'
        )
      arrays = {k: f[k] for k in _NPZ_KEYS}
  except ValueError as e:
    if str(e).startswith(path):
      raise
    raise ValueError(
        f'Could not read {path} as a .npz of plain numeric arrays (object'
        f' arrays / pickles are not allowed): {e}'
    ) from e
  except (OSError, EOFError) as e:  # pickle / zip errors
    raise ValueError(f'Could not read {path} as a .npz file: {e}') from e

  return _dataset_from_arrays(
      arrays, path, f'npz file {path}', val_size=val_size, split_seed=split_seed,
      train_size=train_size, test_size=test_size, num_classes=num_classes,
  )


def _dataset_from_arrays(
    arrays, path, what, val_size, split_seed, train_size, test_size, num_classes
) -> Dataset:
  """Checks in-memory ``x_train, y_train, x_test, y_test`` (``path`` and
  ``what`` name their origin in errors), splits off validation and builds the
  Dataset."""
  x_train = _check_images(arrays['x_train'], 'x_train', path)
  x_test = _check_images(arrays['x_test'], 'x_test', path)
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(
        f'{path}: x_train images have shape {x_train.shape[1:]} but x_test'
        f' images have shape {x_test.shape[1:]}; they must match (HWC).'
    )
  y_train = _check_labels(
      arrays['y_train'], 'y_train', path, len(x_train), 'x_train'
  )
  y_test = _check_labels(arrays['y_test'], 'y_test', path, len(x_test), 'x_test')
  if len(x_test) == 0:
    raise ValueError(f'{path}: x_test is empty.')

  inferred = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
  if num_classes is None:
    num_classes = inferred
  num_classes = int(num_classes)
  for key, y in (('y_train', y_train), ('y_test', y_test)):
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(
          f'{path}: {key} has labels in [{y.min()}, {y.max()}], outside'
          f' [0, {num_classes - 1}] (num_classes={num_classes}). Labels'
          ' must be class ids 0..num_classes-1; remap them (or raise'
          ' data.num_classes).'
      )
  if num_classes < 2:
    raise ValueError(
        f'{path}: found only {num_classes} class(es) in the labels; need at'
        ' least 2.'
    )

  train_idx, val_idx = _split_indices(
      len(x_train), val_size, split_seed, train_size, what
  )
  test_idx = _test_indices(test_size, len(x_test), split_seed, what)
  mean, std = _channel_stats(x_train)
  info = DatasetInfo(
      num_classes=num_classes,
      image_shape=tuple(int(d) for d in x_train.shape[1:]),
      mean=mean,
      std=std,
  )
  return Dataset(
      info=info,
      train=ArraySource(
          np.ascontiguousarray(x_train[train_idx]), y_train[train_idx]
      ),
      val=(
          np.ascontiguousarray(x_train[val_idx]),
          y_train[val_idx].astype(np.int32),
      ),
      test=(
          np.ascontiguousarray(x_test[test_idx]),
          y_test[test_idx].astype(np.int32),
      ),
  )


# --- scikit-learn digits -----------------------------------------------------

DIGITS_TEST_SIZE = 297  # of 1,797: 1,500 train (validation is carved from these)


def sklearn_digits_arrays() -> dict:
  """scikit-learn's 8x8 digits as uint8 ``x_train, y_train, x_test, y_test``.

  Pixels 0..16 are scaled to 0..255. The train/test split is a fixed
  permutation (seed 0), independent of every config field, so every run sees
  the same test images; ``data.split_seed`` still picks validation from train.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  perm = np.random.default_rng(0).permutation(len(images))
  test, train = perm[:DIGITS_TEST_SIZE], perm[DIGITS_TEST_SIZE:]
  labels = digits.target.astype(np.int64)
  return {'x_train': images[train], 'y_train': labels[train],
          'x_test': images[test], 'y_test': labels[test]}


# ----------------------------------------------------------------------------
# Pipelines.
# ----------------------------------------------------------------------------


def to_float(images_uint8) -> np.ndarray:
  """uint8 images -> float32 in [0, 1]."""
  return np.asarray(images_uint8).astype(np.float32) / np.float32(255.0)


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
  """Number of full training batches per epoch (remainder dropped)."""
  n = len(dataset.train)
  steps = n // int(batch_size)
  if steps == 0:
    raise ValueError(
        f'batch_size={batch_size} is larger than the {n} training examples;'
        ' lower the batch size or use more training data (data.train_size /'
        ' data.val_size).'
    )
  return steps


def _random_crop(image: np.ndarray, rng: np.random.Generator, pad: int):
  """Zero-pads by ``pad`` on each side and takes a random crop of the input
  size (torchvision ``RandomCrop(size, padding=pad)``), without materializing
  the padded image."""
  h, w = image.shape[:2]
  dy, dx = rng.integers(0, 2 * pad + 1, size=2) - pad  # shift in [-pad, pad]
  out = np.zeros_like(image)
  # out[y, x] = image[y + dy, x + dx] where in range, else 0.
  out[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = image[
      max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
  ]
  return out


class _Augment:
  """Per-example augmentation; all randomness comes from grain's rng, which is
  seeded by (pipeline seed, example position)."""

  def __init__(self, mode: str, pad: int = CROP_PADDING):
    self.mode = mode
    self.pad = pad

  def __call__(self, element, rng: np.random.Generator):
    image, label = element
    image = np.asarray(image, dtype=np.uint8)
    image = _random_crop(image, rng, self.pad)
    if self.mode == 'crop_flip' and rng.random() < 0.5:
      image = image[:, ::-1]
    return image, label


def _collate(elements: Sequence[tuple]) -> dict:
  images = np.stack([np.asarray(e[0], dtype=np.uint8) for e in elements])
  if images.ndim == 3:
    images = images[..., None]
  labels = np.asarray([e[1] for e in elements], dtype=np.int32)
  return {'image': to_float(images), 'label': labels}


def _derive_seeds(seed: int) -> tuple[int, int]:
  """Independent 32-bit shuffle and augmentation seeds from the run seed.

  grain's shuffle uses ``shuffle_seed + epoch`` for each epoch, so passing the
  raw run seed would make run seed s+1 replay run seed s's epoch orders shifted
  by one epoch; hashing the run seed avoids that.
  """
  state = np.random.SeedSequence([int(seed), 0x6A7A]).generate_state(2)
  return int(state[0]), int(state[1])


def train_batches(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    augment: str = 'crop_flip',
    num_threads: int = 2,
    prefetch: int = 2,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict]:
  """Infinite iterator of augmented training batches (this process's share).

  Yields ``{'image': float32 [0,1] (batch_size, H, W, C), 'label': int32
  (batch_size,)}``. Each epoch is a fresh permutation of ``dataset.train``
  (remainder dropped, so an epoch is ``steps_per_epoch`` batches). Batch ``k``
  depends only on ``(seed, k)``; ``start_step=s`` yields batches ``s, s+1,
  ...``. ``num_threads`` threads build up to ``prefetch`` batches ahead.

  With several processes (hosts), process ``p`` of ``P`` yields rows
  ``[p * b, (p + 1) * b)`` of every global batch, ``b = batch_size / P``, and
  reads and augments only those examples; stacked in process order they are
  exactly the single-process batches.
  """
  if augment not in AUGMENTATIONS:
    raise ValueError(
        f'Unknown augment={augment!r}; expected one of {AUGMENTATIONS}.'
    )
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}.')
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}.')
  steps = steps_per_epoch(dataset, batch_size)  # raises if no full batch
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} does not split over {process_count} '
                     'processes; use a multiple of the process count.')
  local_batch = batch_size // process_count
  shuffle_seed, augment_seed = _derive_seeds(seed)

  ds = grain.MapDataset.source(dataset.train)
  ds = ds.shuffle(seed=shuffle_seed)
  if augment != 'none':
    ds = ds.random_map(_Augment(augment), seed=augment_seed)
  # Keep the epoch's full global batches (drop remainder), cut them into
  # per-process rows, keep this process's, then repeat: index e * len + i of
  # the shuffle / random_map reseeds every epoch e (slices pass the epoch on).
  ds = ds[: steps * batch_size]
  ds = ds.batch(local_batch, drop_remainder=True, batch_fn=_collate)
  ds = ds[process_index::process_count]
  ds = ds.repeat(None)
  ds = ds.slice(slice(int(start_step), None))
  iter_ds = ds.to_iter_dataset(
      grain.ReadOptions(
          num_threads=int(num_threads), prefetch_buffer_size=int(prefetch)
      )
  )
  return iter(iter_ds)


def eval_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
  """Yields ``(float32 images, int32 labels, n_valid)`` in order.

  Every batch has exactly ``batch_size`` rows (one shape for jit); the last
  one is zero-padded and ``n_valid`` says how many leading rows are real.
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim == 3:
    images = images[..., None]
  if len(images) != len(labels):
    raise ValueError(f'{len(images)} images but {len(labels)} labels.')
  batch_size = int(batch_size)
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  for start in range(0, len(images), batch_size):
    x = images[start : start + batch_size]
    y = labels[start : start + batch_size].astype(np.int32)
    n_valid = len(x)
    if n_valid < batch_size:
      pad = batch_size - n_valid
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros((pad,), np.int32)])
    yield to_float(x), y, n_valid
