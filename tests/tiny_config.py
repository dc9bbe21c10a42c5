r"""A tiny Generalist config for tests, also loadable by the CLI:

  python -m generalist_jax.main --config=tests/tiny_config.py --workdir=W \
      --config.data.path=tiny.npz
"""
from generalist_jax import config as config_lib


def tiny_config(npz_path=None, num_epochs=2):
  """Generalist with a 1/8-width BN SmallCNN, batch 8, PGD-2: seconds per run."""
  c = config_lib.base_config()
  c.experts = config_lib.generalist_experts()
  for name in c.experts.keys():
    c.experts[name].attack.steps = 2
    c.experts[name].attack.step_size = 4 / 255
  config_lib.scale_epochs(c, num_epochs)
  c.meta.sync.kind = 'every_steps'
  c.meta.sync.start_epoch = 1
  c.meta.sync.every_steps = 3
  c.model.name = 'small_cnn'
  c.model.width = 0.125
  c.batch_size = 8
  c.data.val_size = 8
  c.data.augment = 'crop_flip'
  c.data.num_threads = 1
  if npz_path is not None:  # '': set data.path on the command line
    c.data.source = 'npz'
    c.data.path = str(npz_path)
  c.eval.batch_size = 16
  c.eval.val_attack.steps = 2
  c.eval.test_attack.steps = 2
  c.checkpoint.every_steps = 2
  c.log_every_steps = 2
  c.progress_bar = False
  return c


def get_config(arg=None):
  return tiny_config(npz_path='', num_epochs=int(arg or 2))
