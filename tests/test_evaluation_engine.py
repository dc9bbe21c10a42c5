"""The evaluation engine (`runner.run_evaluation`): attacks in stages on the examples
still unbroken, batched with per-example random draws, bucketed batch sizes, the
batch split over devices. Its flags and adversarial points must be those of the
code it replaced: each attack whole on every example of a chunk padded to a
multiple of 8, key-drawing attacks under `jax.vmap` on batches of one (kept
below as the reference)."""
import functools
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generalist_jax import attacks
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.evaluation import jitted
from generalist_jax.evaluation import runner

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (16, 16, 3)
MODEL = models.create_model({'name': 'small_cnn', 'width': 0.25}, 10, (0.5,), (0.25,))
VARIABLES = models.init_variables(MODEL, jax.random.PRNGKey(0), SHAPE)
APPLY = jitted.model_apply_fn(MODEL)
IMAGES = np.random.default_rng(0).integers(0, 256, (24, *SHAPE), dtype=np.uint8)
LABELS = np.array(np.argmax(APPLY(VARIABLES, IMAGES / np.float32(255)), -1), np.int32)
LABELS[[5, 17]] = (LABELS[[5, 17]] + 1) % 10  # two examples wrong from the start
IDS = np.arange(24) * 7 + 3
BUDGET = {'steps': 4, 'n_targets': 3, 'n_queries': 40}
EPS = {'linf': 0.08, 'l2': 1.0}  # APGD-CE and APGD-T fool some, some stay robust


def plan(norm):
  return runner.make_plan([norm], [EPS[norm]], 'standard', BUDGET)


# ----------------------------------------------------------------------------
# The reference: the evaluation loop before stages (its attack_batch_fn and _padded).
# ----------------------------------------------------------------------------


def old_attack_batch_fn(apply_fn, spec):
  attack = registry.build(spec.name, norm=spec.norm, eps=spec.eps, overrides=dict(spec.overrides))
  per_example = registry.ATTACKS[spec.name].uses_key(
      registry.settings(spec.name, spec.norm, dict(spec.overrides)))

  @functools.partial(jax.jit, compiler_options=models.compiler_options())
  def run(params, x, y, column, ids):
    logits_fn = jitted.bind(apply_fn, params)

    def one(xi, yi, i):
      return attack(logits_fn, xi[None], yi[None], jax.random.fold_in(column, i))[0]

    x_adv = jax.vmap(one)(x, y, ids) if per_example else attack(logits_fn, x, y, column)
    norm = attacks.lp_norm(x_adv - x, spec.norm)
    inside = (norm <= spec.eps * (1 + 1e-4) + 1e-6) & jnp.all(
        (x_adv >= 0) & (x_adv <= 1), axis=tuple(range(1, x.ndim)))
    return {'correct': jnp.argmax(logits_fn(x_adv), -1) == y, 'inside': inside, 'x_adv': x_adv}

  return run


def old_padded(indices, batch_size):
  size = min(batch_size, -(-len(indices) // 8) * 8)
  return np.concatenate([indices, np.repeat(indices[-1:], size - len(indices))])


def old_evaluation(plan, batch_size, seed):
  """(state, x_adv) of the old loop (the clean pass is the new one's: unchanged)."""
  state = runner.run_evaluation(APPLY, VARIABLES, IMAGES, LABELS, [], batch_size=batch_size,
                                seed=seed, progress=False)
  state.update(runner.new_state(len(LABELS), plan), clean=state['clean'])
  x_adv = np.zeros(IMAGES.shape, np.float32)
  for i, spec in enumerate(plan):
    earlier = [state[s.column] for s in plan[:i]]
    todo = aa.still_robust(state['clean'] == 1, earlier)
    state[spec.column][~todo] = aa.SKIPPED
    run = old_attack_batch_fn(APPLY, spec)
    for chunk in runner._chunks(np.flatnonzero(todo), batch_size):
      idx = old_padded(chunk, batch_size)
      out = jax.device_get(
          run(VARIABLES, data_lib.to_float(IMAGES[idx]), LABELS[idx], runner.column_key(seed, spec),
              IDS[idx].astype(np.int32)))
      m = len(chunk)
      state[spec.column][chunk] = out['correct'][:m]
      state['outside_ball'][chunk] |= ~out['inside'][:m]
      fooled = ~out['correct'][:m]
      x_adv[chunk[fooled]] = out['x_adv'][:m][fooled]
  return state, x_adv


def new_evaluation(plan, batch_size, seed, **kwargs):
  x_adv = np.zeros(IMAGES.shape, np.float32)
  state = runner.run_evaluation(APPLY, VARIABLES, IMAGES, LABELS, plan, batch_size=batch_size,
                                seed=seed, example_ids=IDS, progress=False, x_adv=x_adv, **kwargs)
  return state, x_adv


@pytest.fixture(scope='module')
def linf_new():
  return new_evaluation(plan('linf'), 16, seed=1, query_block=8)


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_flags_and_points_are_those_of_the_code_before_stages(norm, linf_new, monkeypatch):
  """Bit for bit: every flag and every adversarial point, though targets, restarts
  and Square's query blocks now run on fewer and fewer examples."""
  active = []
  padded = runner._padded
  monkeypatch.setattr(runner, '_padded',
                      lambda idx, sizes: active.append(len(idx)) or padded(idx, sizes))
  old_state, old_x = old_evaluation(plan(norm), 16, seed=1)
  new_state, new_x = linf_new if norm == 'linf' else new_evaluation(plan(norm), 16, seed=1,
                                                                    query_block=8)
  for key, value in old_state.items():
    np.testing.assert_array_equal(new_state[key], value, err_msg=key)
  np.testing.assert_array_equal(new_x, old_x)
  for spec in plan(norm)[:2]:
    assert np.any(new_state[spec.column] == aa.FOOLED), spec.column
  assert np.any(new_state[plan(norm)[-1].column] == aa.ROBUST)
  if norm == 'l2':  # later stages ran on fewer examples
    assert len(set(active)) > 2, active


def test_flags_do_not_depend_on_batch_size_or_query_block(linf_new):
  state, x_adv = new_evaluation(plan('linf'), 5, seed=1, query_block=13)
  for key, value in linf_new[0].items():
    np.testing.assert_array_equal(state[key], value, err_msg=key)
  np.testing.assert_array_equal(x_adv, linf_new[1])


def test_bucket_sizes_are_a_ladder_of_device_multiples():
  assert runner.bucket_sizes(500) == (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192,
                                      224, 256, 320, 384, 448, 500)
  assert runner.bucket_sizes(128, 4) == (32, 64, 96, 128)
  assert runner.bucket_sizes(17) == (8, 16, 17)
  assert runner.bucket_sizes(2) == (8,)
  assert runner.bucket_sizes(30, 4) == (32,)
  assert list(runner._padded(np.array([4, 9, 2]), (8, 16))) == [4, 9, 2] + [2] * 5


FOUR_DEVICES = textwrap.dedent('''
    import json
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from generalist_jax import parallel
    from generalist_jax.evaluation import jitted
    from tests import test_evaluation_engine as t
    assert jax.device_count() == 4
    calls = []
    stage_fn = jitted.stage_fn

    def spy(*args, **kwargs):
      fn = stage_fn(*args, **kwargs)
      def run(*inputs):
        outputs = fn.run(*inputs)
        calls.append((args[1].column, inputs[1].shape[0],
                      [len(a.sharding.device_set) for a in jax.tree.leaves((inputs[1], outputs))],
                      [a.sharding.spec == P(parallel.DATA)
                       for a in jax.tree.leaves((inputs[1], outputs))]))
        return outputs
      return fn._replace(run=run)

    jitted.stage_fn = spy
    four, x4 = t.new_evaluation(t.plan('linf'), 16, seed=1, query_block=8)
    four_calls = list(calls)
    one_device = jax.make_mesh((1,), (parallel.DATA,), devices=jax.devices()[:1],
                               axis_types=(jax.sharding.AxisType.Auto,))
    one, x1 = t.new_evaluation(t.plan('linf'), 16, seed=1, query_block=8, mesh=one_device)
    spread = [c for c, n, d, split in four_calls if set(d) == {4} and all(split)]
    print(json.dumps({'four': {k: v.tolist() for k, v in four.items()},
                      'one': {k: v.tolist() for k, v in one.items()},
                      'same_points': bool(np.array_equal(x4, x1)),
                      'columns': sorted(set(spread)), 'calls': len(four_calls),
                      'spread': len(spread), 'sizes': sorted({n for _, n, _, _ in four_calls})}))
''')


def test_four_devices_split_every_attack_and_match_one_device(linf_new):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  proc = subprocess.run([sys.executable, '-c', FOUR_DEVICES], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # every stage call of every attack: inputs and outputs on 4 devices, split on 'data'
  assert out['spread'] == out['calls'] > 0, out
  assert out['columns'] == sorted(s.column for s in plan('linf'))
  assert all(size % 4 == 0 and size >= 32 for size in out['sizes'])
  assert out['four'] == out['one'], 'flags on 4 devices differ from 1 device'
  assert out['same_points']
  for key, value in linf_new[0].items():  # and from a 1-device process
    assert out['four'][key] == value.tolist(), key
