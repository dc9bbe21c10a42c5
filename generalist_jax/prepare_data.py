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

from generalist_jax import data as data_lib

_DATASET = flags.DEFINE_enum(
    'dataset',
    None,
    sorted(data_lib.SUPPORTED_TFDS_DATASETS),
    'TFDS dataset to prepare.',
)
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'TFDS data dir (default: the TFDS default data dir).'
)
flags.mark_flag_as_required('dataset')


def prepare(name: str, data_dir=None) -> str:
  """Prepares `name` in array_record format; returns the dataset's dir."""
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
  except ImportError as e:
    raise SystemExit(
        f'Preparing TFDS datasets needs TensorFlow ({e}). Install it with:\n'
        "  pip install -e '.[prepare]'\n"
        'then re-run this command.'
    ) from e
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  return str(builder.data_dir)


def main(argv):
  """Prepares --dataset in array_record format (needs TensorFlow and internet once)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  path = prepare(_DATASET.value, _DATA_DIR.value)
  print(f'Prepared {_DATASET.value} (array_record) in {path}')
  data_dir = _DATA_DIR.value
  print(
      f"Use it with: data.source='tfds', data.name='{_DATASET.value}',"
      f' data.data_dir={data_dir!r}'
  )
  return 0


if __name__ == '__main__':
  sys.exit(app.run(main))
