"""generalist-jax: Generalist and Generalist++ adversarial training in JAX/Flax, and
AutoAttack for any JAX model (`generalist_jax.AutoAttack`, `evaluation/api.py`).

Sub-packages, lowest layer first (a layer imports only those below it;
tests/test_architecture.py checks it):

  host_memory.py  XLA:CPU's per-step buffers kept resident (entry points call it first)
  parallel.py     the device mesh, sharding and several processes (no pmap)
  attacks/        the attacks and their registry (pure functions of a logits_fn)
  models/         flax classifiers, their PyTorch twins
  data/           data sources and the batch pipeline
  method/         the method: tasks, the train step, the meta-update, the run's clock
  evaluation/     attacks run on data, reports, AutoAttack's API
  config/         config builders, presets and their validation
  run/            run directories: the loop, checkpoints, evaluating and exporting runs

Command-line entry points (python -m generalist_jax.<name>): main (train), evaluate,
interpolate, export_torch, report, prepare_data.
"""
__version__ = '0.1.0'


def __getattr__(name):
  # Lazy: importing a config (generalist_jax.config) must not pull in jax.
  if name in ('AutoAttack', 'Report'):
    from generalist_jax.evaluation import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
