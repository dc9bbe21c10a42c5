"""Config errors and the schema check: every field a config sets exists in
`base_config()` (or `expert()`) with a compatible type."""
from __future__ import annotations

import ml_collections

from generalist_jax.config.builders import base_config, expert, sgd


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""


def check(ok: bool, field: str, message: str):
  """The one way a config check fails.

  Args:
    ok: whether the value is acceptable.
    field: the field's dotted path under `config.` (e.g. 'meta.sync.kind').
    message: what is wrong and what would be valid.

  Raises:
    ConfigError: 'config.<field>: <message>', when not `ok`.
  """
  if not ok:
    raise ConfigError(f'config.{field}: {message}')


def check_increasing(values, field: str):
  """Knots that increase strictly.

  Args:
    values: a sequence of numbers.
    field: the field's dotted path, for the message.

  Raises:
    ConfigError: two neighbours do not increase.
  """
  check(all(b > a for a, b in zip(values, values[1:])), field,
        f'knots must increase strictly, got {tuple(values)}.')


def _type_name(value) -> str:
  return type(value).__name__


def _compatible(value, ref) -> bool:
  if ref is None or value is None:
    return True
  if isinstance(ref, bool) or isinstance(value, bool):
    return isinstance(value, bool) == isinstance(ref, bool)
  if isinstance(ref, int):
    return isinstance(value, int)
  if isinstance(ref, float):  # an int where a float is expected is fine
    return isinstance(value, (int, float))
  if isinstance(ref, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(ref))


def check_schema(c, ref, path: str) -> None:
  """Every field of `c` exists in the reference config, with a compatible type.

  Compatible: the reference's type (an int where a float is expected, a list for a
  tuple); None on either side passes. Nested ConfigDicts are checked recursively.

  Args:
    c: the ConfigDict to check.
    ref: the reference ConfigDict (`base_config()`, or `expert()`).
    path: the dotted prefix of `c`'s fields in messages ('' or 'experts.a.').

  Raises:
    ConfigError: the first unknown or mistyped field.
  """
  for key in c.keys():
    field = f'{path}{key}'
    if key not in ref:
      close = [k for k in ref.keys() if k[:3] == key[:3]]
      check(
          False, field, f'unknown field{"; did you mean " + close[0] + "?" if close else ""} '
          f'Known fields here: {sorted(ref.keys())}.')
    value, expected = c[key], ref[key]
    if isinstance(expected, ml_collections.ConfigDict):
      check(isinstance(value, ml_collections.ConfigDict), field,
            f'must be a ConfigDict, got {_type_name(value)}.')
      check_schema(value, expected, field + '.')
    else:
      check(_compatible(value, expected), field,
            f'must be a {_type_name(expected)}, got {_type_name(value)} ({value!r}).')


def check_config_schema(c) -> None:
  """Every field of run config `c` and of each of its experts is known and typed right
  (`check_schema` against `base_config()`, and each expert against `expert()`).

  Args:
    c: the run config.

  Raises:
    ConfigError: the first unknown or mistyped field.
  """
  ref = base_config()
  del ref.experts
  check_schema(ml_collections.ConfigDict({k: c[k] for k in c.keys() if k != 'experts'}), ref, '')
  template = expert('natural', sgd(), mix_values=())
  for name in c.experts.keys():
    check_schema(c.experts[name], template, f'experts.{name}.')
