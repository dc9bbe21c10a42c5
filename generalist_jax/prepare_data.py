r"""Downloads and prepares a TFDS dataset in array_record format.

Run once (needs internet and TensorFlow, which only this step requires):

  pip install -e '.[prepare]'
  python -m generalist_jax.prepare_data --dataset=cifar10 [--data_dir=DIR]

Training then reads the prepared files with ``tfds.data_source`` (no
TensorFlow needed) using the same ``data.data_dir``.
"""

import sys

from absl import app
from absl import flags

from generalist_jax.data import tfds_source
from generalist_jax.run import cli

_DATASET = flags.DEFINE_enum(
    'dataset',
    None,
    sorted(tfds_source.SUPPORTED_TFDS_DATASETS),
    'TFDS dataset to prepare.',
)
_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'TFDS data dir (default: the TFDS default data dir).')
flags.mark_flag_as_required('dataset')


def prepare():
  """Prepares --dataset in array_record format (needs TensorFlow and internet once).

  Returns:
    0, the exit status.
  """
  path = tfds_source.prepare(_DATASET.value, _DATA_DIR.value)
  print(f'Prepared {_DATASET.value} (array_record) in {path}')
  data_dir = _DATA_DIR.value
  print(f"Use it with: data.source='tfds', data.name='{_DATASET.value}',"
        f' data.data_dir={data_dir!r}')
  return 0


if __name__ == '__main__':
  sys.exit(app.run(cli.flags_only(prepare, resident_cpu_buffers=False)))
