"""XLA's persistent compile cache for evaluations: AutoAttack's attacks take tens of
seconds to compile per model and batch shape, so a second evaluation of the same
model (another seed, a resume, the next checkpoint) loads them from disk instead.

On by default for `python -m generalist_jax.evaluate` and the `AutoAttack` API, in
$GENERALIST_JAX_CACHE_DIR, else $XDG_CACHE_HOME/generalist_jax/xla (~/.cache/...);
GENERALIST_JAX_CACHE_DIR=0 turns it off. A cache the user set already
(jax.config 'jax_compilation_cache_dir', JAX_COMPILATION_CACHE_DIR) is kept.
"""
from __future__ import annotations

import os

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = 'GENERALIST_JAX_CACHE_DIR'


def cache_dir(environ) -> str | None:
  """The directory `environ` (a mapping like os.environ) asks for; None when off.

  Args:
    environ: reads GENERALIST_JAX_CACHE_DIR ('0': off; a path, '~' expanded) and
      XDG_CACHE_HOME.

  Returns:
    $GENERALIST_JAX_CACHE_DIR, else $XDG_CACHE_HOME (default ~/.cache)
    /generalist_jax/xla; or None.
  """
  value = environ.get(ENV, '').strip()
  if value == '0':
    return None
  if value:
    return os.path.expanduser(value)
  base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'generalist_jax', 'xla')


def enable(environ=None) -> str | None:
  """Points JAX's persistent compile cache at `cache_dir` unless one is set already.

  Args:
    environ: as `cache_dir`; None reads os.environ.

  Returns:
    The directory in use (the user's own, if set), None when off.
  """
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  path = cache_dir(os.environ if environ is None else environ)
  if path is None:
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  # JAX decides once per process whether a cache is used, at the first compile;
  # a compile before this call (the user's own model) would otherwise keep it off.
  compilation_cache.reset_cache()
  return path
