"""Pivotal tuning on a toy generator: tuned-weight paths, the data term, the locality regulariser."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.fitting import appearance, tuning
from head360_jax.metrics import lpips as lpips_lib


@pytest.fixture(scope='module')
def lpips_params():
  return lpips_lib.load_lpips()


def _render(frozen, texture, w_hair, labels):
  """A toy generator: the texture's first 3 channels through a per-channel 'decoder' gain and bias."""
  params = frozen['params']
  image = jnp.tanh(texture[..., :3] * params['decoder']['gain'] + params['decoder']['bias'] + 0.1 * w_hair[:3])
  image = jax.image.resize(image, (32, 32, 3), 'linear') + params['mapping']['unused']
  return jnp.broadcast_to(image, (labels.shape[0], *image.shape))


def _frozen():
  return {
    'params': {
      'decoder': {'gain': jnp.ones(3), 'bias': jnp.zeros(3)},
      'mapping': {'unused': jnp.zeros(())},
    }
  }


def test_flatten_and_apply_round_trip_on_an_nnx_generator():
  class Toy(nnx.Module):
    def __init__(self):
      self.decoder = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
      self.superres = nnx.Linear(3, 3, rngs=nnx.Rngs(1))
      self.texture_mapping = nnx.Linear(3, 3, rngs=nnx.Rngs(2))

  _, params, _ = nnx.split(Toy(), nnx.Param, ...)
  parts = tuning.flatten_parts(params, ('decoder', 'superres'))
  assert {tuning._part_of(path) for path in parts} == {'decoder', 'superres'} and len(parts) == 4
  changed = {path: np.asarray(value) + 1.0 for path, value in parts.items()}
  new = tuning.apply_tuned(params, changed)
  for path, value in tuning.flatten_parts(new, ('decoder', 'superres')).items():
    np.testing.assert_array_equal(value, changed[path])
  untouched = lambda tree: jax.tree.leaves(tree['texture_mapping'])
  for a, b in zip(untouched(new), untouched(params), strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match='cannot tune'):
    tuning.flatten_parts(params, ('texture_mapping',))
  with pytest.raises(ValueError, match='not in this generator'):
    tuning.apply_tuned(params, {"['nothing']": np.zeros(3)})
  path = next(iter(parts))
  with pytest.raises(ValueError, match='shape'):
    tuning.apply_tuned(params, {path: np.zeros(7)})


def _problem():
  rng = np.random.default_rng(0)
  texture = rng.normal(size=(16, 16, 4)).astype(np.float32)
  w_hair = np.zeros(4, np.float32)
  truth = _frozen()
  truth['params']['decoder'] = {'gain': jnp.full(3, 0.5), 'bias': jnp.array([0.3, -0.2, 0.1])}
  image = np.asarray(_render(truth, jnp.asarray(texture), jnp.asarray(w_hair), jnp.zeros((1, 25))))[0]
  targets = appearance.single_view_targets(np.zeros(25, np.float32), image, image)
  return texture, w_hair, targets


def test_tuning_reaches_the_target_and_touches_only_the_chosen_parts(lpips_params):
  texture, w_hair, targets = _problem()
  options = tuning.TuningOptions(steps=60, learning_rate=0.05, parts=('decoder',), lpips_weight=0.0, warmup_steps=1)
  result = tuning.tune(_render, _frozen(), texture, w_hair, targets, None, lpips_params, options, progress=False)
  assert set(result.tuned) == {"['decoder']['bias']", "['decoder']['gain']"}
  assert result.data_losses[-1] < 0.2 * result.data_losses[0]
  assert (result.locality_losses == 0).all() and result.losses.shape == (60,)
  off = tuning.tune(
    _render, _frozen(), texture, w_hair, targets, None, lpips_params, tuning.TuningOptions(steps=0), progress=False
  )
  assert off.tuned == {} and off.losses.size == 0


def test_locality_regulariser_keeps_nearby_heads(lpips_params):
  texture, w_hair, targets = _problem()
  frozen = _frozen()
  heads = lambda seed: (np.random.default_rng(seed).normal(size=texture.shape).astype(np.float32), w_hair)
  options = tuning.TuningOptions(
    steps=60,
    learning_rate=0.05,
    parts=('decoder',),
    lpips_weight=0.0,
    locality_lpips=False,  # the MSE half is what this checks; VGG's gradients would dominate the test's time
    warmup_steps=1,
    locality_samples=4,
  )
  bank = tuning.locality_samples(_render, frozen, texture, w_hair, heads, options)
  assert bank.images.shape == (4, 32, 32, 3) and bank.labels.shape == (4, 25)
  # A sample is the pivot moved locality_fraction of the way towards a random head.
  np.testing.assert_allclose(bank.texture[0], texture + 0.5 * (heads(0)[0] - texture), rtol=1e-6)

  def locality_error(result):
    tuned = {**frozen, 'params': tuning.apply_tuned(frozen['params'], result.tuned)}
    renders = [_render(tuned, bank.texture[i], bank.w_hair[i], bank.labels[i : i + 1])[0] for i in range(4)]
    return float(np.mean((np.stack(renders) - bank.images) ** 2))

  free = tuning.tune(_render, frozen, texture, w_hair, targets, None, lpips_params, options, progress=False)
  regularised = tuning.tune(
    _render,
    frozen,
    texture,
    w_hair,
    targets,
    bank,
    lpips_params,
    tuning.TuningOptions(**{**options.__dict__, 'locality_weight': 10.0}),
    progress=False,
  )
  # The bank holds the untuned renders: the regulariser is 0 until the weights move (the warm-up's
  # first step has step size 0), then positive.
  np.testing.assert_allclose(regularised.locality_losses[:2], 0.0, atol=1e-6)
  assert (regularised.locality_losses[2:] > 0).all()
  assert locality_error(regularised) < 0.5 * locality_error(free)


def test_learning_rate_schedule_warms_up_then_holds_or_anneals():
  constant = tuning.TuningOptions(steps=100, learning_rate=0.02, warmup_steps=10)
  schedule = tuning.learning_rate_schedule(constant)
  np.testing.assert_allclose([float(schedule(i)) for i in (0, 5, 10, 99)], [0.0, 0.01, 0.02, 0.02], rtol=1e-6)

  cosine = tuning.TuningOptions(steps=100, learning_rate=0.02, warmup_steps=10, decay='cosine', final_fraction=0.1)
  schedule = tuning.learning_rate_schedule(cosine)
  rates = np.array([float(schedule(i)) for i in range(101)])
  np.testing.assert_allclose(rates[[0, 5, 10]], [0.0, 0.01, 0.02], rtol=1e-6)
  # Cosine from the peak at step 10 to 10 % of it at step 100: halfway down at step 55.
  np.testing.assert_allclose(rates[55], 0.002 + 0.5 * 0.018, rtol=1e-5)
  np.testing.assert_allclose(rates[100], 0.002, rtol=1e-5)
  assert np.all(np.diff(rates[10:]) <= 1e-9)


@pytest.mark.parametrize('field, value', [('decay', 'linear'), ('final_fraction', 1.5)])
def test_learning_rate_schedule_rejects_bad_options(field, value):
  options = dataclasses.replace(tuning.TuningOptions(decay='cosine'), **{field: value})
  with pytest.raises(ValueError, match=field.split('_')[0]):
    tuning.learning_rate_schedule(options)
