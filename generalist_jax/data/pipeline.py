"""Input pipelines. Contract with the model: images float32 in [0, 1], NHWC;
labels int32.

The training pipeline (`train_batches`) is built with grain and is
deterministic: batch ``k`` is a pure function of ``(seed, k)``, including the
augmentation randomness, so training resumes bit-for-bit from a checkpoint by
passing ``start_step``.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import grain
import numpy as np

from generalist_jax.data import splits

AUGMENTATIONS = ('crop_flip', 'crop', 'none')
CROP_PADDING = 4  # as torchvision RandomCrop(size, padding=4), zero padding.


def to_float(images_uint8) -> np.ndarray:
  """The model's input contract: uint8 pixels as float32 in [0, 1].

  Args:
    images_uint8: uint8 images, any shape.

  Returns:
    float32, divided by 255.
  """
  return np.asarray(images_uint8).astype(np.float32) / np.float32(255.0)


def steps_per_epoch(dataset: splits.Dataset, batch_size: int) -> int:
  """Number of full training batches per epoch (remainder dropped).

  Args:
    dataset: the loaded dataset; its train source's length counts.
    batch_size: the global batch size.

  Returns:
    len(dataset.train) // batch_size.

  Raises:
    ValueError: not one full batch.
  """
  n = len(dataset.train)
  steps = n // int(batch_size)
  if steps == 0:
    raise ValueError(f'batch_size={batch_size} is larger than the {n} training examples;'
                     ' lower the batch size or use more training data (data.train_size /'
                     ' data.val_size).')
  return steps


def _random_crop(image: np.ndarray, rng: np.random.Generator, pad: int):
  """Zero-pads by ``pad`` on each side and takes a random crop of the input
  size (torchvision ``RandomCrop(size, padding=pad)``), without materializing
  the padded image."""
  h, w = image.shape[:2]
  dy, dx = rng.integers(0, 2 * pad + 1, size=2) - pad  # shift in [-pad, pad]
  out = np.zeros_like(image)
  # out[y, x] = image[y + dy, x + dx] where in range, else 0.
  out[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = image[max(0, dy):h - max(0, -dy),
                                                                      max(0, dx):w - max(0, -dx)]
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


def _check_train_args(dataset, batch_size, seed, start_step, augment, process_count) -> int:
  """The steps per epoch, once `train_batches`' arguments pass its checks (ValueError
  naming the fix otherwise)."""
  if augment not in AUGMENTATIONS:
    raise ValueError(f'Unknown augment={augment!r}; expected one of {AUGMENTATIONS}.')
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}.')
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}.')
  steps = steps_per_epoch(dataset, batch_size)  # raises if no full batch
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} does not split over {process_count} '
                     'processes; use a multiple of the process count.')
  return steps


def _batch_iterator(dataset, local_batch: int, epoch_examples: int, *, seed, start_step, augment,
                    num_threads, prefetch, process_index, process_count) -> Iterator[dict]:
  """The grain pipeline of `train_batches`: shuffle, augment, this process's rows of
  every global batch of the epoch's first `epoch_examples`, repeated, from start_step."""
  shuffle_seed, augment_seed = _derive_seeds(seed)
  ds = grain.MapDataset.source(dataset.train)
  ds = ds.shuffle(seed=shuffle_seed)
  if augment != 'none':
    ds = ds.random_map(_Augment(augment), seed=augment_seed)
  # Keep the epoch's full global batches (drop remainder), cut them into
  # per-process rows, keep this process's, then repeat: index e * len + i of
  # the shuffle / random_map reseeds every epoch e (slices pass the epoch on).
  ds = ds[:epoch_examples]
  ds = ds.batch(local_batch, drop_remainder=True, batch_fn=_collate)
  ds = ds[process_index::process_count]
  ds = ds.repeat(None)
  ds = ds.slice(slice(int(start_step), None))
  iter_ds = ds.to_iter_dataset(
      grain.ReadOptions(num_threads=int(num_threads), prefetch_buffer_size=int(prefetch)))
  return iter(iter_ds)


def train_batches(
    dataset: splits.Dataset,
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

  Args:
    dataset: the loaded dataset; batches come from `dataset.train`.
    batch_size: the global batch size (all processes together).
    seed: the run seed, >= 0 (shuffle and augmentation seeds derive from it).
    start_step: the first batch to yield (an optimizer step, to resume).
    augment: one of AUGMENTATIONS: random crop with zero padding 4, with or
      without a horizontal flip, or none.
    num_threads, prefetch: grain's read threads and prefetch buffer.
    process_index, process_count: this process and the number of processes.

  Returns:
    The iterator of batch dicts.

  Raises:
    ValueError: an unknown augment, a negative start_step or seed, no full
      batch, or a batch_size that does not split over the processes.
  """
  steps = _check_train_args(dataset, batch_size, seed, start_step, augment, process_count)
  return _batch_iterator(dataset, batch_size // process_count, steps * batch_size, seed=seed,
                         start_step=start_step, augment=augment, num_threads=num_threads,
                         prefetch=prefetch, process_index=process_index,
                         process_count=process_count)


def eval_batches(images: np.ndarray, labels: np.ndarray,
                 batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
  """Yields ``(float32 images, int32 labels, n_valid)`` in order.

  Every batch has exactly ``batch_size`` rows (one shape for jit); the last
  one is zero-padded and ``n_valid`` says how many leading rows are real.

  Args:
    images: uint8 [N, H, W, C] (or [N, H, W]: a channel axis is added).
    labels: [N] int.
    batch_size: rows per batch, > 0.

  Raises:
    ValueError: images and labels differ in length, or batch_size <= 0 (on the
      first `next`, as this is a generator).
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
    x = images[start:start + batch_size]
    y = labels[start:start + batch_size].astype(np.int32)
    n_valid = len(x)
    if n_valid < batch_size:
      pad = batch_size - n_valid
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros((pad,), np.int32)])
    yield to_float(x), y, n_valid
