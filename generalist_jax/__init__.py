"""generalist-jax: Generalist and Generalist++ adversarial training in JAX/Flax, and
AutoAttack for any JAX model (`generalist_jax.AutoAttack`, `evaluation/api.py`)."""
__version__ = '0.1.0'


def __getattr__(name):
  # Lazy: importing a config (generalist_jax.config) must not pull in jax.
  if name in ('AutoAttack', 'Report'):
    from generalist_jax.evaluation import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
