"""The meta-update and schedules against arithmetic done by hand."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from generalist_jax.method import meta
from generalist_jax.method import schedules
from generalist_jax.method import timescale


def tree(w, m):
  return {'params': {'w': jnp.float32(w)}, 'batch_stats': {'mean': jnp.float32(m)}}


def test_meta_update_by_hand_without_sync():
  experts = [tree(1.0, 2.0), tree(3.0, 4.0)]
  emas = [tree(0.0, 0.0), tree(0.0, 0.0)]
  new_experts, new_emas, glob = meta.meta_update(experts, emas, tree(0.0, 0.0), decay=0.5,
                                                 weights=jnp.array([0.25,
                                                                    0.75]), sync=jnp.array(False))
  # ema_1 = .5*0 + .5*1 = .5, ema_2 = 1.5; mix = .25*.5 + .75*1.5 = 1.25; global = .625
  np.testing.assert_allclose(new_emas[0]['params']['w'], 0.5)
  np.testing.assert_allclose(new_emas[1]['params']['w'], 1.5)
  np.testing.assert_allclose(glob['params']['w'], 0.625)
  # BN statistics follow the same arithmetic: emas 1, 2; mix 1.75; global .875
  np.testing.assert_allclose(glob['batch_stats']['mean'], 0.875)
  np.testing.assert_allclose(new_experts[0]['params']['w'], 1.0)  # untouched
  np.testing.assert_allclose(new_experts[1]['batch_stats']['mean'], 4.0)


def test_meta_update_sync_copies_global_into_every_expert():
  experts = [tree(1.0, 2.0), tree(3.0, 4.0)]
  emas = [tree(1.0, 1.0), tree(1.0, 1.0)]
  new_experts, _, glob = meta.meta_update(experts, emas, tree(2.0, 2.0), decay=0.9,
                                          weights=jnp.array([0.5, 0.5]), sync=jnp.array(True))
  # emas: .9+.1=1.0 and .9+.3=1.2 -> mix 1.1 -> global .9*2 + .1*1.1 = 1.91
  np.testing.assert_allclose(glob['params']['w'], 1.91, rtol=1e-6)
  for e in new_experts:
    np.testing.assert_allclose(e['params']['w'], 1.91, rtol=1e-6)
    np.testing.assert_allclose(e['batch_stats']['mean'], glob['batch_stats']['mean'])


def test_meta_update_three_experts():
  experts = [tree(1.0, 0.0), tree(2.0, 0.0), tree(4.0, 0.0)]
  emas = [tree(0.0, 0.0)] * 3
  _, _, glob = meta.meta_update(experts, emas, tree(0.0, 0.0), decay=0.0,
                                weights=jnp.array([0.5, 0.25, 0.25]), sync=jnp.array(False))
  np.testing.assert_allclose(glob['params']['w'], 0.5 + 0.5 + 1.0)


def test_ema_decay_warmup():
  np.testing.assert_allclose(schedules.ema_decay(0), 0.1, rtol=1e-6)
  np.testing.assert_allclose(schedules.ema_decay(90), 0.91, rtol=1e-6)
  np.testing.assert_allclose(schedules.ema_decay(10**6), 0.999, rtol=1e-6)


def timeline(steps_per_epoch, num_epochs, **kw):
  return timescale.Timeline(steps_per_epoch=steps_per_epoch, num_epochs=num_epochs, **kw)


def clock(steps_per_epoch, num_epochs):
  """The default clock: the fractional epoch after the step."""
  return timeline(steps_per_epoch, num_epochs).epoch


def lr_config(**kw):
  base = dict(schedule='piecewise_linear', lr_epochs=(0, 40, 80, 120),
              lr_values=(0.01, 0.01, 0.001, 0.0001), lr=0.1)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_piecewise_linear_lr_at_the_epoch_after_the_step():
  lr = schedules.make_lr_schedule(lr_config(), num_epochs=120, epoch_of=clock(10, 120))
  np.testing.assert_allclose(lr(9), 0.01, rtol=1e-6)  # epoch 1.0
  # step 409 ends at epoch 41: 0.01 - (1/40) * 0.009
  np.testing.assert_allclose(lr(409), 0.009775, rtol=1e-5)
  np.testing.assert_allclose(lr(1199), 0.0001, rtol=1e-5)  # epoch 120


def test_cosine_and_constant_lr():
  cos = schedules.make_lr_schedule(lr_config(schedule='cosine'), num_epochs=10,
                                   epoch_of=clock(10, 10))
  np.testing.assert_allclose(cos(49), 0.05, rtol=1e-5)  # half way
  np.testing.assert_allclose(cos(99), 0.0, atol=1e-7)
  const = schedules.make_lr_schedule(lr_config(schedule='constant'), 10, clock(10, 10))
  np.testing.assert_allclose(const(57), 0.1)
  with pytest.raises(ValueError, match='schedule'):
    schedules.make_lr_schedule(lr_config(schedule='step'), 10, clock(10, 10))


def test_mixing_weights_follow_the_reference_beta_and_sum_to_one():
  weights = schedules.make_mix_schedule(
      (0, 40, 80, 120), [(0.0, 0.0, 0.0, 0.6), (1.0, 1.0, 1.0, 0.4)], epoch_of=clock(10, 120))
  np.testing.assert_allclose(weights(999), [0.3, 0.7], rtol=1e-5)  # epoch 100: beta .7
  np.testing.assert_allclose(weights(1199), [0.6, 0.4], rtol=1e-5)
  all_steps = jax.vmap(weights)(jnp.arange(1200))
  np.testing.assert_allclose(all_steps.sum(axis=1), 1.0, rtol=1e-6)


def sync_config(**kw):
  base = dict(kind='reference', start_epoch=75, every_epochs=5, every_steps=4)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_reference_sync_every_step_of_epochs_75_80_counted_from_one():
  sync = schedules.make_sync_schedule(sync_config(), timeline(10, 120))
  on = list(np.flatnonzero(jax.vmap(sync)(jnp.arange(1200))))
  expected = [s for s in range(1200) if (s // 10 + 1) in range(75, 121, 5)]
  assert on == expected
  assert on[0] == 740 and 749 in on and 750 not in on and 790 in on


def test_every_steps_sync_after_start_epoch():
  sync = schedules.make_sync_schedule(sync_config(kind='every_steps', start_epoch=2),
                                      timeline(10, 4))
  assert list(np.flatnonzero(jax.vmap(sync)(jnp.arange(40)))) == [23, 27, 31, 35, 39]
  never = schedules.make_sync_schedule(sync_config(kind='never'), timeline(10, 4))
  assert not bool(jnp.any(jax.vmap(never)(jnp.arange(40))))
