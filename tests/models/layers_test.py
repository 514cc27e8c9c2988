"""StyleGAN2 layers vs the PyTorch goldens (outputs and input gradients), plus properties of the math."""

import math

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.models import layers, synthesis

_to_nhwc, _to_nchw = golden.nchw_to_nhwc, golden.nhwc_to_nchw


@pytest.mark.parametrize('name', ['upfirdn2d_up2', 'upfirdn2d_down2'])
def test_fir_resampling_matches_golden(name):
  arrays, meta = golden.load_golden(name)
  resample = layers.upsample2d if name.endswith('up2') else layers.downsample2d
  golden.check_golden(lambda x: {'y': _to_nchw(resample(_to_nhwc(x), layers.setup_filter()))}, arrays, meta, ('x',))


def test_fir_filter_and_constant_image():
  f = layers.setup_filter()
  np.testing.assert_allclose(np.outer(f, f), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64)
  x = jnp.full((1, 8, 8, 2), 0.7)
  up = layers.upsample2d(x, f)
  down = layers.downsample2d(up, f)
  # Away from the zero-padded border a constant stays the constant, up and then down.
  np.testing.assert_allclose(up[:, 2:-2, 2:-2], 0.7, rtol=1e-6)
  np.testing.assert_allclose(down[:, 2:-2, 2:-2], 0.7, rtol=1e-6)


def test_dense_matches_golden_fc_lrmul():
  arrays, meta = golden.load_golden('fc_lrmul')
  factory = lambda: layers.EqualizedDense(16, 8, lr_multiplier=0.01, activation='lrelu', rngs=nnx.Rngs(0))
  dense = golden.build(factory, golden.params_with_prefix(arrays))
  golden.check_golden(lambda x: {'y': dense(x)}, arrays, meta, ('x',))


def test_bias_act_gain_and_clamp():
  x = jnp.array([[-2.0, 3.0]])
  np.testing.assert_allclose(layers.bias_act(x, None, 'lrelu'), [[-0.4 * math.sqrt(2), 3 * math.sqrt(2)]], rtol=1e-6)
  np.testing.assert_allclose(layers.bias_act(x, jnp.array([1.0, 0.0]), 'linear', clamp=2.5), [[-1.0, 2.5]])
  with pytest.raises(ValueError, match='activation'):
    layers.bias_act(x, None, 'relu')


def test_resize_bilinear_matches_torch_interpolate():
  arrays, meta = golden.load_golden('resize_bilinear_aa')

  def fn(x20, x64):
    resize = lambda x, size, aa: _to_nchw(layers.resize_bilinear(_to_nhwc(x), size, antialias=aa))
    return {
      'up20_to_64_aa': resize(x20, 64, True),
      'up64_to_128_aa': resize(x64, 128, True),
      'down64_to_27_aa': resize(x64, 27, True),
      'down64_to_27_noaa': resize(x64, 27, False),
      'up64_to_128_noaa': resize(x64, 128, False),
    }

  golden.check_golden(fn, arrays, meta, ('x20', 'x64'))


def test_equalized_conv2d_matches_golden_disc_block_layers():
  """fromrgb (1x1), conv0 (3x3) and conv1 (3x3, down 2, gain sqrt 0.5) with active +-256 clamps."""
  arrays, meta = golden.load_golden('disc_block_resnet')
  conv = lambda name, *args, **kwargs: golden.build(
    lambda: layers.EqualizedConv2d(*args, activation='lrelu', conv_clamp=256, **kwargs, rngs=nnx.Rngs(0)),
    golden.params_with_prefix(arrays, f'{name}.'),
  )
  fromrgb, conv0, conv1 = conv('fromrgb', 6, 16, 1), conv('conv0', 16, 16, 3), conv('conv1', 16, 32, 3, down=2)
  x = fromrgb(_to_nhwc(arrays['in/img_large']))
  golden.assert_close(_to_nchw(x), meta, arrays, 'out/debug_large_fromrgb')
  x = conv0(x)
  golden.assert_close(_to_nchw(x), meta, arrays, 'out/debug_large_conv0')
  golden.assert_close(_to_nchw(conv1(x, gain=math.sqrt(0.5))), meta, arrays, 'out/debug_large_conv1')


@pytest.mark.parametrize('name', ['synthesis_layer', 'synthesis_layer_up'])
def test_synthesis_layer_matches_golden(name):
  arrays, meta = golden.load_golden(name)
  args = meta['constructor_args']
  channels = args['in_channels'], args['out_channels'], args['w_dim'], args['resolution']
  factory = lambda: synthesis.SynthesisLayer(*channels, up=args['up'], rngs=nnx.Rngs(0))
  layer = golden.build(factory, golden.params_with_prefix(arrays))
  golden.check_golden(lambda x, w: {'y': _to_nchw(layer(_to_nhwc(x), w, noise_mode='const'))}, arrays, meta, ('x', 'w'))


def test_torgb_matches_golden():
  arrays, meta = golden.load_golden('torgb')
  torgb = golden.build(lambda: synthesis.ToRGBLayer(16, 3, 64, rngs=nnx.Rngs(0)), golden.params_with_prefix(arrays))
  golden.check_golden(lambda x, w: {'y': _to_nchw(torgb(_to_nhwc(x), w, fused_modconv=True))}, arrays, meta, ('x', 'w'))


@pytest.mark.parametrize('name', ['synthesis_block_skip', 'synthesis_block_clamp256'])
def test_synthesis_block_matches_golden(name):
  arrays, meta = golden.load_golden(name)
  args = meta['constructor_args']
  sizes = [args[k] for k in ('in_channels', 'out_channels', 'w_dim', 'resolution', 'img_channels')]
  factory = lambda: synthesis.SynthesisBlock(*sizes, conv_clamp=args['conv_clamp'], rngs=nnx.Rngs(0))
  block = golden.build(factory, golden.params_with_prefix(arrays))

  def fn(x, img, ws):
    x, img = block(_to_nhwc(x), _to_nhwc(img), ws, noise_mode='const')
    return {'x': _to_nchw(x), 'img': _to_nchw(img)}

  golden.check_golden(fn, arrays, meta, ('x', 'img', 'ws'))


@pytest.mark.parametrize('up', [1, 2])
@pytest.mark.parametrize('demodulate', [True, False])
def test_fused_and_non_fused_modulated_conv_agree(up, demodulate):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3, 8, 8, 5), np.float32)
  weight = rng.standard_normal((3, 3, 5, 7), np.float32)
  styles = rng.standard_normal((3, 5), np.float32) + 1.0
  run = lambda fused: layers.modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, padding=1, fused=fused)
  np.testing.assert_allclose(run(True), run(False), rtol=1e-5, atol=1e-5)
  assert run(False).shape == (3, 8 * up, 8 * up, 7)


def test_demodulated_conv_keeps_unit_variance():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((4, 32, 32, 64), np.float32)
  weight = rng.standard_normal((3, 3, 64, 32), np.float32)
  styles = rng.uniform(0.2, 3.0, (4, 64)).astype(np.float32)
  y = layers.modulated_conv2d(x, weight, styles, padding=1)[:, 1:-1, 1:-1]  # interior: no zero padding
  np.testing.assert_allclose(jnp.var(y, axis=(0, 1, 2)), 1.0, atol=0.1)


def test_synthesis_layer_noise_modes():
  layer = synthesis.SynthesisLayer(4, 4, 8, 8, rngs=nnx.Rngs(0))
  layer.noise_strength[...] = 0.5
  x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((2, 8))
  const = layer(x, w, noise_mode='const')
  np.testing.assert_array_equal(const, layer(x, w, noise_mode='const'))
  first = layer(x, w, noise_mode='random', key=jax.random.key(1))
  np.testing.assert_array_equal(first, layer(x, w, noise_mode='random', key=jax.random.key(1)))
  assert not np.allclose(first, layer(x, w, noise_mode='random', key=jax.random.key(2)))
  assert not np.allclose(first, layer(x, w, noise_mode='none'))
  with pytest.raises(ValueError, match='PRNG key'):
    layer(x, w, noise_mode='random')
  with pytest.raises(ValueError, match='noise_mode'):
    layer(x, w, noise_mode='fixed')


def test_noise_const_is_a_buffer_not_a_parameter():
  layer = synthesis.SynthesisLayer(4, 6, 8, 16, rngs=nnx.Rngs(0))
  assert layers.parameter_count(layer) == 8 * 4 + 4 + 3 * 3 * 4 * 6 + 1 + 6
  assert nnx.state(layer, layers.Buffer)['noise_const'][...].shape == (16, 16)
