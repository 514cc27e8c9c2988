"""Small stand-in generator and discriminator with the real ones' calling conventions, for training tests.

Legend: ``b`` batch, ``H`` output resolution, ``r`` raw resolution, ``n`` density points.

The stand-ins have a few conv layers each, a layer list (integer keys in the parameter
dict), a non-``Param`` constant (``g_rest``), random noise from the step key and a
``w_avg`` statistic, so they exercise every path the real networks take through the
training stack.
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from head360_jax.training import state as state_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]


class NoiseConst(nnx.Variable):
  """A fixed buffer (not trained), like StyleGAN2's constant noise."""


class StandInGenerator(nnx.Module):
  """``generator(inputs, *, key) -> {image, image_raw, image_depth, image_alpha}``; ``density(inputs, points, key)``."""

  def __init__(self, *, z_dim: int, w_dim: int, raw_res: int, out_res: int, rngs: nnx.Rngs):
    self.raw_res, self.out_res, self.width = raw_res, out_res, 8
    self.mapping = nnx.Linear(2 * z_dim + 25, w_dim, rngs=rngs)
    self.to_features = nnx.Linear(w_dim + 3, raw_res * raw_res * self.width, rngs=rngs)
    self.convs = nnx.List([nnx.Conv(self.width, self.width, (3, 3), rngs=rngs) for _ in range(2)])
    self.to_rgb = nnx.Conv(self.width, 3, (1, 1), rngs=rngs)
    self.density_head = nnx.Linear(w_dim + 3, 1, rngs=rngs)
    self.noise_const = NoiseConst(jax.random.normal(rngs.params(), (raw_res, raw_res, 1)))

  def mapping_w(self, inputs: dict) -> jax.Array:
    return jax.nn.leaky_relu(self.mapping(jnp.concatenate([inputs['t'], inputs['h'], inputs['c_cond']], -1)))

  def __call__(self, inputs: dict, *, key: jax.Array) -> dict:
    w = self.mapping_w(inputs)
    b = w.shape[0]
    centre = jnp.mean(inputs['vertices'], axis=1)
    x = self.to_features(jnp.concatenate([w, centre], -1)).reshape(b, self.raw_res, self.raw_res, self.width)
    x = x + 0.1 * self.noise_const[...] + 0.05 * jax.random.normal(key, x.shape[:3] + (1,))
    x = jax.nn.leaky_relu(self.convs[0](x))
    image_raw = jnp.tanh(self.to_rgb(x))
    up = jax.image.resize(x, (b, self.out_res, self.out_res, self.width), 'linear')
    image = jnp.tanh(self.to_rgb(jax.nn.leaky_relu(self.convs[1](up))))
    alpha = jax.nn.sigmoid(jnp.mean(x, -1, keepdims=True))
    return {'image': image, 'image_raw': image_raw, 'image_depth': jnp.mean(x, -1, keepdims=True), 'image_alpha': alpha}

  def density(self, inputs: dict, points: jax.Array, *, key: jax.Array) -> jax.Array:
    w = self.mapping_w(inputs)
    w = jnp.broadcast_to(w[:, None], (*points.shape[:2], w.shape[-1]))
    features = jnp.concatenate([w, jnp.sin(4 * points)], -1)
    return jax.nn.softplus(self.density_head(features)) + 0 * jax.random.normal(key, ())


class StandInDiscriminator(nnx.Module):
  """``discriminator(image (b, H, H, 3), image_raw (b, r, r, 3), label (b, 77)) -> logits (b, 1)``."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv0 = nnx.Conv(6, 8, (3, 3), strides=2, rngs=rngs)
    self.conv1 = nnx.Conv(8, 8, (3, 3), strides=2, rngs=rngs)
    self.out = nnx.Linear(8, 8, rngs=rngs)
    self.embed = nnx.Linear(77, 8, rngs=rngs)

  def __call__(self, image: jax.Array, image_raw: jax.Array, label: jax.Array) -> jax.Array:
    raw = jax.image.resize(image_raw, image.shape, 'linear')
    x = jax.nn.leaky_relu(self.conv0(jnp.concatenate([image, raw], -1)), 0.2)
    x = jnp.mean(jax.nn.leaky_relu(self.conv1(x), 0.2), axis=(1, 2))
    return jnp.sum(self.out(x) * self.embed(label), -1, keepdims=True) / np.sqrt(8)


def build_models(config: ml_collections.ConfigDict) -> state_lib.Networks:
  """A stand-in for ``head360_jax.training.build.build_models``."""
  model = config.model
  rngs = nnx.Rngs(config.train.seed)
  generator = StandInGenerator(
    z_dim=model.z_dim, w_dim=model.w_dim, raw_res=model.neural_resolution, out_res=model.output_resolution, rngs=rngs
  )
  table = jax.random.normal(jax.random.key(model.codes_seed), (2, 16, model.z_dim))

  def codes(batch):
    return {'t': table[0, batch['identity']], 'h': table[1, batch['identity']]}

  def stats_update(generator, g_stats, inputs, key):
    del key
    w_mean = jnp.mean(generator.mapping_w(inputs), axis=0)
    return {'w_avg': w_mean + (g_stats['w_avg'] - w_mean) * 0.998}

  return state_lib.Networks(
    generator=generator,
    discriminator=StandInDiscriminator(rngs=rngs),
    codes=codes,
    g_stats={'w_avg': jnp.zeros((model.w_dim,))},
    stats_update=stats_update,
  )


def tiny_config(**train_overrides) -> ml_collections.ConfigDict:
  """``configs/tiny.py`` shrunk to the fake dataset: 16² images, 8² raw, batch 4, short intervals."""
  if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
  from configs import tiny

  config = tiny.get_config()
  config.model.z_dim = 8
  config.model.w_dim = 16
  config.model.neural_resolution = 8
  config.model.output_resolution = 16
  config.data.resolution = 16
  config.data.num_threads = 0
  train = config.train
  train.batch_size = 4
  train.steps = 6
  train.r1_interval = 4
  train.density_reg_interval = 2
  train.density_reg_points = 16
  train.blur_fade_kimg = 0.01  # blur active over the first steps, so the fade path runs
  train.blur_sigma = 1.0
  train.gpc_fade_kimg = 0.01
  train.log_every = 1
  train.sample_every = 3
  train.checkpoint_every = 3
  train.eval_every = 0  # the stand-in renders are too small for LPIPS; end_to_end_test covers evaluation
  train.update(train_overrides)
  return config
