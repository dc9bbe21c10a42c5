"""Per-example losses on logits, to be maximised by an attacker.

Shapes: logits [B, K], labels and targets [B] int; every loss returns [B].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def _true_logit(logits, labels):
  return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def _best_wrong_logit(logits, labels):
  wrong = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool),
                    -jnp.inf, logits)
  return wrong.max(axis=-1)


def margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """CW margin: best wrong logit minus the true logit."""
  return _best_wrong_logit(logits, labels) - _true_logit(logits, labels)


def dlr(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Difference of Logits Ratio (Croce & Hein 2020): the margin divided by the
  spread of the top logits, so it is invariant to shifting and scaling them."""
  top = jnp.sort(logits, axis=-1)
  return margin(logits, labels) / (top[:, -1] - top[:, -3] + 1e-12)


def targeted_dlr(logits: jax.Array, labels: jax.Array,
                 targets: jax.Array) -> jax.Array:
  """Targeted DLR: (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2). Needs >= 4 classes."""
  top = jnp.sort(logits, axis=-1)
  gap = _true_logit(logits, targets) - _true_logit(logits, labels)
  return gap / (top[:, -1] - 0.5 * (top[:, -3] + top[:, -4]) + 1e-12)


LOSSES = {'ce': cross_entropy, 'margin': margin, 'dlr': dlr}


