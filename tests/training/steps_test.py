"""Each phase on its own: what it updates, what it leaves alone, and its metrics (stand-in networks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import standins

from head360_jax import parallel
from head360_jax.metrics import lpips as lpips_lib
from head360_jax.training import schedules
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib


@pytest.fixture(scope='module')
def setup():
  config = standins.tiny_config()
  models, state = state_lib.create(config, standins.build_models(config))
  rng = np.random.default_rng(0)
  b, res = config.train.batch_size, config.model.output_resolution
  batch = {
    'image': rng.uniform(-1, 1, (b, res, res, 3)).astype(np.float32),
    'camera': rng.normal(size=(b, 25)).astype(np.float32),
    'expression': rng.uniform(size=(b, 52)).astype(np.float32),
    'vertices': rng.normal(size=(b, 10, 3)).astype(np.float32),
    'identity': np.arange(b, dtype=np.int32) % 2,
    'hair': np.ones(b, np.int32),
  }
  batch['label'] = np.concatenate([batch['camera'], batch['expression']], -1)
  mesh = parallel.make_mesh(1)
  return config, models, state, batch, steps_lib.make_steps(models, config=config, mesh=mesh)


def _fresh(state):
  return jax.tree.map(np.array, state)  # steps donate their input


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_g_main_updates_generator_ema_and_stats_only(setup):
  _, _, state, batch, steps = setup
  new, metrics = steps['g_main'](_fresh(state), batch, jax.random.key(0))
  assert not _same(new.g_params, state.g_params)
  assert _same(new.g_ema, new.g_params)  # β = 0 at step 0: the EMA starts as a copy
  assert _same(new.d_params, state.d_params) and int(new.step) == 0
  assert not _same(new.g_stats, state.g_stats)
  expected = {'g/loss', 'g/loss_gan', 'g/loss_l1', 'g/score_fake', 'g/grad_norm', 'g/ema_beta'}
  assert expected <= set(metrics) and all(np.shape(v) == () for v in metrics.values())
  np.testing.assert_allclose(metrics['g/loss'], metrics['g/loss_gan'] + 100 * metrics['g/loss_l1'], rtol=1e-5)


def test_g_main_without_gan_is_the_l1_term_alone(setup):
  config, models, state, batch, _ = setup
  config = config.copy_and_resolve_references()
  config.train.gan_weight = 0.0
  g_main = steps_lib.make_steps(models, config=config, mesh=parallel.make_mesh(1))['g_main']
  new, metrics = g_main(_fresh(state), batch, jax.random.key(0))
  assert 'g/loss_gan' not in metrics and not _same(new.g_params, state.g_params)
  np.testing.assert_allclose(metrics['g/loss'], 100 * metrics['g/loss_l1'], rtol=1e-6)


def test_g_main_opacity_loss_is_the_l1_of_the_raw_alpha(setup):
  """``alpha_weight``: with targets 0 and 1 everywhere the two opacity losses sum to 1 (alpha in [0, 1])."""
  config, models, state, batch, _ = setup
  config = config.copy_and_resolve_references()
  config.train.alpha_weight = 2.0
  g_main = steps_lib.make_steps(models, config=config, mesh=parallel.make_mesh(1))['g_main']
  res = config.model.output_resolution
  figures = []
  for target in (0.0, 1.0):
    with_alpha = batch | {'alpha': np.full((len(batch['image']), res, res, 1), target, np.float32)}
    _, metrics = g_main(_fresh(state), with_alpha, jax.random.key(0))
    expected = metrics['g/loss_gan'] + 100 * metrics['g/loss_l1'] + 2.0 * metrics['g/loss_alpha']
    np.testing.assert_allclose(metrics['g/loss'], expected, rtol=1e-5)
    figures.append(float(metrics['g/loss_alpha']))
  assert 0 < figures[0] < 1 and abs(sum(figures) - 1.0) < 1e-5


def test_g_main_lpips_term_is_lpips_vgg_of_the_output(setup):
  """``lpips_weight``: the term is LPIPS-VGG of G's output to the batch image; the total adds it with its weight."""
  config, models, state, batch, _ = setup
  config = config.copy_and_resolve_references()
  config.train.gan_weight, config.train.lpips_weight = 0.0, 3.0
  g_main = steps_lib.make_steps(models, config=config, mesh=parallel.make_mesh(1))['g_main']
  new, metrics = g_main(_fresh(state), batch, jax.random.key(0))
  np.testing.assert_allclose(metrics['g/loss'], 100 * metrics['g/loss_l1'] + 3.0 * metrics['g/loss_lpips'], rtol=1e-5)
  # The same figure from the output rendered outside the step (the phase's generator inputs and key).
  k_swap, k_gen, _ = steps_lib._phase_keys(jax.random.key(0), state.step, 'g_main', 3)
  swap_prob = schedules.gpc_swap_prob(0, config.train.gpc_fade_kimg, config.train.gpc_prob)
  inputs = steps_lib.generator_inputs(models, batch, k_swap, swap_prob)
  out = models.render(models.generator(state.g_params, models.g_rest), inputs, k_gen)
  expected = np.mean(lpips_lib.lpips(lpips_lib.load_lpips('vgg'), out['image'], jnp.asarray(batch['image'])))
  assert float(metrics['g/loss_lpips']) == pytest.approx(float(expected), rel=1e-4)
  assert float(expected) > 0.05 and not _same(new.g_params, state.g_params)


def test_g_main_lpips_weight_needs_the_network(setup):
  config, models, state, batch, _ = setup
  config = config.copy_and_resolve_references()
  config.train.lpips_weight = 1.0
  g_main = steps_lib.make_phases(models, config=config)['g_main']
  with pytest.raises(ValueError, match='lpips_params'):
    g_main(_fresh(state), batch, jax.random.key(0), models.g_rest, models.d_rest)


def test_d_main_updates_discriminator_and_counts_the_step(setup):
  _, _, state, batch, steps = setup
  new, metrics = steps['d_main'](_fresh(state), batch, jax.random.key(0))
  assert not _same(new.d_params, state.d_params) and _same(new.g_params, state.g_params)
  assert int(new.step) == 1
  np.testing.assert_allclose(metrics['d/loss'], metrics['d/loss_real'] + metrics['d/loss_fake'], rtol=1e-6)


@pytest.mark.parametrize(
  'phase, metric, changed', [('d_reg', 'd/r1', 'd_params'), ('g_reg', 'g/density_reg', 'g_params')]
)
def test_regularisers_report_a_positive_penalty_and_update_their_network(setup, phase, metric, changed):
  _, _, state, batch, steps = setup
  new, metrics = steps[phase](_fresh(state), batch, jax.random.key(0))
  assert float(metrics[metric]) > 0
  assert not _same(getattr(new, changed), getattr(state, changed)) and int(new.step) == 0


def test_phases_are_deterministic_in_the_key(setup):
  _, _, state, batch, steps = setup
  _, a = steps['g_main'](_fresh(state), batch, jax.random.key(3))
  _, b = steps['g_main'](_fresh(state), batch, jax.random.key(3))
  _, c = steps['g_main'](_fresh(state), batch, jax.random.key(4))
  assert a['g/loss'] == b['g/loss'] and a['g/loss'] != c['g/loss']


def test_scrub_replaces_nan_and_inf():
  out = steps_lib.scrub({'a': np.array([np.nan, np.inf, -np.inf, 2.0], np.float32)})
  np.testing.assert_array_equal(out['a'], [0.0, 1e5, -1e5, 2.0])


def test_generator_inputs_swap_cameras_with_probability_one(setup):
  _, models, _, batch, _ = setup
  inputs = steps_lib.generator_inputs(models, batch, jax.random.key(0), 1.0)
  np.testing.assert_array_equal(inputs['c'], batch['camera'])
  np.testing.assert_array_equal(inputs['c_cond'], np.roll(batch['camera'], 1, axis=0))
  kept = steps_lib.generator_inputs(models, batch, jax.random.key(0), 0.0)
  np.testing.assert_array_equal(kept['c_cond'], batch['camera'])
