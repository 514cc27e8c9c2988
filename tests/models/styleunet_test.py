"""StyleUNet: reference-size parameter counts (reference-spec §7), layout, conditioning, styles, gradients."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_generator
from flax import nnx

from head360_jax.models import layers, styleunet


def _tiny(**overrides):
  args = dict(w_dim=8, in_size=16, final_size=4, in_channels=3, out_channels=5, output_resolution=32)
  args.update(overrides)
  kwargs = dict(channel_base=128, channel_max=16, num_cond_res=args.pop('num_cond_res', 16))
  return lambda: styleunet.StyleUNet(**args, **kwargs, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
  'in_size, final_size, num_cond_res, expected_m',
  [(64, 4, 64, 60.6), (256, 64, 256, 8.8)],
  ids=['mouth', 'blending'],
)
def test_reference_parameter_counts(in_size, final_size, num_cond_res, expected_m):
  net = nnx.eval_shape(
    lambda: styleunet.StyleUNet(512, in_size, final_size, 32, 32, num_cond_res=num_cond_res, rngs=nnx.Rngs(0))
  )
  count = layers.parameter_count(net)
  assert abs(count / 1e6 - expected_m) / expected_m < 0.02, count
  assert net.num_ws == 14


def test_mouth_layout_creates_only_used_blocks():
  net = nnx.eval_shape(lambda: styleunet.StyleUNet(512, 64, 4, 32, 32, num_cond_res=64, rngs=nnx.Rngs(0)))
  assert net.encoder_resolutions == (64, 32, 16, 8)
  assert net.fused_resolutions == (4, 8, 16, 32)
  assert net.decoder_resolutions == (8, 16, 32, 64, 128, 256)
  assert not hasattr(net, 'b4') and not hasattr(net, 'fuse64')
  assert net.enc64.fromrgb.bias is None and net.enc64.fromrgb.weight.shape == (1, 1, 32, 512)
  assert net.enc8.conv2.weight.shape == (3, 3, 512, 512)
  assert net.fuse4.weight.shape == (3, 3, 512, 512) and net.fuse8.weight.shape == (3, 3, 1024, 512)
  blend = nnx.eval_shape(lambda: styleunet.StyleUNet(512, 256, 64, 32, 32, num_cond_res=256, rngs=nnx.Rngs(0)))
  assert blend.encoder_resolutions == (256, 128) and blend.decoder_resolutions == (128, 256)
  assert blend.enc256.conv2.weight.shape == (3, 3, 128, 256) and blend.fuse128.weight.shape == (3, 3, 512, 256)


def test_shapes_conditioning_and_style_slots():
  net = golden.random_build(_tiny())
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
  ws = rng.standard_normal((2, net.num_ws, 8)).astype(np.float32)
  out = net(x, ws, noise_mode='const')
  assert out.shape == (2, 32, 32, 5) and net.num_ws == 8
  assert np.all(np.isfinite(out))
  # Per-sample: changing sample 1's condition changes only sample 1.
  x2 = x.copy()
  x2[1, 4:8, 4:8] += 1.0
  out2 = net(x2, ws, noise_mode='const')
  np.testing.assert_array_equal(out2[0], out[0])
  assert np.abs(out2[1] - out[1]).max() > 1e-3
  # Slot 0 belongs to the skipped b4 and is never read; slot 1 (b8's conv0) is.
  ws0, ws1 = ws.copy(), ws.copy()
  ws0[:, 0] += 5.0
  ws1[:, 1] += 5.0
  np.testing.assert_array_equal(net(x, ws0, noise_mode='const'), out)
  assert np.abs(net(x, ws1, noise_mode='const') - out).max() > 1e-3
  # Unconditioned top blocks (num_cond_res 8 < in_size): only features at 4 enter the decoder.
  top = golden.random_build(_tiny(num_cond_res=8))
  assert top.fused_resolutions == (4,) and top(x, ws, noise_mode='none').shape == (2, 32, 32, 5)
  with pytest.raises(ValueError, match='ws'):
    net(x, ws[:, :-1], noise_mode='none')
  with pytest.raises(ValueError, match='x'):
    net(x[:, :8], ws, noise_mode='none')
  with pytest.raises(ValueError, match='PRNG'):
    net(x, ws)
  with pytest.raises(ValueError, match='num_cond_res'):
    _tiny(num_cond_res=32)()


def test_gradients_reach_every_parameter_and_the_input():
  net = golden.random_build(_tiny(in_size=32, final_size=8, num_cond_res=32))
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 32, 32, 3)), jnp.float32)
  ws = jnp.asarray(rng.standard_normal((2, net.num_ws, 8)), jnp.float32)

  def loss(params, x):
    out = nnx.merge(graphdef, params, rest)(x, ws, key=jax.random.key(0))
    return jnp.mean(out**2)

  grads, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(leaf)), path
    assert np.abs(leaf).max() > 0, path
  assert np.abs(g_x).max() > 0


def test_generator_with_mouth_and_blending_unets_refines_only_the_front_view(fast_compile):
  from head360_jax.geometry import camera
  from head360_jax.models import generator as generator_lib
  from head360_jax.rendering import hexplane_views

  sizes = tiny_generator.SIZES
  mesh = tiny_generator.sphere_mesh()
  off = tiny_generator.random_generator(generator_lib.GeneratorConfig(**sizes), mesh)
  on = tiny_generator.random_generator(
    generator_lib.GeneratorConfig(**sizes, mouth_unet=True, blending_unet=True), mesh
  )
  assert off.mouth_unet is None and off.landmark_vertices is None
  assert on.mouth_unet.in_size == 8 and on.blending_unet.final_size == 8
  nnx.update(on, nnx.state(off))  # shared networks get the same weights and noise buffers

  rng = np.random.default_rng(2)
  ws = {name: jnp.asarray(rng.standard_normal((2, 16)), jnp.float32) for name in ('texture', 'hair', 'sr')}
  vertices = jnp.asarray(np.stack([mesh[0], mesh[0] * 1.1]))
  box = hexplane_views.mouth_box(vertices[0, mesh[3]], 32)
  assert 0 < box[0] < box[1] < 32 and 0 < box[2] < box[3] < 32

  planes = nnx.jit(lambda generator: generator.planes(ws, vertices, noise_mode='const'))
  planes_off, planes_on = planes(off), planes(on)
  np.testing.assert_array_equal(planes_on[:, 1:], planes_off[:, 1:])
  np.testing.assert_array_equal(planes_on[:, 0, ..., 4:], planes_off[:, 0, ..., 4:])
  assert np.abs(planes_on[:, 0, ..., :4] - planes_off[:, 0, ..., :4]).max() > 1e-3

  graphdef, params, rest = nnx.split(on, nnx.Param, ...)
  c = jnp.asarray(camera.dataset_cameras()[[30, 31]])

  def loss(params):
    image = nnx.merge(graphdef, params, rest)(ws, c, vertices, noise_mode='const')['image']
    return jnp.mean(image**2), image

  (_, image), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert image.shape == (2, 32, 32, 3) and np.all(np.isfinite(image))
  for name in ('mouth_unet', 'blending_unet'):
    leaves = jax.tree.leaves(grads[name])
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert sum(float(jnp.abs(leaf).sum()) for leaf in leaves) > 0, name
