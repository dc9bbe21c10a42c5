"""What a loaded dataset is: its info, a random-access train source, in-memory
validation and test arrays, and how validation and test subsets are drawn.

The validation set is carved out of the TRAIN split with a permutation seeded
by ``data.split_seed`` (independent of the run seed), so every run of a
comparison selects checkpoints on the same held-out examples. The test split is
never used for model selection.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  """How a source is cut: validation held out of train, optional subsets."""
  val_size: int = 0
  split_seed: int = 0
  train_size: Optional[int] = None
  test_size: Optional[int] = None


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


@dataclasses.dataclass
class Dataset:
  """A loaded dataset: train (random access), validation and test (in memory)."""
  info: DatasetInfo
  train: Any  # random-access source: len(), [i] -> (uint8 HWC, int label)
  val: tuple  # (uint8 NHWC images, int32 labels), in memory
  test: tuple  # (uint8 NHWC images, int32 labels), in memory


def split_indices(
    n_train: int,
    val_size: int,
    split_seed: int,
    train_size: Optional[int],
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
  """Returns sorted (train_indices, val_indices) into the train split.

  The validation examples are the first `val_size` of a permutation seeded by
  `split_seed`; the training ones the rest, or the first `train_size` of the rest.

  Args:
    n_train: examples in the source's train split.
    val_size: examples to hold out for validation.
    split_seed: `data.split_seed`.
    train_size: training examples to keep, or None for all.
    what: the dataset's name, for messages.

  Returns:
    (train_indices, val_indices), sorted int arrays.

  Raises:
    ValueError: no training example would be left, or `train_size` exceeds
      what is left.
  """
  if n_train < val_size + 1:
    raise ValueError(f'{what} has only {n_train} training examples, but data.val_size='
                     f'{val_size} must leave at least one for training. Lower data.val_size'
                     ' or provide more training examples.')
  perm = np.random.default_rng(split_seed).permutation(n_train)
  val_idx = perm[:val_size]
  train_idx = perm[val_size:]
  if train_size is not None:
    train_size = int(train_size)
    if train_size > len(train_idx):
      raise ValueError(f'data.train_size={train_size} but {what} only has'
                       f' {len(train_idx)} training examples left after holding out'
                       f' data.val_size={val_size}. Lower data.train_size (or set it to'
                       ' None to use all of them).')
    train_idx = train_idx[:train_size]
  # Sorted for read locality; order is irrelevant (the pipeline shuffles).
  return np.sort(train_idx), np.sort(val_idx)


def test_indices(test_size, n_test: int, split_seed: int, what: str) -> np.ndarray:
  """All test examples, or a fixed random subset of `test_size` of them.

  Random, not the first N: files are often sorted by class (the CIFAR-10 JPEG
  archive is), and the first N would then hold only a few classes.

  Args:
    test_size: examples to keep, or None for all.
    n_test: examples in the source's test split.
    split_seed: `data.split_seed` (the subset's seed is derived from it).
    what: the dataset's name, for messages.

  Returns:
    Sorted int indices into the test split.

  Raises:
    ValueError: `test_size` exceeds `n_test`.
  """
  if test_size is None:
    return np.arange(n_test)
  test_size = int(test_size)
  if test_size > n_test:
    raise ValueError(f'data.test_size={test_size} but {what} only has {n_test} test'
                     ' examples. Lower data.test_size or set it to None.')
  rng = np.random.default_rng([int(split_seed), 0x7E57])
  return np.sort(rng.permutation(n_test)[:test_size])
