"""Per-example losses on logits, to be maximised by an attacker.

Shapes: logits [B, K], labels and targets [B] int; every loss returns [B].
The DLR losses need a few classes (`MIN_CLASSES`): below that they are constant
and an attack on them does nothing, so they refuse such logits (the class count
is a static shape, so this fires while tracing, before anything runs).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy: APGD-CE's and PGD's loss.

  Args:
    logits: [B, K].
    labels: [B] int class ids.

  Returns:
    [B]: -log softmax(logits)[label].
  """
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def _true_logit(logits, labels):
  """[B]: each example's logit of class labels[b]."""
  return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def _best_wrong_logit(logits, labels):
  """[B]: each example's highest logit among the classes other than its label."""
  wrong = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  return wrong.max(axis=-1)


def margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The CW margin: positive exactly where the example is misclassified.

  Args:
    logits: [B, K].
    labels: [B] int class ids.

  Returns:
    [B]: the best wrong logit minus the true logit.
  """
  return _best_wrong_logit(logits, labels) - _true_logit(logits, labels)


# Fewest classes each loss works with. DLR divides the margin by z_pi1 - z_pi3: with
# 2 classes that is |margin| and the loss is a constant +-1 (fra31/auto-attack#70);
# targeted DLR also reads z_pi4.
MIN_CLASSES = {'ce': 2, 'margin': 2, 'dlr': 3, 'targeted_dlr': 4}


def classes_problem(loss: str, num_classes: int) -> str | None:
  """Why `loss` cannot work on logits of `num_classes` classes (`MIN_CLASSES`).

  Args:
    loss: 'ce', 'margin', 'dlr' or 'targeted_dlr'.
    num_classes: K.

  Returns:
    The reason and the fix, or None when the loss works.

  Raises:
    KeyError: an unknown loss.
  """
  needed = MIN_CLASSES[loss]
  if num_classes >= needed:
    return None
  return (f'the {loss} loss needs >= {needed} classes and the model has {num_classes}: '
          'there it is degenerate (DLR is a constant -1 with 2 classes), so an attack on it '
          "changes nothing and reports robustness. Use cross-entropy (loss='ce': 'apgd-ce', "
          "'pgd') or the margin (loss='margin': 'pgd-cw') instead.")


def _check_classes(loss: str, logits: jax.Array) -> None:
  """Raises ValueError when `loss` is degenerate on logits of that many classes."""
  problem = classes_problem(loss, logits.shape[-1])
  if problem:
    raise ValueError(problem[0].upper() + problem[1:])


def dlr(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Difference of Logits Ratio (Croce & Hein 2020): the margin divided by the
  spread of the top logits, so it is invariant to shifting and scaling them.

  Args:
    logits: [B, K], K >= 3.
    labels: [B] int class ids.

  Returns:
    [B]: `margin` / (z_pi1 - z_pi3), z sorted in decreasing order.

  Raises:
    ValueError: fewer than 3 classes (`MIN_CLASSES`), while tracing.
  """
  _check_classes('dlr', logits)
  top = jnp.sort(logits, axis=-1)
  return margin(logits, labels) / (top[:, -1] - top[:, -3] + 1e-12)


def targeted_dlr(logits: jax.Array, labels: jax.Array, targets: jax.Array) -> jax.Array:
  """Targeted DLR: how far the target's logit is above the true one, scaled as DLR.

  Args:
    logits: [B, K], K >= 4.
    labels: [B] int class ids.
    targets: [B] int target classes.

  Returns:
    [B]: (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2), z sorted in decreasing order.

  Raises:
    ValueError: fewer than 4 classes (`MIN_CLASSES`), while tracing.
  """
  _check_classes('targeted_dlr', logits)
  top = jnp.sort(logits, axis=-1)
  gap = _true_logit(logits, targets) - _true_logit(logits, labels)
  return gap / (top[:, -1] - 0.5 * (top[:, -3] + top[:, -4]) + 1e-12)


LOSSES = {'ce': cross_entropy, 'margin': margin, 'dlr': dlr}
