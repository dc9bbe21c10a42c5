"""generalist-jax: Generalist and Generalist++ adversarial training in JAX/Flax."""
__version__ = '0.1.0'
