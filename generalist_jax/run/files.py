"""Small files of a run (config.json, data_info.json, metrics.jsonl) written so that
a reader, another process of the job or a kill mid-write sees the old file or the
new one, never a part of either."""
from __future__ import annotations

import os
import pathlib
import tempfile


def write_text_atomic(path: str | pathlib.Path, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it over `path`
  (os.replace is atomic on POSIX). On an error the old file is left as it was.

  Args:
    path: the file; its folder must exist.
    text: the whole new content.
  """
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  finally:
    pathlib.Path(tmp).unlink(missing_ok=True)
