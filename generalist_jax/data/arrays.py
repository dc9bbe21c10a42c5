"""In-memory image arrays: an ``.npz`` file (keys ``x_train, y_train, x_test,
y_test``; uint8 NHWC images, NHW accepted for grayscale; integer labels; fully
offline) and scikit-learn's 8x8 digits (shipped inside the package; made for the
demo and for tests). Every array is checked, with an error naming the fix.
"""
from __future__ import annotations

import os

import numpy as np

from generalist_jax.data import splits

_NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def _check_images(x: np.ndarray, key: str, path: str) -> np.ndarray:
  """uint8 NHWC images (NHW gets a channel axis); ValueError naming the fix otherwise."""
  if x.dtype != np.uint8:
    raise ValueError(f'{path}: {key} has dtype {x.dtype}, expected uint8 pixels in'
                     ' [0, 255]. Convert it, e.g. (np.clip(x, 0, 1) * 255).round()'
                     '.astype(np.uint8) for float images in [0, 1].')
  if x.ndim == 3:  # grayscale NHW -> NHW1
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f'{path}: {key} has shape {x.shape}; expected NHWC (4-D) or NHW'
                     ' (3-D, grayscale) uint8 images.')
  problem = channels_last_problem(x.shape)
  if problem:
    raise ValueError(f'{path}: {key} {problem}')
  return x


def channels_last_problem(shape: tuple) -> str | None:
  """Why 4-D images are not NHWC with 1, 3 or 4 channels last. Every entry point
  that takes image arrays (npz files, the AutoAttack API) says it the same way.

  Args:
    shape: the images' shape, 4-D.

  Returns:
    The reason (naming the transpose when they look channels-first, NCHW), or None.
  """
  if shape[-1] in (1, 3, 4):
    return None
  hint = (' It looks channels-first (NCHW): use np.transpose(x, (0, 2, 3, 1)).'
          if shape[1] in (1, 3, 4) else '')
  return f'has shape {tuple(shape)}; expected NHWC with C in (1, 3, 4) channels last.{hint}'


def _check_labels(y: np.ndarray, key: str, path: str, n: int, x_key: str) -> np.ndarray:
  """int64 [n] class ids ([n, 1] accepted); ValueError naming the fix otherwise."""
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim != 1:
    raise ValueError(f'{path}: {key} has shape {y.shape}; expected 1-D integer class ids'
                     ' (not one-hot: use y.argmax(-1)).')
  if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
    raise ValueError(f'{path}: {key} has dtype {y.dtype}; expected integer class ids'
                     ' (e.g. y.astype(np.int64)).')
  if len(y) != n:
    raise ValueError(f'{path}: {x_key} has {n} images but {key} has {len(y)} labels;'
                     ' they must have the same length.')
  return y.astype(np.int64)


def channel_stats(x: np.ndarray) -> tuple[tuple, tuple]:
  """Per-channel mean and standard deviation, the normalisation a model applies.

  Args:
    x: uint8 NHWC images (read in chunks of 4096, summed in float64).

  Returns:
    (mean, std): tuples of C floats in [0, 1] units; a constant channel gets std 1.
  """
  c = x.shape[-1]
  total = np.zeros(c, np.float64)
  total_sq = np.zeros(c, np.float64)
  chunk = 4096
  for start in range(0, len(x), chunk):
    part = x[start:start + chunk].reshape(-1, c).astype(np.float64)
    total += part.sum(0)
    total_sq += np.square(part).sum(0)
  count = x.shape[0] * x.shape[1] * x.shape[2]
  mean = total / count
  var = np.maximum(total_sq / count - np.square(mean), 0.0)
  std = np.sqrt(var)
  std = np.where(std > 0, std, 255.0)  # constant channel: avoid divide by 0
  return tuple(float(v) for v in mean / 255.0), tuple(float(v) for v in std / 255.0)


def load_npz(data_config, split: splits.SplitSpec) -> splits.Dataset:
  """The dataset of an .npz file (fully offline).

  Args:
    data_config: `config.data`: path (keys x_train, y_train, x_test, y_test) and
      num_classes (None: max label + 1).
    split: the sizes and seed of the train / validation / test split.

  Returns:
    The `splits.Dataset` (`dataset_from_arrays`).

  Raises:
    ValueError: naming the file and the fix, when it is missing, unreadable (object
      arrays / pickles are refused), lacks a key or holds malformed arrays.
  """
  path = data_config.get('path', None)
  if not path:
    raise ValueError("data.source='npz' needs data.path pointing to a .npz file with keys"
                     f' {", ".join(_NPZ_KEYS)}.')
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f'npz file not found: {path}. Set data.path to an existing .npz with'
                     f' keys {", ".join(_NPZ_KEYS)}.')
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in _NPZ_KEYS if k not in f.files]
      if missing:
        raise ValueError(f'{path} is missing key(s) {", ".join(missing)}; found'
                         f' {", ".join(f.files) or "none"}. It needs'
                         f' {", ".join(_NPZ_KEYS)} (save with np.savez(path,'
                         ' x_train=..., y_train=..., x_test=..., y_test=...)).')
      arrays = {k: f[k] for k in _NPZ_KEYS}
  except ValueError as e:
    if str(e).startswith(path):
      raise
    raise ValueError(f'Could not read {path} as a .npz of plain numeric arrays (object'
                     f' arrays / pickles are not allowed): {e}') from e
  except (OSError, EOFError) as e:  # pickle / zip errors
    raise ValueError(f'Could not read {path} as a .npz file: {e}') from e

  return dataset_from_arrays(arrays, path, f'npz file {path}', split,
                             num_classes=data_config.get('num_classes', None))


def _check_every_class_occurs(labels: np.ndarray, inferred: int, path) -> None:
  """With data.num_classes unset, the class count is max label + 1; a class id that no
  example has means a stray label (a 255 among 0-9 would make 256 classes)."""
  missing = np.setdiff1d(np.arange(inferred), labels)
  if len(missing):
    raise ValueError(
        f'{path}: the labels run up to {inferred - 1}, so there would be {inferred} classes, '
        f'but {len(missing)} of the ids 0..{inferred - 1} have no example (e.g. '
        f'{missing[:5].tolist()}): a stray label? Set data.num_classes to the real number '
        'of classes (labels outside 0..num_classes-1 are then refused, naming them), or '
        'fix the labels.')


def _checked_arrays(arrays, path) -> tuple:
  """(x_train, y_train, x_test, y_test) once checked: uint8 NHWC images of one HWC
  shape, 1-D integer labels as many as the images, a test split that is not empty."""
  x_train = _check_images(arrays['x_train'], 'x_train', path)
  x_test = _check_images(arrays['x_test'], 'x_test', path)
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(f'{path}: x_train images have shape {x_train.shape[1:]} but x_test'
                     f' images have shape {x_test.shape[1:]}; they must match (HWC).')
  y_train = _check_labels(arrays['y_train'], 'y_train', path, len(x_train), 'x_train')
  y_test = _check_labels(arrays['y_test'], 'y_test', path, len(x_test), 'x_test')
  if len(x_test) == 0:
    raise ValueError(f'{path}: x_test is empty.')
  return x_train, y_train, x_test, y_test


def _checked_num_classes(y_train, y_test, num_classes, path) -> int:
  """The class count: `num_classes`, or max label + 1 when it is None (then every
  class must occur); every label must be a class id and there must be 2 classes."""
  inferred = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
  if num_classes is None:
    _check_every_class_occurs(np.concatenate([y_train, y_test]), inferred, path)
    num_classes = inferred
  num_classes = int(num_classes)
  for key, y in (('y_train', y_train), ('y_test', y_test)):
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f'{path}: {key} has labels in [{y.min()}, {y.max()}], outside'
                       f' [0, {num_classes - 1}] (num_classes={num_classes}). Labels'
                       ' must be class ids 0..num_classes-1; remap them (or raise'
                       ' data.num_classes).')
  if num_classes < 2:
    raise ValueError(f'{path}: found only {num_classes} class(es) in the labels; need at'
                     ' least 2.')
  return num_classes


def dataset_from_arrays(arrays, path, what, split: splits.SplitSpec,
                        num_classes=None) -> splits.Dataset:
  """A Dataset from in-memory arrays, checked, with validation split off train.

  Args:
    arrays: a mapping with x_train, y_train, x_test, y_test (uint8 NHWC or NHW
      images, integer labels).
    path, what: name the arrays' origin in errors (a file path; 'npz file ...').
    split: the sizes and seed of the train / validation / test split.
    num_classes: the class count; None infers max label + 1.

  Returns:
    The `splits.Dataset`: train an `ArraySource`, val and test (uint8 images,
    int32 labels), and info with the per-channel mean / std of the whole train
    array in [0, 1] units.

  Raises:
    ValueError: naming the fix, for arrays off that contract (dtype, shape,
      labels outside 0..num_classes-1, a class id without examples when
      num_classes is None, fewer than 2 classes, an empty test split, split
      sizes the data cannot hold).
  """
  x_train, y_train, x_test, y_test = _checked_arrays(arrays, path)
  num_classes = _checked_num_classes(y_train, y_test, num_classes, path)
  train_idx, val_idx = splits.split_indices(len(x_train), split.val_size, split.split_seed,
                                            split.train_size, what)
  test_idx = splits.test_indices(split.test_size, len(x_test), split.split_seed, what)
  mean, std = channel_stats(x_train)
  info = splits.DatasetInfo(
      num_classes=num_classes,
      image_shape=tuple(int(d) for d in x_train.shape[1:]),
      mean=mean,
      std=std,
  )
  return splits.Dataset(
      info=info,
      train=splits.ArraySource(np.ascontiguousarray(x_train[train_idx]), y_train[train_idx]),
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
  """scikit-learn's 8x8 digits (shipped with scikit-learn: offline) as arrays.

  Pixels 0..16 are scaled to 0..255. The train/test split is a fixed
  permutation (seed 0), independent of every config field, so every run sees
  the same test images; ``data.split_seed`` still picks validation from train.

  Returns:
    {x_train: uint8 [1500, 8, 8, 1], y_train: int64 [1500], x_test: uint8
    [297, 8, 8, 1], y_test: int64 [297]}.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  perm = np.random.default_rng(0).permutation(len(images))
  test, train = perm[:DIGITS_TEST_SIZE], perm[DIGITS_TEST_SIZE:]
  labels = digits.target.astype(np.int64)
  return {
      'x_train': images[train], 'y_train': labels[train], 'x_test': images[test],
      'y_test': labels[test]
  }


def load_digits(data_config, split: splits.SplitSpec) -> splits.Dataset:
  """scikit-learn's 8x8 digits (offline), on the fixed split of `sklearn_digits_arrays`.

  Args:
    data_config: `config.data` (num_classes, None: 10 inferred).
    split: the sizes and seed of the train / validation split.

  Returns:
    The `splits.Dataset` (`dataset_from_arrays`).

  Raises:
    ValueError: num_classes below 10; split sizes the 1,500 training images cannot
      hold.
  """
  return dataset_from_arrays(sklearn_digits_arrays(), 'sklearn_digits', 'the sklearn_digits data',
                             split, num_classes=data_config.get('num_classes', None))
