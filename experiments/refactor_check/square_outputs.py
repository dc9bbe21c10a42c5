"""Square's adversarial images in l-inf, l2 and l1 on a fixed toy model, saved to compare
two checkouts (the demo and smoke runs of run.sh evaluate no l2 / l1 Square).

  PYTHONPATH=CHECKOUT python experiments/refactor_check/square_outputs.py OUT.npz

then np.array_equal over the arrays of the two files.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from generalist_jax.attacks import square

SHAPE = (12, 12, 3)
EPS = {'l2': 0.5, 'l1': 3.0, 'linf': 8 / 255}


def main(out: str) -> None:
  w = jax.random.normal(jax.random.PRNGKey(3), (int(np.prod(SHAPE)), 10)) * 0.1
  logits_fn = lambda v: 3.0 * jnp.tanh(v.reshape(v.shape[0], -1) @ w)
  x = jax.random.uniform(jax.random.PRNGKey(4), (16, *SHAPE))
  y = jnp.argmax(logits_fn(x), -1)
  np.savez(
      out, **{
          norm: np.asarray(
              square.square(logits_fn, x, y, jax.random.PRNGKey(2), norm=norm, eps=eps,
                            n_queries=120)) for norm, eps in EPS.items()
      })


if __name__ == '__main__':
  main(sys.argv[1])
