"""RefineNet (pix2pixHD global generator, multi-scale PatchGAN, losses, step) against float64 numpy references.

The references below are written from PyTorch's documented layer semantics (``ReflectionPad2d``,
``Conv2d``, ``ConvTranspose2d``, ``InstanceNorm2d``, ``AvgPool2d(count_include_pad=False)``) as
direct loops, independently of the module's sub-pixel and space-to-depth convolutions.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.metrics import lpips as lpips_lib
from head360_jax.models import refine

TINY = refine.RefineConfig(ngf=8, n_downsampling=2, n_blocks=2, ndf=8, n_layers_d=3, num_d=2)


@pytest.fixture(scope='module')
def vgg():
  return lpips_lib.load_lpips('vgg')


def _np_conv(x, kernel, bias, stride=1, pad=0, mode='constant'):
  """torch Conv2d on NHWC float64: pad (zeros or 'reflect'), then a direct strided cross-correlation."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
  k = kernel.shape[0]
  rows, cols = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], rows, cols, kernel.shape[3]))
  for a in range(k):
    for c in range(k):
      patch = x[:, a : a + stride * (rows - 1) + 1 : stride, c : c + stride * (cols - 1) + 1 : stride]
      out += np.einsum('bhwi,io->bhwo', patch, kernel[a, c])
  return out + bias


def _np_conv_transpose(x, kernel, bias, stride=2, pad=1, output_padding=1):
  """torch ConvTranspose2d by definition: pixel (i, j) adds ``x[i, j] @ W[a, c]`` at ``(s i - p + a, s j - p + c)``."""
  b, h, w, _ = x.shape
  k = kernel.shape[0]
  rows, cols = (h - 1) * stride - 2 * pad + k + output_padding, (w - 1) * stride - 2 * pad + k + output_padding
  full = np.zeros((b, rows + 2 * pad + k, cols + 2 * pad + k, kernel.shape[3]))
  for i in range(h):
    for j in range(w):
      full[:, stride * i : stride * i + k, stride * j : stride * j + k] += np.einsum(
        'bi,acio->baco', x[:, i, j], kernel
      )
  return full[:, pad : pad + rows, pad : pad + cols] + bias


def _np_instance_norm(x, eps=1e-5):
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
  return (x - mean) / np.sqrt(var + eps)


def _np_avg_pool(x):
  """AvgPool2d(3, 2, padding=1, count_include_pad=False): mean of the in-image pixels of each window."""
  b, h, w, c = x.shape
  rows, cols = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
  out = np.zeros((b, rows, cols, c))
  for i in range(rows):
    for j in range(cols):
      r0, r1, c0, c1 = max(2 * i - 1, 0), min(2 * i + 2, h), max(2 * j - 1, 0), min(2 * j + 2, w)
      out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return out


def _np_params(conv):
  return np.asarray(conv.kernel[...], np.float64), np.asarray(conv.bias[...], np.float64)


def _image(key, shape=(2, 32, 32, 3)):
  return jnp.tanh(jax.random.normal(jax.random.key(key), shape))


def test_reflect_pad_and_instance_norm_match_torch_semantics():
  row = refine.reflect_pad(jnp.arange(4.0).reshape(1, 1, 4, 1) * jnp.ones((1, 4, 1, 1)), 2)[0, 0, :, 0]
  np.testing.assert_array_equal(row, [2, 1, 0, 1, 2, 3, 2, 1])  # the edge pixel is not repeated
  x = np.random.default_rng(0).normal(size=(2, 5, 6, 3)) * [1.0, 3.0, 0.1] + [0.0, -2.0, 5.0]
  y = refine.instance_norm(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(y, _np_instance_norm(x), atol=1e-5)
  np.testing.assert_allclose(np.asarray(y).mean(axis=(1, 2)), 0.0, atol=1e-5)


def test_residual_block_matches_numpy():
  block = refine.ResnetBlock(32, rngs=nnx.Rngs(0))  # TINY's block width
  for conv in (block.conv1, block.conv2):  # larger than the N(0, 0.02) init, so the branch matters
    conv.kernel[...] = conv.kernel[...] * 10
  x = np.random.default_rng(1).normal(size=(2, 7, 5, 32))
  (k1, b1), (k2, b2) = _np_params(block.conv1), _np_params(block.conv2)
  branch = np.maximum(_np_instance_norm(_np_conv(x, k1, b1, pad=1, mode='reflect')), 0)
  expected = x + _np_instance_norm(_np_conv(branch, k2, b2, pad=1, mode='reflect'))
  got = jax.jit(lambda v: block(v))(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
  assert np.abs(expected - x).mean() > 0.1


@pytest.mark.parametrize('shape', [(2, 4, 4, 3), (1, 5, 6, 2)])
def test_transposed_conv_matches_torch_conv_transpose(shape):
  rng = np.random.default_rng(2)
  x, kernel, bias = rng.normal(size=shape), rng.normal(size=(3, 3, shape[3], 4)), rng.normal(size=(4,))
  got = jax.jit(refine.conv_transpose_up2)(*(jnp.asarray(a, jnp.float32) for a in (x, kernel, bias)))
  assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
  np.testing.assert_allclose(got, _np_conv_transpose(x, kernel, bias), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(('stride', 'pad', 'k'), [(2, 1, 3), (2, 2, 4), (1, 2, 4)])
def test_conv_matches_torch_conv(stride, pad, k):
  rng = np.random.default_rng(3)
  x, kernel, bias = rng.normal(size=(2, 9, 8, 3)), rng.normal(size=(k, k, 3, 5)), rng.normal(size=(5,))
  got = jax.jit(refine.conv, static_argnums=(3, 4))(
    *(jnp.asarray(a, jnp.float32) for a in (x, kernel, bias)), stride, pad
  )
  np.testing.assert_allclose(got, _np_conv(x, kernel, bias, stride, pad), atol=1e-5, rtol=1e-5)


def test_generator_shapes_range_and_parameter_count():
  generator = refine.GlobalGenerator(TINY, rngs=nnx.Rngs(0))
  x = _image(0) * 3  # well outside [-1, 1]: tanh still bounds the output
  y = jax.jit(lambda v: generator(v))(x)
  assert y.shape == x.shape and y.dtype == jnp.float32
  assert np.all(np.abs(y) < 1) and np.std(y) > 0
  # sum of k*k*i*o + o: 7x7 3->8, 3x3 8->16->32, 2 blocks x 2 convs 32->32, 3x3 32->16->8, 7x7 8->3.
  expected = 49 * 3 * 8 + 8 + 9 * 8 * 16 + 16 + 9 * 16 * 32 + 32 + 4 * (9 * 32 * 32 + 32)
  expected += 9 * 32 * 16 + 16 + 9 * 16 * 8 + 8 + 49 * 8 * 3 + 3
  assert sum(p.size for p in jax.tree.leaves(nnx.state(generator, nnx.Param))) == expected
  with pytest.raises(ValueError, match='multiples'):
    generator(x[:, :30, :30])
  with pytest.raises(ValueError, match='positive'):
    refine.RefineConfig(ngf=0)


def test_avg_pool_excludes_padding():
  x = np.random.default_rng(4).normal(size=(2, 7, 8, 3)) + 5.0
  got = jax.jit(refine.avg_pool_down2)(jnp.asarray(x, jnp.float32))
  assert got.shape == (2, 4, 4, 3)
  np.testing.assert_allclose(got, _np_avg_pool(x), rtol=1e-6)


def _np_patchgan(scale, x):
  """NLayerDiscriminator in float64: conv s2 + lrelu; n-1 conv s2 + IN + lrelu; conv s1 + IN + lrelu; conv s1."""
  out, last = [], len(scale.convs) - 1
  for index, conv in enumerate(scale.convs):
    x = _np_conv(x, *_np_params(conv), stride=2 if index < last - 1 else 1, pad=2)
    if index < last:
      x = x if index == 0 else _np_instance_norm(x)
      x = np.where(x > 0, x, 0.2 * x)
    out.append(x)
  return out


def test_multiscale_discriminator_matches_numpy():
  discriminator = refine.MultiscaleDiscriminator(dataclasses.replace(TINY, num_d=3), rngs=nnx.Rngs(0))
  condition, image = _image(1, (2, 32, 32, 3)), _image(2, (2, 32, 32, 3))
  got = jax.jit(lambda c, i: discriminator(c, i))(condition, image)
  x = np.concatenate([np.asarray(condition, np.float64), np.asarray(image, np.float64)], axis=-1)
  sides = {0: [17, 9, 5, 6, 7], 1: [9, 5, 3, 4, 5], 2: [5, 3, 2, 3, 4]}  # s2: n // 2 + 1; s1: n + 1
  assert len(got) == 3
  for index, (scale, features) in enumerate(zip(discriminator.scales, got, strict=True)):
    if index:
      x = _np_avg_pool(x)
    assert [f.shape for f in features] == [(2, n, n, c) for n, c in zip(sides[index], [8, 16, 32, 64, 1], strict=True)]
    for f, expected in zip(features, _np_patchgan(scale, x), strict=True):
      np.testing.assert_allclose(f, expected, atol=2e-5, rtol=1e-4)
  with pytest.raises(ValueError, match='share'):
    discriminator(condition, image[:, :16, :16])


def test_discriminator_channels_capped_at_512():
  scale = nnx.eval_shape(lambda: refine.NLayerDiscriminator(6, 256, 3, rngs=nnx.Rngs(0)))
  assert [c.kernel.shape for c in scale.convs] == [
    (4, 4, *io) for io in [(6, 256), (256, 512), (512, 512), (512, 512), (512, 1)]
  ]


def test_lsgan_and_feature_matching_losses():
  ones = [[jnp.full((2, 3, 3, 4), 0.3), jnp.ones((2, 5, 5, 1))], [jnp.full((2, 2, 2, 4), -1.0), jnp.ones((2, 3, 3, 1))]]
  zeros = [[f, jnp.zeros_like(s)] for f, s in ones]
  assert refine.lsgan_loss(ones, True) == 0 and refine.lsgan_loss(zeros, False) == 0
  halves = [[f, jnp.full_like(s, 0.5)] for f, s in ones]
  np.testing.assert_allclose(refine.lsgan_loss(halves, True), 2 * 0.25)  # summed over the 2 scales
  np.testing.assert_allclose(refine.lsgan_loss(ones, False), 2.0)
  assert refine.feature_matching_loss(ones, ones) == 0
  # Each non-score map off by 0.1 (the scores differ too, but are not matched): n_layers = 0 here.
  shifted = [[f + 0.1, s * 7] for f, s in ones]
  np.testing.assert_allclose(refine.feature_matching_loss(shifted, ones), 10 * 2 * (1 / 2) * (4 / 1) * 0.1, rtol=1e-5)
  grad_real = jax.grad(lambda r: refine.feature_matching_loss(shifted, r))(ones)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grad_real))


def test_vgg_loss(vgg, fast_compile):
  x, y = _image(3, (1, 32, 32, 3)), _image(4, (1, 32, 32, 3))
  loss = jax.jit(refine.vgg_loss)
  assert float(loss(vgg, x, x)) == 0
  assert float(loss(vgg, x, y)) > 1.0
  grad_x, grad_y = jax.jit(jax.grad(refine.vgg_loss, argnums=(1, 2)))(vgg, x, y)
  assert float(jnp.abs(grad_x).max()) > 0 and float(jnp.abs(grad_y).max()) == 0  # the target's features are fixed
  with pytest.raises(ValueError, match='16'):
    refine.vgg_loss(vgg, x[:, :8, :8], y[:, :8, :8])
  with pytest.raises(TypeError, match='LpipsVggParams'):
    refine.vgg_loss(lpips_lib.load_lpips('alex'), x, y)


def _box_blur(x, radius=2):
  padded = np.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='edge')
  n = 2 * radius + 1
  return sum(padded[:, a : a + x.shape[1], c : c + x.shape[2]] for a in range(n) for c in range(n)) / n**2


def test_refine_steps_reduce_generator_l1(vgg, fast_compile):
  """Adam steps on one (blurred target, target) pair lower the generator's L1 error; everything stays finite.

  The steps run without the VGG term (its backward pass doubles the compile time); with it the
  step must still trace to the same state structure. ``test_vgg_loss`` checks that term.
  """
  yy, xx = np.meshgrid(np.linspace(-1, 1, 16), np.linspace(-1, 1, 16), indexing='ij')
  target = np.stack([np.sin(5 * xx + 2 * yy), np.cos(4 * yy - 3 * xx), np.sin(6 * xx * yy)], -1)[None] * 0.8
  batch = {'condition': jnp.asarray(_box_blur(target), jnp.float32), 'real': jnp.asarray(target, jnp.float32)}
  # A small net (fewer ops to compile) and 5x pix2pixHD's learning rate, so that 5 steps show the descent.
  config = refine.RefineConfig(ngf=8, n_downsampling=1, n_blocks=1, ndf=8, n_layers_d=2, learning_rate=1e-3)
  state = refine.create_refine_state(config, nnx.Rngs(0))
  with_vgg = jax.eval_shape(refine.refine_step, state, batch, vgg)
  assert jax.tree.structure(with_vgg) == jax.tree.structure(jax.eval_shape(refine.refine_step, state, batch, None))
  step = jax.jit(refine.refine_step)
  history = []
  for _ in range(5):
    state, metrics = step(state, batch, None)
    history.append({k: float(v) for k, v in metrics.items()})
  assert int(state.step) == 5 and history[0]['g/loss_vgg'] == 0
  assert all(np.isfinite(list(m.values())).all() for m in history)
  assert history[0]['g/grad_norm'] > 0 and history[0]['d/grad_norm'] > 0
  assert all(np.isfinite(p).all() for p in jax.tree.leaves((state.g_params, state.d_params)))
  l1 = [m['g/l1'] for m in history]
  assert l1[-1] < 0.9 * l1[0], l1
  # The discriminator learns to tell the pair apart: its loss falls too.
  assert history[-1]['d/loss'] < history[0]['d/loss']
