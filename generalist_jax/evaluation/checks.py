"""The front door of every evaluation: the user's images, labels and model are
checked against the contract once, up front, before anything is attacked.

Contract: images [N, H, W, C] (NHWC), uint8 pixels or floats in [0, 1]; labels [N]
integer class ids in [0, K); the model maps a batch to ONE array of logits [B, K];
every attack of the plan can work with K classes. `check_inputs` checks all of it
(the model by tracing it on two examples: shapes only, nothing is computed) and
is called by `runner.run_evaluation`, so the API, the evaluate CLI, external
checkpoints and suites all refuse the same faults with the same words.
"""
from __future__ import annotations

import jax
import numpy as np

from generalist_jax import data as data_lib
from generalist_jax.attacks import registry


def check_images(x: np.ndarray, name: str = 'x') -> None:
  """Raises ValueError naming `name` and the fix unless `x` is non-empty NHWC uint8, or
  float with every value in [0, 1] (floats in 0-255 would pass unnoticed otherwise:
  the model sees other inputs and eps means something else).

  Args:
    x: the images, a numpy array.
    name: how the caller spells the argument, for messages.

  Raises:
    ValueError: not 4-D, empty, channels apparently first, neither uint8 nor
      float, non-finite, or floats outside [0, 1].
  """
  if x.ndim != 4:
    raise ValueError(f'{name} has shape {x.shape}; expected images [N, H, W, C] (4-D, NHWC).')
  if len(x) == 0:
    raise ValueError(f'{name} is empty (shape {x.shape}): nothing to evaluate; pass at '
                     'least one example.')
  problem = data_lib.channels_last_problem(x.shape)
  if problem:
    raise ValueError(f'{name} {problem}')
  if x.dtype == np.uint8:
    return
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f'{name} has dtype {x.dtype}; expected uint8 pixels or floats in [0, 1] '
                     f'(e.g. {name}.astype(np.float32) / 255 for 0-255 pixel values).')
  lo, hi = float(np.min(x)), float(np.max(x))
  if not (np.isfinite(lo) and np.isfinite(hi)):
    raise ValueError(f'{name} holds NaN or inf values; expected floats in [0, 1].')
  if lo < 0 or hi > 1:
    hint = (f' It looks like 0-255 pixel values: divide by 255 ({name} / 255.0), or pass '
            'uint8.' if hi > 1 and lo >= 0 else
            ' Normalisation (mean/std) belongs inside the model; pass the raw image.')
    raise ValueError(f'{name} has values in [{lo:g}, {hi:g}]; expected floats in [0, 1] '
                     f'(eps is in pixel units of [0, 1]).{hint}')


def check_labels(y: np.ndarray, n: int, name: str = 'y', images_name: str = 'x') -> None:
  """Raises ValueError naming `name` unless `y` is [n] integer class ids. One-hot
  [N, K] and [N, 1] labels are refused (with the conversion), not guessed at.

  Args:
    y: the labels, a numpy array.
    n: the number of images.
    name, images_name: how the caller spells the labels and the images.

  Raises:
    ValueError: not 1-D, not integer, or not n of them. (The range [0, K) is
      `check_inputs`' check.)
  """
  if y.ndim != 1:
    hint = (f' For one-hot labels use {name}.argmax(-1).' if y.ndim == 2 and y.shape[1] > 1 else
            f' Use {name}.reshape(-1).' if y.ndim == 2 else '')
    raise ValueError(f'{name} has shape {y.shape}; expected [N] integer class ids '
                     f'(N = {n} examples).{hint}')
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'{name} has dtype {y.dtype}; expected integer class ids (e.g. '
                     f'{name}.astype(np.int64) if they are whole numbers).')
  if len(y) != n:
    raise ValueError(f'{images_name} has {n} examples but {name} has {len(y)} labels; they must '
                     'have the same length.')


def _describe(out) -> str:
  """'tuple of 2: [2, 10] float32, [2, 4, 4, 3] float32' for a traced output."""
  leaves = jax.tree.leaves(out)
  shapes = ', '.join(f'{list(a.shape)} {a.dtype}' for a in leaves)
  return shapes if not isinstance(out, (tuple, list, dict)) else (
      f'a {type(out).__name__} of {len(out)}: {shapes}')


def model_classes(apply_fn, params, x: np.ndarray, name: str = 'logits_fn') -> int:
  """K, the number of classes: `apply_fn(params, x[:2])` traced (not run).

  Args:
    apply_fn: `apply_fn(params, x) -> logits`.
    params: its weights.
    x: the images; only the first two examples' shape is used (as float32).
    name: how the caller spells the model, for messages.

  Returns:
    K.

  Raises:
    ValueError: naming `name` and what it returned, unless that is one float
      array [B, K] with K >= 2 (e.g. a tuple (logits, features), or [B] scores).
  """
  sample = x[:2]
  sample = jax.ShapeDtypeStruct(sample.shape, np.float32)
  out = jax.eval_shape(apply_fn, params, sample)
  b = sample.shape[0]
  is_array = isinstance(out, jax.ShapeDtypeStruct)
  if not is_array or len(out.shape) != 2 or out.shape[0] != b:
    raise ValueError(
        f'{name} must return one array of logits [B, K] for a batch x [B, H, W, C]; on '
        f'a batch of {b} it returned {_describe(out)}. Return only the logits (e.g. '
        f'lambda x: model(x)[0] for a model returning (logits, features)).')
  if not np.issubdtype(out.dtype, np.floating) or out.shape[1] < 2:
    raise ValueError(f'{name} returned {_describe(out)} on a batch of {b}; expected float logits '
                     '[B, K], one per class, K >= 2 (for one sigmoid logit z: concatenate [0, z]).')
  return int(out.shape[1])


def check_inputs(apply_fn, params, images, labels, plan, *, model_name: str = 'logits_fn',
                 images_name: str = 'x', labels_name: str = 'y') -> int:
  """Checks an evaluation's inputs against the module's contract and every attack of
  `plan` (`runner.AttackSpec`s) against the model's class count
  (`registry.check_classes`: DLR losses, n_targets).

  Args:
    apply_fn: `apply_fn(params, x) -> logits` (traced only).
    params: its weights.
    images: [N, H, W, C] uint8 or float in [0, 1].
    labels: [N] int class ids.
    plan: the `runner.AttackSpec`s to run.
    model_name, images_name, labels_name: how the caller spells them.

  Returns:
    K, the model's number of classes.

  Raises:
    ValueError: naming the argument and the fix, before anything is attacked
      (`check_images`, `check_labels`, `model_classes`, labels outside [0, K),
      an attack that cannot work with K classes).
  """
  images, labels = np.asarray(images), np.asarray(labels)
  check_images(images, images_name)
  check_labels(labels, len(images), labels_name, images_name)
  num_classes = model_classes(apply_fn, params, images, model_name)
  lo, hi = int(labels.min()), int(labels.max())
  if lo < 0 or hi >= num_classes:
    raise ValueError(f'{labels_name} has labels in [{lo}, {hi}] but {model_name} returns '
                     f'{num_classes} logits: labels must be class ids in [0, {num_classes}).')
  for spec in plan:
    registry.check_classes(spec.name, spec.settings(), num_classes)
  return num_classes
