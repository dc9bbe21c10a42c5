"""End to end: jitted steps on mock TFDS and on a tiny npz, logs, checkpoints, resume."""
import json

import jax
import numpy as np
import tensorflow_datasets as tfds

from generalist_jax import data as data_lib
from generalist_jax.method import schedules
from generalist_jax.method import step as step_lib
from generalist_jax.run import checkpoints as checkpointing
from generalist_jax.run import loop
from tests.tiny_config import tiny_config


def _setup(config):
  dataset = data_lib.load_dataset(config.data)
  spe = data_lib.steps_per_epoch(dataset, config.batch_size)
  return dataset, step_lib.make_setup(config, dataset.info, spe)


def test_first_step_meta_update_matches_hand_arithmetic(tiny_npz):
  config = tiny_config(tiny_npz)
  dataset, setup = _setup(config)
  state0 = step_lib.create_train_state(setup, dataset.info.image_shape, seed=0)
  init = jax.tree.map(np.asarray, state0.global_learner)
  batch = next(data_lib.train_batches(dataset, config.batch_size, seed=0, augment='none'))
  state1, metrics = jax.jit(lambda s, b: step_lib.train_step(setup, s, b))(state0, batch)
  decay = float(schedules.ema_decay(0))  # 0.1 at t = 0
  w = np.asarray(setup.clock.mix_weights(0))  # [natural, robust]
  experts = [jax.tree.map(np.asarray, e) for e in state1.experts]
  for ema, expert in zip(state1.emas, experts):
    jax.tree.map(
        lambda e, i, x: np.testing.assert_allclose(e, decay * i +
                                                   (1 - decay) * x, rtol=1e-5, atol=1e-6), ema,
        init, expert)
  expected_global = jax.tree.map(
      lambda i, e0, e1: decay * i + (1 - decay) * (w[0] * (decay * i + (1 - decay) * e0) + w[1] *
                                                   (decay * i + (1 - decay) * e1)), init, *experts)
  jax.tree.map(lambda g, x: np.testing.assert_allclose(g, x, rtol=1e-5, atol=1e-6),
               state1.global_learner, expected_global)
  # The two experts really trained on different inputs (clean vs PGD).
  assert not np.allclose(
      jax.tree.leaves(experts[0]['params'])[0],
      jax.tree.leaves(experts[1]['params'])[0])
  assert int(state1.step) == 1
  assert all(np.isfinite(float(v)) for v in metrics.values())


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def _restore(workdir, config, which='last'):
  dataset, setup = _setup(config)
  template = step_lib.create_train_state(setup, dataset.info.image_shape, config.seed)
  ckpts = checkpointing.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep)
  state, meta = ckpts.restore(template, which)
  ckpts.close()
  return state, meta


def test_npz_run_writes_logs_checkpoints_and_test_tables(tmp_path, tiny_npz):
  config = tiny_config(tiny_npz)
  results = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  run = tmp_path / 'run'
  assert json.loads((run / 'config.json').read_text())['batch_size'] == 8
  records = [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines()]
  steps = [r['step'] for r in records]
  assert steps == sorted(steps) and steps[-1] == 10  # 40 train / 8 = 5 x 2 epochs
  train_keys = {k for r in records for k in r}
  for key in ('train/natural/loss', 'train/robust/loss', 'schedule/robust/lr',
              'schedule/robust/mix_weight', 'val/global/robust_acc', 'val/natural/clean_acc',
              'perf/img_per_sec', 'val/natural_ema/robust_acc'):
    assert key in train_keys, key
  # Validations on each side of every sync window (tiny config: syncs at steps 5 and 8).
  around = {
      r['step']: k.split('/')[0]
      for r in records for k in r if k.startswith(('presync/', 'postsync/'))
  }
  assert around == {5: 'presync', 6: 'postsync', 8: 'presync', 9: 'postsync'}
  assert list((run / 'tensorboard').glob('events.out.tfevents.*'))
  assert sorted(
      int(p.name) for p in (run / 'checkpoints' / 'last').iterdir() if p.name.isdigit())[-1] == 10
  assert any(p.name.isdigit() for p in (run / 'checkpoints' / 'best').iterdir())
  for which in ('last', 'best'):
    table = json.loads((run / 'eval' / f'test_{which}.json').read_text())
    assert set(table['learners']) == {'natural', 'robust', 'natural_ema', 'robust_ema', 'global'}
    assert table['n_test'] == 16
    assert (run / 'eval' / f'test_{which}.md').exists()
  assert results['last']['step'] == 10
  for m in results['last']['learners'].values():
    assert 0.0 <= m['clean_acc'] <= 1.0 and 0.0 <= m['robust_acc'] <= 1.0


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, tiny_npz):
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  # Stop after 3 steps (checkpoint at step 2), then again after 4 more, as kills would.
  loop.train_and_evaluate(config, str(tmp_path / 'killed'), stop_after_steps=3)
  loop.train_and_evaluate(config, str(tmp_path / 'killed'), stop_after_steps=4)
  partial, _ = _restore(tmp_path / 'killed', config)
  assert int(partial.step) == 6
  loop.train_and_evaluate(config, str(tmp_path / 'killed'))
  straight, meta_a = _restore(tmp_path / 'straight', config)
  resumed, meta_b = _restore(tmp_path / 'killed', config)
  assert int(straight.step) == int(resumed.step) == 10
  for a, b in zip(_leaves(straight), _leaves(resumed)):
    np.testing.assert_array_equal(a, b)  # bit for bit on CPU
  assert meta_a['best_step'] == meta_b['best_step']
  records = [
      json.loads(l) for l in (tmp_path / 'killed' / 'metrics.jsonl').read_text().splitlines()
  ]
  train_steps = [r['step'] for r in records if 'train/robust/loss' in r]
  assert len(train_steps) == len(set(train_steps))  # no duplicated log lines after resume


def test_one_step_on_mock_tfds_cifar10(tmp_path):
  config = tiny_config(num_epochs=1)
  config.data.source = 'tfds'
  config.data.name = 'cifar10'
  config.data.test_size = 16
  config.meta.sync.start_epoch = 0
  config.eval.final_test = False
  with tfds.testing.mock_data(num_examples=40):
    loop.train_and_evaluate(config, str(tmp_path / 'run'), stop_after_steps=1)
  records = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
  assert records[0]['step'] == 1 and np.isfinite(records[0]['train/robust/loss'])
