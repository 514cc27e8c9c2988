"""SphereHead's view-image consistency loss (ViCo): the wrong-camera labels, the loss, its wiring into d_main, and
a toy discriminator that learns with it that an image must agree with its camera.

* ``camera.mismatched_labels`` against an independent float64 numpy rotation about world y;
* ``losses.view_consistency_loss`` against hand computation;
* ``steps.make_phases``'s real ``d_main`` on the stand-in networks (``standins.py``): with
  ``train.view_consistency`` 0 it calls D twice and its update equals that of the plain
  fake + real loss (written out here as d_main was before ViCo); with a weight > 0 it calls D a
  third time, on the reals with the wrong labels, and adds weight x the ViCo term;
* a tiny ``DualDiscriminator`` (16² images) on reals whose blob position follows the camera yaw,
  trained with Adam on ``softplus(-D(x, c)) + softplus(D(x, c'))``: on held-out views the mean
  logit with the true camera ends clearly above the one with a wrong camera (at init: about equal).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import standins
from flax import nnx

from head360_jax.geometry import camera
from head360_jax.models import discriminator as disc
from head360_jax.models.layers import resize_bilinear
from head360_jax.training import losses, schedules
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib

# ---------------------------------------------------------------------------------------------------------------------
# mismatched_labels


def _orbit_labels(num: int, seed: int) -> np.ndarray:
  """The 72 dataset cameras and ``num`` random orbit cameras (any yaw, pitch in [-80, 80]), (72 + num, 25)."""
  rng = np.random.default_rng(seed)
  cam2world = camera.orbit_cam2world(rng.uniform(-180, 180, num), rng.uniform(-80, 80, num))
  intrinsics = np.broadcast_to(camera.normalized_intrinsics(17.0, 0.4, 0.6), (num, 3, 3))
  random = np.asarray(camera.pack_label(cam2world, intrinsics))
  return np.concatenate([camera.dataset_cameras(), random]).astype(np.float32)


def _yaw_deg(cam2world: np.ndarray) -> np.ndarray:
  """Yaw of the camera position, ``orbit_cam2world``'s convention: atan2(x, z), degrees."""
  return np.degrees(np.arctan2(cam2world[:, 0, 3], cam2world[:, 2, 3]))


def _rotation_y(delta_deg: np.ndarray) -> np.ndarray:
  """Float64 4x4 rotations about world +y by ``delta_deg`` (yaw 0 at +z goes to +x at 90 deg)."""
  d = np.radians(np.asarray(delta_deg, np.float64))
  rotation = np.zeros((len(d), 4, 4))
  rotation[:, 0, 0] = rotation[:, 2, 2] = np.cos(d)
  rotation[:, 0, 2], rotation[:, 2, 0] = np.sin(d), -np.sin(d)
  rotation[:, 1, 1] = rotation[:, 3, 3] = 1.0
  return rotation


def test_mismatched_labels_turn_each_camera_about_world_y_by_90_to_270_degrees():
  labels = _orbit_labels(200, seed=0)
  out = np.asarray(camera.mismatched_labels(jax.random.key(0), labels), np.float64)
  assert out.shape == labels.shape and out.dtype == np.float64  # (cast above; the function keeps float32)
  before = np.asarray(labels, np.float64)[:, :16].reshape(-1, 4, 4)
  after = out[:, :16].reshape(-1, 4, 4)
  # The yaw offset, recovered from the camera positions alone, lies in [90, 270] deg and spreads over it.
  offset = np.mod(_yaw_deg(after) - _yaw_deg(before), 360.0)
  assert np.all((offset >= 90 - 1e-3) & (offset <= 270 + 1e-3)), (offset.min(), offset.max())
  assert offset.min() < 100 and offset.max() > 260 and abs(np.mean(offset) - 180) < 10
  # The whole cam2world is R_y(offset) @ cam2world (float64 reference), rotation and translation alike.
  np.testing.assert_allclose(after, _rotation_y(offset) @ before, atol=2e-5)
  # Still a rigid transform: orthonormal proper rotation, bottom row [0, 0, 0, 1].
  rotation = after[:, :3, :3]
  np.testing.assert_allclose(
    rotation @ rotation.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rotation.shape), atol=1e-6
  )
  np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-6)
  np.testing.assert_array_equal(after[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(after), 4)))
  # Same radius and height (pitch), and it still looks at the origin: the origin is straight ahead (camera z).
  eye = after[:, :3, 3]
  np.testing.assert_allclose(np.linalg.norm(eye, axis=-1), np.linalg.norm(before[:, :3, 3], axis=-1), rtol=1e-6)
  np.testing.assert_allclose(eye[:, 1], before[:, 1, 3], atol=1e-5)
  origin_in_camera = np.einsum('bij,bi->bj', rotation, -eye)  # R^T (0 - t)
  np.testing.assert_allclose(origin_in_camera[:, :2], 0.0, atol=1e-4)
  np.testing.assert_allclose(origin_in_camera[:, 2], np.linalg.norm(eye, axis=-1), rtol=1e-6)
  # The image-right axis stays horizontal (no roll is introduced).
  np.testing.assert_allclose(rotation[:, 1, 0], 0.0, atol=1e-6)
  # Intrinsics unchanged, bit for bit.
  np.testing.assert_array_equal(out[:, 16:], labels[:, 16:])


def test_mismatched_labels_keep_the_expression_of_77d_labels_and_the_dtype():
  labels = _orbit_labels(8, seed=1)
  expression = np.random.default_rng(2).uniform(size=(len(labels), 52)).astype(np.float32)
  full = np.concatenate([labels, expression], -1)
  key = jax.random.key(3)
  out = camera.mismatched_labels(key, full)
  assert out.shape == (len(labels), 77) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out[:, 25:], expression)
  np.testing.assert_array_equal(out[:, :25], camera.mismatched_labels(key, labels))  # same offsets per sample
  assert not np.allclose(out[:, :16], full[:, :16], atol=1e-3)


def test_mismatched_labels_with_a_fixed_offset_and_bad_inputs():
  labels = camera.dataset_cameras()
  half_turn = np.asarray(camera.mismatched_labels(jax.random.key(0), labels, 180.0, 180.0))
  views = np.arange(72)
  opposite = views // 24 * 24 + (views % 24 + 12) % 24  # the same pitch, yaw + 180 deg
  np.testing.assert_allclose(half_turn, labels[opposite], atol=1e-5)
  with pytest.raises(ValueError, match='25 or 77'):
    camera.mismatched_labels(jax.random.key(0), np.zeros((2, 16), np.float32))
  with pytest.raises(ValueError, match='min_yaw_deg'):
    camera.mismatched_labels(jax.random.key(0), labels, 270.0, 90.0)


# ---------------------------------------------------------------------------------------------------------------------
# the loss, and a tiny DualDiscriminator

TINY_D = dict(channel_base=64, channel_max=8, expression_cmap_dim=4, num_mapping_layers=2)


def _tiny_discriminator(seed: int) -> tuple[nnx.GraphDef, dict]:
  return nnx.split(disc.DualDiscriminator(16, **TINY_D, rngs=nnx.Rngs(seed)), nnx.Param)


def _logits(graphdef, params, image, label):
  raw = resize_bilinear(image, image.shape[1] // 2, antialias=True)
  return nnx.merge(graphdef, params)(image, raw, label)


def test_view_consistency_loss_is_the_fake_term_on_mismatched_logits():
  logits = np.array([[-3.0], [0.0], [2.5], [60.0]], np.float32)
  np.testing.assert_allclose(losses.view_consistency_loss(logits), np.mean(np.log1p(np.exp(logits))), rtol=1e-6)
  np.testing.assert_allclose(losses.view_consistency_loss(np.zeros((3, 1), np.float32)), np.log(2.0), rtol=1e-6)
  assert np.isfinite(losses.view_consistency_loss(jnp.array([[1e4]])))


def test_view_consistency_at_weight_zero_gives_exactly_zero_gradient():
  graphdef, params = _tiny_discriminator(0)
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(-1, 1, (4, 16, 16, 3)), jnp.float32)
  label = jnp.concatenate([jnp.asarray(camera.dataset_cameras()[::18]), jnp.zeros((4, 52))], -1)
  wrong = camera.mismatched_labels(jax.random.key(0), label)

  def term(p, weight):
    return weight * losses.view_consistency_loss(_logits(graphdef, p, image, wrong))

  grads = jax.jit(jax.grad(term))(params, 0.0)
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(jax.jit(jax.grad(term))(params, 1.0)))


# ---------------------------------------------------------------------------------------------------------------------
# d_main (steps.make_phases) on the stand-in networks


@pytest.fixture(scope='module')
def stand_in():
  config = standins.tiny_config()
  models, state = state_lib.create(config, standins.build_models(config))
  rng = np.random.default_rng(0)
  b, res = config.train.batch_size, config.model.output_resolution
  cameras = camera.dataset_cameras()[[30, 6, 42, 66]]
  batch = {
    'image': rng.uniform(-1, 1, (b, res, res, 3)).astype(np.float32),
    'camera': cameras,
    'expression': rng.uniform(size=(b, 52)).astype(np.float32),
    'vertices': rng.normal(size=(b, 10, 3)).astype(np.float32),
    'identity': np.arange(b, dtype=np.int32) % 2,
    'hair': np.ones(b, np.int32),
  }
  batch['label'] = np.concatenate([batch['camera'], batch['expression']], -1)
  return config, models, state, batch


@dataclasses.dataclass(frozen=True)
class _CountingModels(state_lib.Models):
  """``Models`` whose discriminator records the label of every call (counted while tracing)."""

  labels: list = dataclasses.field(default_factory=list)

  def discriminator(self, d_params, d_rest=None):
    module = super().discriminator(d_params, d_rest)

    def call(image, image_raw, label):
      self.labels.append(label)
      return module(image, image_raw, label)

    return call


def _d_main(models, config, weight):
  config = config.copy_and_resolve_references()
  config.train.view_consistency = weight
  return steps_lib.make_phases(models, config=config)['d_main']


@pytest.mark.parametrize('weight, calls', [(0.0, 2), (0.5, 3)])
def test_d_main_calls_the_discriminator_a_third_time_only_with_view_consistency(stand_in, weight, calls):
  config, models, state, batch = stand_in
  counting = _CountingModels(**{f.name: getattr(models, f.name) for f in dataclasses.fields(models)})
  d_main = _d_main(counting, config, weight)
  _, metrics = jax.eval_shape(d_main, state, batch, jax.random.key(0), models.g_rest, models.d_rest)
  assert len(counting.labels) == calls
  assert ('d/loss_view' in metrics) == ('d/score_mismatched' in metrics) == (weight > 0)


def _plain_d_main_loss(models, config, state, batch, rng):
  """d_main's loss as it was before ViCo (fake + real, keys from a 2-way split), written out independently.

  Returns ``(loss_fn(d_params) -> (loss, (fake_logits, real_logits)), (real image, real raw))``, the reals blurred.
  """
  train = config.train
  k_swap, k_gen = steps_lib._phase_keys(rng, state.step, 'd_main', 2)
  seen = state.step * train.batch_size
  sigma = schedules.blur_sigma(seen, train.blur_fade_kimg, train.blur_sigma)
  swap_prob = schedules.gpc_swap_prob(seen, train.gpc_fade_kimg, train.gpc_prob)
  inputs = steps_lib.generator_inputs(models, batch, k_swap, swap_prob)
  fake = models.render(models.generator(state.g_params, models.g_rest), inputs, k_gen)
  blur = lambda images: losses.blur(images, sigma, train.blur_sigma)
  image = batch['image']
  raw_res = config.model.neural_resolution
  real_raw = blur(jax.image.resize(image, (image.shape[0], raw_res, raw_res, 3), 'linear', antialias=True))
  real_image = blur(image)

  def loss_fn(d_params):
    discriminator = models.discriminator(d_params, models.d_rest)
    fake_logits = discriminator(blur(fake['image']), fake['image_raw'], batch['label'])
    real_logits = discriminator(real_image, real_raw, batch['label'])
    loss = losses.discriminator_loss_fake(fake_logits) + losses.discriminator_loss_real(real_logits)
    return loss, (fake_logits, real_logits)

  return loss_fn, (real_image, real_raw)


def test_d_main_without_view_consistency_is_the_plain_fake_plus_real_update(stand_in):
  config, models, state, batch = stand_in
  rng = jax.random.key(5)
  new, metrics = jax.jit(_d_main(models, config, 0.0))(state, batch, rng, models.g_rest, models.d_rest)
  loss_fn, _ = _plain_d_main_loss(models, config, state, batch, rng)
  grads, (fake_logits, real_logits) = jax.jit(jax.grad(loss_fn, has_aux=True))(state.d_params)
  expected, _ = steps_lib._apply(models.tx_d, grads, state.d_opt_state, state.d_params)
  np.testing.assert_allclose(metrics['d/grad_norm'], optax.tree.norm(grads), rtol=1e-6)
  np.testing.assert_allclose(metrics['d/score_fake'], np.mean(fake_logits), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(metrics['d/score_real'], np.mean(real_logits), rtol=1e-6, atol=1e-7)
  for got, want in zip(jax.tree.leaves(new.d_params), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)  # separate programs: float roundoff only
  assert 'd/loss_view' not in metrics and int(new.step) == 1


def test_d_main_with_view_consistency_adds_the_weighted_term_on_reals_with_wrong_cameras(stand_in):
  config, models, state, batch = stand_in
  rng, weight = jax.random.key(5), 0.5
  _, metrics = jax.jit(_d_main(models, config, weight))(state, batch, rng, models.g_rest, models.d_rest)
  np.testing.assert_allclose(
    metrics['d/loss'], metrics['d/loss_fake'] + metrics['d/loss_real'] + weight * metrics['d/loss_view'], rtol=1e-6
  )
  # The third call: the blurred reals with mismatched_labels drawn from the third d_main key.
  _, (real_image, real_raw) = _plain_d_main_loss(models, config, state, batch, rng)
  wrong = camera.mismatched_labels(steps_lib._phase_keys(rng, state.step, 'd_main', 3)[2], batch['label'])
  mismatched = models.discriminator(state.d_params)(real_image, real_raw, wrong)
  np.testing.assert_allclose(metrics['d/score_mismatched'], np.mean(mismatched), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics['d/loss_view'], losses.view_consistency_loss(mismatched), rtol=1e-5)
  if jax.config.jax_threefry_partitionable:  # JAX's default: split(k, 3)[:2] == split(k, 2), the fakes are unchanged
    _, plain = jax.jit(_d_main(models, config, 0.0))(state, batch, rng, models.g_rest, models.d_rest)
    for name in ('d/loss_fake', 'd/loss_real', 'd/score_fake', 'd/score_real'):
      np.testing.assert_allclose(metrics[name], plain[name], rtol=1e-6, atol=1e-7, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# toy learning: D learns that an image must agree with its camera

RES = 16
LABELS = np.concatenate([camera.dataset_cameras(), np.zeros((72, 52), np.float32)], -1)
TRAIN_VIEWS = np.array([i for i in range(72) if i % 4])
HELD_OUT_VIEWS = np.array([i for i in range(72) if i % 4 == 0])  # 18 views never trained on


def _view_images(views: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """(b, 16, 16, 3) in [-1, 1]-ish: a bright blob on dark at (col, row) = 7.5 + 5 (sin yaw, cos yaw), plus noise.

  The blob's position identifies the camera yaw (a circle over the full turn), so a yaw offset of
  90-270 deg moves it by at least 7 pixels.
  """
  yaw = np.radians(_yaw_deg(LABELS[views, :16].reshape(-1, 4, 4)))
  col, row = 7.5 + 5 * np.sin(yaw), 7.5 + 5 * np.cos(yaw)
  grid = np.arange(RES)
  d2 = (grid[None, None, :] - col[:, None, None]) ** 2 + (grid[None, :, None] - row[:, None, None]) ** 2
  image = -1 + 2 * np.exp(-d2 / 8.0)
  return (image[..., None] + 0.1 * rng.normal(size=(len(views), RES, RES, 3))).astype(np.float32)


def test_toy_discriminator_learns_that_the_image_must_agree_with_its_camera():
  graphdef, params = _tiny_discriminator(0)
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  def loss_fn(p, image, label, key):
    wrong = camera.mismatched_labels(key, label)
    real = losses.discriminator_loss_real(_logits(graphdef, p, image, label))
    return real + losses.view_consistency_loss(_logits(graphdef, p, image, wrong))

  @jax.jit
  def train_step(p, opt_state, image, label, key):
    loss, grads = jax.value_and_grad(loss_fn)(p, image, label, key)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  @jax.jit
  def margin(p, image, label, key):
    """Mean logit with the true cameras minus mean logit with wrong ones."""
    wrong = camera.mismatched_labels(key, label)
    return jnp.mean(_logits(graphdef, p, image, label)) - jnp.mean(_logits(graphdef, p, image, wrong))

  held_out = np.repeat(HELD_OUT_VIEWS, 4)
  held_out_images = _view_images(held_out, np.random.default_rng(1))
  held_out_key = jax.random.key(99)
  before = float(margin(params, held_out_images, LABELS[held_out], held_out_key))

  rng = np.random.default_rng(0)
  for step in range(300):
    views = rng.choice(TRAIN_VIEWS, 32)
    params, opt_state, loss = train_step(
      params, opt_state, _view_images(views, rng), LABELS[views], jax.random.key(step)
    )
  after = float(margin(params, held_out_images, LABELS[held_out], held_out_key))
  print(f'held-out logit margin true - mismatched camera: before {before:.3f}, after {after:.3f}; last loss {loss:.3f}')
  assert abs(before) < 0.5
  assert after > 2.0 and after > 10 * abs(before)
