"""TFDS datasets, prepared once in ``array_record`` format and read with
``tfds.data_source`` (random access, no TensorFlow needed to read).

Preparing needs TensorFlow and internet once (``prepare``; the CLI is
``python -m generalist_jax.prepare_data --dataset=cifar10``).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Optional

import numpy as np

from generalist_jax.data import splits


@dataclasses.dataclass(frozen=True)
class _TfdsSpec:
  num_classes: int
  image_shape: tuple
  mean: tuple
  std: tuple


# Per-channel statistics of the full training split, in [0, 1] units (the
# commonly published values).
SUPPORTED_TFDS_DATASETS = {
    'cifar10': _TfdsSpec(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    'cifar100': _TfdsSpec(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'svhn_cropped': _TfdsSpec(10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    'mnist': _TfdsSpec(10, (28, 28, 1), (0.1307,), (0.3081,)),
    'fashion_mnist': _TfdsSpec(10, (28, 28, 1), (0.2860,), (0.3530,)),
}


class DataNotPreparedError(ValueError):
  """The requested TFDS dataset has not been prepared in the data_dir."""


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


# --- TFDS --------------------------------------------------------------------


def _tfds_example(example) -> tuple[np.ndarray, int]:
  """(uint8 HWC image, int label) of a decoded TFDS example (HW gets a channel axis)."""
  image = np.asarray(example['image'], dtype=np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  return image, int(example['label'])


def _read_examples(source, indices, image_shape) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images [n, H, W, C], int32 labels [n]) of records `indices`, in memory."""
  images = np.empty((len(indices),) + tuple(image_shape), dtype=np.uint8)
  labels = np.empty((len(indices),), dtype=np.int32)
  for j, i in enumerate(indices):
    images[j], labels[j] = _tfds_example(source[int(i)])
  return images, labels


def _default_tfds_data_dir() -> str:
  """TFDS's default data_dir (~/tensorflow_datasets when TFDS cannot say)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    return str(tfds.core.constants.DATA_DIR)
  except Exception:  # pylint: disable=broad-except
    return os.path.expanduser('~/tensorflow_datasets')


def _not_prepared_message(name: str, data_dir: Optional[str], cause) -> str:
  """Where the dataset was looked for, the prepare command, the offline alternative,
  and TFDS's error where metadata without array_record data is there."""
  looked_in = (data_dir if data_dir is not None else
               f'{_default_tfds_data_dir()} (TFDS default; data.data_dir=None)')
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
  found = sorted(glob.glob(os.path.join(root, name, '**', 'dataset_info.json'), recursive=True))
  if found:
    # Something is there, but not readable as array_record.
    lines.append(f'Found TFDS metadata ({found[0]}) but no readable array_record data;'
                 ' it may have been prepared in TFRecord format (e.g. by tfds.load),'
                 ' which cannot be read without TensorFlow: prepare into a fresh'
                 ' --data_dir.')
    lines.append(f'(TFDS said: {type(cause).__name__}: {cause})')
  return '\n'.join(lines)


def _data_sources(name: str, data_dir: Optional[str]) -> dict:
  """{'train', 'test'}: random-access sources of the prepared splits; raises
  DataNotPreparedError, with the prepare command, when a split is missing or empty."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  sources = {}
  for part in ('train', 'test'):
    try:
      sources[part] = tfds.data_source(name, split=part, data_dir=data_dir, download=False)
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
      raise DataNotPreparedError(_not_prepared_message(name, data_dir, e)) from e
    if len(sources[part]) == 0:  # pylint: disable=g-explicit-length-test
      raise DataNotPreparedError(
          _not_prepared_message(name, data_dir, ValueError(f'split {part!r} is empty')))
  return sources


def load_tfds(data_config, split: splits.SplitSpec) -> splits.Dataset:
  """A prepared TFDS dataset: training examples read lazily, validation and test
  read into memory.

  Args:
    data_config: `config.data`: name (a key of SUPPORTED_TFDS_DATASETS) and
      data_dir (None: TFDS's default).
    split: the sizes and seed of the train / validation / test split.

  Returns:
    The `splits.Dataset`: train a random-access source decoding on read, val and
    test uint8 images with int32 labels, info with the published statistics.

  Raises:
    ValueError: an unsupported name; split sizes the data cannot hold.
    DataNotPreparedError: the dataset is not prepared in array_record format in
      data_dir (the message gives the one-line prepare command).
  """
  name, data_dir = data_config.get('name'), data_config.get('data_dir', None)
  if name not in SUPPORTED_TFDS_DATASETS:
    raise ValueError(f'Unsupported TFDS dataset data.name={name!r}. Supported names:'
                     f' {", ".join(sorted(SUPPORTED_TFDS_DATASETS))}. (For other data use'
                     " data.source='npz'.)")
  spec = SUPPORTED_TFDS_DATASETS[name]
  if data_dir is not None:
    data_dir = os.fspath(data_dir)
  sources = _data_sources(name, data_dir)

  what = f"TFDS dataset '{name}'"
  train_idx, val_idx = splits.split_indices(len(sources['train']), split.val_size, split.split_seed,
                                            split.train_size, what)
  test_idx = splits.test_indices(split.test_size, len(sources['test']), split.split_seed, what)
  val = _read_examples(sources['train'], val_idx, spec.image_shape)
  test = _read_examples(sources['test'], test_idx, spec.image_shape)
  info = splits.DatasetInfo(
      num_classes=spec.num_classes,
      image_shape=tuple(spec.image_shape),
      mean=tuple(spec.mean),
      std=tuple(spec.std),
  )
  return splits.Dataset(
      info=info,
      train=_TfdsSource(sources['train'], train_idx, name),
      val=val,
      test=test,
  )


def prepare(name: str, data_dir=None) -> str:
  """Downloads and prepares a TFDS dataset in array_record format (once).

  Args:
    name: the TFDS name, e.g. 'cifar10'.
    data_dir: where to prepare it (None: TFDS's default).

  Returns:
    The prepared dataset's directory.

  Raises:
    SystemExit: TensorFlow (the `prepare` extra) is not installed; the message
      says how to install it. Internet is needed too.
  """
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
  except ImportError as e:
    raise SystemExit(f'Preparing TFDS datasets needs TensorFlow ({e}). Install it with:\n'
                     "  pip install -e '.[prepare]'\n"
                     'then re-run this command.') from e
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  return str(builder.data_dir)
