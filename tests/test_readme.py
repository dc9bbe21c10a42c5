"""The examples of docs/architecture.md (adding a task, an attack, a model, a
schedule) run as written, and what they register works."""
import contextlib
import io
import pathlib
import re

import jax.numpy as jnp
import ml_collections

from generalist_jax import models
from generalist_jax.attacks import registry
from generalist_jax.method import schedules
from generalist_jax.method import tasks

ARCHITECTURE = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'architecture.md'


def architecture_snippets() -> list[str]:
  return re.findall(r'```python\n(.*?)```', ARCHITECTURE.read_text(), re.S)


def test_architecture_examples_run_as_written():
  snippets = architecture_snippets()
  assert len(snippets) == 4
  added = [(tasks.TASKS, 'fgsm'), (registry.ATTACKS, 'noise'), (models.MODELS, 'linear'),
           (schedules.LR_SCHEDULES, 'step')]
  namespace, out = {}, io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      for code in snippets:
        exec(compile(code, str(ARCHITECTURE), 'exec'), namespace)  # pylint: disable=exec-used
    assert out.getvalue().split() == ['True']
    assert all(name in table for table, name in added)
    # What they registered is used by the library's own entry points.
    assert tasks.make_task(
        ml_collections.ConfigDict(dict(task='fgsm', attack=dict(eps=0.1, norm='linf')))) is not None
    assert 'noise' in registry.implemented('l1')
    assert type(namespace['model']).__name__ == 'Linear'
    lr = schedules.make_lr_schedule(ml_collections.ConfigDict(dict(schedule='step', lr=0.1)),
                                    num_epochs=4, epoch_of=lambda step: (step + 1) / 10)
    assert [round(float(lr(s)), 6) for s in (0, 19, 20, 29, 30)] == [0.1, 0.01, 0.01, 0.001, 0.001]
    assert jnp.isfinite(namespace['x_adv']).all()
  finally:
    for table, name in added:
      table.pop(name, None)


def test_docs_examples_run_as_written():
  """Every docs page's "## Example" blocks: they say they ran as written."""
  docs = ARCHITECTURE.parent
  ran = 0
  for page in sorted(docs.glob('*.md')):
    text = page.read_text()
    for section in re.split(r'\n## ', text)[1:]:
      if not section.startswith('Example'):
        continue
      for code in re.findall(r'```python\n(.*?)```', section, re.S):
        with contextlib.redirect_stdout(io.StringIO()):
          exec(compile(code, str(page), 'exec'), {})  # pylint: disable=exec-used
        ran += 1
  assert ran >= 2
