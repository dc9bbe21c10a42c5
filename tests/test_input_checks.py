"""Faults users of AutoAttack hit elsewhere (issue 32), refused here at every entry point
before any attack runs, with the argument named and the fix: DLR losses on too few
classes, labels of the wrong shape or range, images outside [0, 1] or NCHW, a model
returning more than logits, sizes <= 0 and empty inputs."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import app

from generalist_jax import AutoAttack
from generalist_jax import attacks
from generalist_jax import config as config_lib
from generalist_jax.attacks import apgd
from generalist_jax.config import validation
from generalist_jax.evaluation import external
from generalist_jax.evaluation import runner
from generalist_jax.method import clock
from generalist_jax.run import cli
from generalist_jax.run import evaluate_run
from generalist_jax.run import suite
from tests.test_api import X, Y, logits_fn
from tests.test_config import ROOT


def classes(k):
  """The API test model cut to its first k classes, and its own predictions as labels."""
  fn = lambda x: logits_fn(x)[:, :k]
  return fn, np.asarray(jnp.argmax(fn(X), -1))


def custom(fn, names, **kwargs):
  return AutoAttack(fn, norm='Linf', eps=0.03, version='custom', attacks_to_run=names,
                    overrides={'steps': 2}, **kwargs)


# --- 1. DLR losses need >= 3 classes (fra31/auto-attack#70), targets need K - 1 ---------


def test_dlr_attacks_refuse_two_classes_at_every_entry_point():
  """Fault kind: with 2 classes DLR is a constant -1, so APGD-DLR did nothing and the
  report claimed robustness (0.75 here on the old code)."""
  two, y2 = classes(2)
  with pytest.raises(ValueError, match=r"'apgd-dlr'.*dlr loss needs >= 3 classes.*has 2"):
    custom(two, ['apgd-dlr']).run(X, y2, batch_size=16)
  noisy = lambda x, key: two(x) + 0.01 * jax.random.normal(key, (x.shape[0], 2))
  with pytest.raises(ValueError, match='apgd-dlr'):  # 'rand' runs APGD-DLR too
    AutoAttack(noisy, norm='Linf', eps=0.03, version='rand').run(X, y2, batch_size=16)
  key = jax.random.PRNGKey(0)
  for attack in (
      lambda: attacks.pgd(two, X, y2, key, eps=0.03, step_size=0.01, steps=1, loss='dlr'),
      lambda: apgd.apgd(two, X, y2, key, eps=0.03, loss='dlr', steps=2)):
    with pytest.raises(ValueError, match='dlr loss needs >= 3 classes'):
      attack()
  three, y3 = classes(3)  # 3 classes: fine
  assert custom(three, ['apgd-dlr']).run(X, y3, batch_size=16).n_ex == 48


def test_training_attacks_on_dlr_are_checked_against_the_data_classes():
  c = config_lib.baseline_config('pgd')
  c.experts.robust.attack.loss = 'dlr'
  validation.validate_config(c)  # classes are not known yet ...
  with pytest.raises(config_lib.ConfigError,
                     match=r'experts\.robust\.attack\.loss.*dlr loss needs >= 3'):
    validation.validate_for_data(c, clock.make_clock(c, 10), (32, 32, 3), 2)  # ... and are here
  validation.validate_for_data(c, clock.make_clock(c, 10), (32, 32, 3), 10)


@pytest.mark.parametrize(
    'names,k,match',
    [(['apgd-ce', 'apgd-t'], 5, r"'apgd-t': n_targets=9.*only 4 other classes.*n_targets <= 4"),
     (['apgd-ce', 'fab-t'], 5, r"'fab-t': n_targets=9.*n_targets <= 4"),
     (['apgd-ce', 'apgd-t'], 3, r"'apgd-t'.*targeted_dlr loss needs >= 4 classes")])
def test_a_later_attack_the_classes_cannot_take_is_refused_before_any_attack(
    tmp_path, names, k, match):
  """Fault kind: APGD-T refused its targets only after the clean pass and APGD-CE had
  run (and saved their flags)."""
  fn, y = classes(k)
  state = tmp_path / 'state.npz'
  with pytest.raises(ValueError, match=match):
    custom(fn, names).run(X, y, batch_size=16, state_path=str(state))
  assert not state.exists(), 'an attack ran before the refusal'


# --- 2. labels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    'labels,match',
    [(np.eye(10, dtype=np.int64)[Y], r'y has shape \(48, 10\); expected \[N\] integer.*argmax'),
     (Y[:, None], r'y has shape \(48, 1\); expected \[N\] integer.*reshape'),
     (Y + 0.0, r'y has dtype float64; expected integer class ids'),
     (Y + 10, r'y has labels in \[10, 1\d\].*10 logits.*\[0, 10\)'),
     (Y - 10, r'y has labels in \[-10, -\d\]'), (Y[:10], r'x has 48 examples but y has 10 labels')])
def test_labels_off_the_contract_are_refused_naming_y(labels, match):
  """Fault kind: one-hot or [N, 1] labels gave a JAX indexing error that never named y;
  float, out-of-range and too few labels were accepted and gave wrong numbers."""
  with pytest.raises(ValueError, match=match):
    custom(logits_fn, ['apgd-ce']).run(X, labels, batch_size=16)


# --- 3. images -------------------------------------------------------------------------


@pytest.mark.parametrize(
    'images,match',
    [(X * 255, r'x has values in \[0.*, 25\d.*\]; expected floats in \[0, 1\].*divide by 255'),
     (X - 0.5, r'x has values in \[-0.*Normalisation.*inside the model'),
     (np.full((48, 3, 32, 32), 0.5), r'x has shape \(48, 3, 32, 32\).*channels-first.*transpose'),
     ((X * 255).astype(np.int64), r'x has dtype int64; expected uint8 pixels or floats'),
     (np.where(X > 0.5, np.nan, X), 'x holds NaN'),
     (X[..., 0], r'x has shape \(48, 4, 4\); expected images \[N, H, W, C\]')])
def test_images_off_the_contract_are_refused_naming_x(images, match):
  """Fault kind: floats in [0, 255] (and NCHW batches of equal size) were accepted."""
  with pytest.raises(ValueError, match=match):
    custom(logits_fn, ['apgd-ce']).run(images, Y, batch_size=16)
  with pytest.raises(ValueError, match=match):
    custom(logits_fn, ['apgd-ce']).run_standard_evaluation(images, Y, bs=16)


def test_uint8_images_are_pixels_and_pass():
  pixels = np.round(X * 255).astype(np.uint8)
  report = custom(logits_fn, ['apgd-ce']).run(pixels, Y, batch_size=16)
  assert report.n_ex == 48


# --- 4. the model's output ---------------------------------------------------------------


@pytest.mark.parametrize(
    'model,match',
    [(lambda x: (logits_fn(x), x),
      r'logits_fn must return one array of logits \[B, K\].*tuple of 2: \[2, 10\] float32, '
      r'\[2, 4, 4, 3\] float32'),
     (lambda x: {'logits': logits_fn(x)}, r'logits_fn must return one array.*dict of 1'),
     (lambda x: logits_fn(x)[:, 0], r'logits_fn must return one array.*returned \[2\] float32'),
     (lambda x: logits_fn(x)[:, :1], r'logits_fn returned \[2, 1\] float32.*K >= 2')])
def test_a_model_returning_other_than_logits_is_named_before_any_attack(model, match):
  """Fault kind: a model returning (logits, features) failed deep inside the attack with
  `TypeError: log_softmax requires ndarray...`."""
  with pytest.raises(ValueError, match=match):
    custom(model, ['apgd-ce']).run(X, Y, batch_size=16)


# --- 5. sizes ----------------------------------------------------------------------------


def test_empty_inputs_and_sizes_below_one_are_refused_in_the_api():
  """Fault kind: empty inputs raised ZeroDivisionError, batch_size=0 a range() error,
  steps=0 an IndexError."""
  with pytest.raises(ValueError, match=r'x is empty \(shape \(0, 4, 4, 3\)\)'):
    custom(logits_fn, ['apgd-ce']).run(X[:0], Y[:0])
  with pytest.raises(ValueError, match='batch_size=0: must be an integer >= 1'):
    custom(logits_fn, ['apgd-ce']).run(X, Y, batch_size=0)
  with pytest.raises(ValueError, match='bs=-1: must be an integer >= 1'):
    custom(logits_fn, ['apgd-ce']).run_standard_evaluation(X, Y, bs=-1)
  for key in ('steps', 'restarts', 'n_targets', 'n_queries', 'eot_iter'):
    with pytest.raises(ValueError, match=f'{key}=0: must be an integer >= 1'):
      AutoAttack(logits_fn, version='standard', overrides={key: 0})
  with pytest.raises(ValueError, match='steps=0'):
    attacks.build('apgd-ce', norm='linf', eps=0.03, overrides={'steps': 0})


@pytest.mark.parametrize('n_ex', [-5, 0])
def test_n_ex_below_one_is_refused_before_anything_is_read(tmp_path, n_ex):
  """Fault kind: `evaluate --n_ex=-5` evaluated 292 of 297 examples and exited 0;
  --n_ex=0 raised ZeroDivisionError. (No run exists here: the refusal comes first.)"""
  message = f'n_ex={n_ex}: must be an integer >= 1'
  with pytest.raises(ValueError, match=message):
    evaluate_run.evaluate_run(tmp_path / 'no_run', n_ex=n_ex, progress=False)
  with pytest.raises(ValueError, match='batch_size=0'):
    evaluate_run.evaluate_run(tmp_path / 'no_run', batch_size=0, progress=False)
  with pytest.raises(ValueError, match=message):
    external.evaluate_torch_checkpoint(tmp_path / 'no.pt', arch='resnet18', n_ex=n_ex,
                                       data_config={'source': 'npz',
                                                    'path': 'none.npz'}, out_dir=tmp_path)
  with pytest.raises(ValueError, match=message):
    runner.sample_test_points(X, Y, n_ex)
  suite_config = ml_collections.ConfigDict(
      {'runs': {'a': config_lib.base_config()}, 'compare': config_lib.compare_config(n_ex=n_ex)})
  with pytest.raises(config_lib.ConfigError, match=f'config.compare.{message}'):
    suite.run_suite(suite_config, str(tmp_path / 'suite'))
  assert not (tmp_path / 'suite').exists()


def test_the_evaluate_cli_refuses_a_negative_n_ex(tmp_path):
  out = subprocess.run([
      sys.executable, '-m', 'generalist_jax.evaluate', f'--workdir={tmp_path / "no_run"}',
      '--n_ex=-5'
  ], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  assert 'n_ex=-5: must be an integer >= 1' in out.stderr, out.stderr[-2000:]


def test_a_flags_only_command_refuses_positional_arguments_and_returns_its_status(monkeypatch):
  calls = []
  monkeypatch.setattr(cli.host_memory, 'keep_cpu_buffers_resident', lambda: calls.append('mem'))
  main = cli.flags_only(lambda: calls.append('ran') or 0)
  with pytest.raises(app.UsageError, match=r"\['--n_ex', '5'\].*flags only"):
    main(['evaluate', '--n_ex', '5'])  # what absl leaves over after parsing the flags
  assert calls == []  # refused before any work
  assert main(['evaluate']) == 0 and calls == ['mem', 'ran']
  quiet = cli.flags_only(lambda: calls.append('export'), resident_cpu_buffers=False)
  quiet(['export_torch'])
  assert calls[-1] == 'export' and calls.count('mem') == 1
