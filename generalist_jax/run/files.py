"""Small files of a run (config.json, data_info.json, metrics.jsonl) written so that
a reader, another process of the job or a kill mid-write sees the old file or the
new one, never a part of either."""
from __future__ import annotations

import os
import pathlib


def write_text_atomic(path: str | pathlib.Path, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it over `path`
  (os.replace is atomic on POSIX). On an error the old file is left as it was."""
  path = pathlib.Path(path)
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    tmp.write_text(text)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
