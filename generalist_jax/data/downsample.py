"""Smaller images from any source: every image becomes the mean of its k x k blocks
(`data.downsample=k`; 32x32 CIFAR-10 -> 16x16 at k = 2).

Why: a CPU study that tests the method must keep the reference's clock in steps
(~46k), so what shrinks is the model and the images
(experiments/reference_clock_cifar10_cpu/README.md, "Why this study"). A block
mean is what a user gets from any image library's box filter; the result stays uint8
(rounded half up), so the rest of the pipeline does not know the difference.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from generalist_jax.data import arrays
from generalist_jax.data import splits

STATS_SAMPLE = 10_000  # training images read to estimate a lazy source's mean / std


def block_mean(images: np.ndarray, k: int) -> np.ndarray:
  """uint8 [..., H, W, C] -> uint8 [..., H/k, W/k, C], each pixel the rounded mean of
  a k x k block (halves round up).

  Args:
    images: uint8 [..., H, W, C].
    k: the block side, dividing H and W.

  Returns:
    uint8 [..., H/k, W/k, C].

  Raises:
    ValueError: H or W is not a multiple of k.
  """
  *lead, h, w, c = images.shape
  if h % k or w % k:
    raise ValueError(f'data.downsample={k} does not divide the {h}x{w} images; use a '
                     f'divisor of both ({sorted(_common_divisors(h, w))}).')
  blocks = images.reshape(*lead, h // k, k, w // k, k, c).astype(np.uint32)
  total = blocks.sum(axis=(-4, -2))
  return ((total + (k * k) // 2) // (k * k)).astype(np.uint8)


def _common_divisors(h: int, w: int) -> set:
  return {d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0}


class DownsampledSource:
  """A random-access train source whose images are block means of another's."""

  def __init__(self, source, k: int):
    self.source, self.k = source, k

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i):
    image, label = self.source[i]
    return block_mean(np.asarray(image), self.k), label

  def __repr__(self) -> str:
    return f'DownsampledSource({self.source!r}, k={self.k})'


def _train_images(train, limit: int) -> np.ndarray:
  """The train source's images (all of an ArraySource, else the first `limit`)."""
  if isinstance(train, splits.ArraySource):
    return train.images
  return np.stack([train[i][0] for i in range(min(limit, len(train)))])


def downsample_dataset(dataset: splits.Dataset, k: int) -> splits.Dataset:
  """`dataset` with every image (train, validation, test) a k x k block mean.

  In-memory arrays are reduced once; a lazy train source (TFDS) is wrapped and
  reduced per read. The normalisation mean / std are those of the reduced training
  images (for a lazy source, of its first STATS_SAMPLE images), since a block mean
  lowers the spread.

  Args:
    dataset: the loaded dataset.
    k: the block side; 1 returns `dataset` itself.

  Returns:
    The reduced `Dataset`, its info's image_shape (H/k, W/k, C).

  Raises:
    ValueError: k does not divide the images' H and W.
  """
  if k == 1:
    return dataset
  train = dataset.train
  if isinstance(train, splits.ArraySource):
    train = splits.ArraySource(block_mean(train.images, k), train.labels)
  else:
    train = DownsampledSource(train, k)
  mean, std = arrays.channel_stats(_train_images(train, STATS_SAMPLE))
  h, w, c = dataset.info.image_shape
  info = dataclasses.replace(dataset.info, image_shape=(h // k, w // k, c), mean=mean, std=std)
  reduce = lambda pair: (block_mean(pair[0], k), pair[1])
  return splits.Dataset(info=info, train=train, val=reduce(dataset.val), test=reduce(dataset.test))
