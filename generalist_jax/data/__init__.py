"""Image-classification data: the front door.

Sources (``config.data.source``, one row each in `SOURCES`):

* ``'tfds'``: a TFDS dataset prepared beforehand in ``array_record`` format
  (`tfds_source.py`; ``python -m generalist_jax.prepare_data``);
* ``'npz'``: a ``.npz`` file of uint8 images and integer labels (`arrays.py`);
* ``'sklearn_digits'``: scikit-learn's 8x8 digits, offline (`arrays.py`).

``data.downsample=k`` turns any of them into k x k block means (`downsample.py`).

`load_dataset(config.data)` returns a `Dataset` (train source, in-memory val and
test, `DatasetInfo`: `splits.py`); `pipeline.py` turns it into batches. Adding a source is a
function `(data_config, SplitSpec) -> Dataset` and one row in `SOURCES`.
"""
from __future__ import annotations

from generalist_jax.data import arrays
from generalist_jax.data import downsample
from generalist_jax.data import tfds_source
from generalist_jax.data.arrays import channels_last_problem
from generalist_jax.data.pipeline import (AUGMENTATIONS, eval_batches, steps_per_epoch, to_float,
                                          train_batches)
from generalist_jax.data.splits import ArraySource, Dataset, DatasetInfo, SplitSpec
from generalist_jax.data.tfds_source import DataNotPreparedError, SUPPORTED_TFDS_DATASETS

SOURCES = {
    'tfds': tfds_source.load_tfds, 'npz': arrays.load_npz, 'sklearn_digits': arrays.load_digits
}


def load_dataset(data_config) -> Dataset:
  """Loads the dataset described by ``config.data`` (a ConfigDict or dict).

  Args:
    data_config: `config.data`; reads source (default 'tfds'), val_size,
      split_seed, train_size, test_size, downsample, and the source's own fields.

  Returns:
    The `Dataset`, block-mean downsampled when downsample > 1.

  Raises:
    ValueError: naming the field, for a bad source, split size or downsample;
      and the source's own errors (DataNotPreparedError, a malformed npz).
  """
  source = data_config.get('source', 'tfds')
  split = SplitSpec(val_size=int(data_config.get('val_size', 0) or
                                 0), split_seed=int(data_config.get('split_seed', 0) or 0),
                    train_size=data_config.get('train_size',
                                               None), test_size=data_config.get('test_size', None))
  if split.val_size < 0:
    raise ValueError(f'data.val_size must be >= 0, got {split.val_size}.')
  for field in ('train_size', 'test_size'):
    value = getattr(split, field)
    if value is not None and int(value) <= 0:
      raise ValueError(f'data.{field} must be a positive int or None, got {value}.')
  if source not in SOURCES:
    raise ValueError(f'Unknown data.source={source!r}; expected one of {tuple(SOURCES)}.')
  k = int(data_config.get('downsample', 1) or 1)
  if k < 1:
    raise ValueError(f'data.downsample must be >= 1 (1: full size), got {k}.')
  return downsample.downsample_dataset(SOURCES[source](data_config, split), k)


__all__ = [
    'AUGMENTATIONS', 'ArraySource', 'DataNotPreparedError', 'Dataset', 'DatasetInfo', 'SOURCES',
    'channels_last_problem', 'SUPPORTED_TFDS_DATASETS', 'SplitSpec', 'eval_batches', 'load_dataset',
    'steps_per_epoch', 'to_float', 'train_batches'
]
