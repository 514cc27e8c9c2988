"""Dual discriminator vs the PyTorch goldens (outputs and input gradients), plus properties."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from head360_jax.models import discriminator as disc
from head360_jax.models import layers

# The goldens' small discriminator: 16 x 16 images, channels 16 (16), 32 (8), 32 (4).
SMALL = dict(channel_base=256, channel_max=32)


def _build(ctor, seed=0):
  """``ctor()`` with N(0, 1) parameters from numpy: skips eager jax.random init (one compile per shape)."""
  graphdef, state = nnx.split(nnx.eval_shape(ctor))
  rng = np.random.default_rng(seed)
  return nnx.merge(graphdef, jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape, np.float32)), state))


def _to_nhwc(x):
  return jnp.transpose(x, (0, 2, 3, 1))


def _to_nchw(x):
  return jnp.transpose(x, (0, 3, 1, 2))


def test_block_matches_golden_disc_block_resnet():
  arrays, meta = golden.load_golden('disc_block_resnet')
  block = _build(lambda: disc.DiscriminatorBlock(0, 16, 32, img_channels=6, conv_clamp=256, rngs=nnx.Rngs(0)))
  golden.load_torch_params(block, golden.params_with_prefix(arrays))
  golden.check_golden(jax.jit(lambda img: {'x': _to_nchw(block(None, _to_nhwc(img)))}), arrays, meta, ('img',))
  # Inputs of +-300 drive every clamp; compare the block and its intermediate activations.
  img = _to_nhwc(jnp.asarray(arrays['in/img_large']))
  fromrgb = block.fromrgb(img)
  conv0 = block.conv0(fromrgb)
  conv1 = block.conv1(conv0, gain=disc.RESNET_GAIN)
  for key, value in [
    ('out/x_large', block(None, img)),
    ('out/debug_large_fromrgb', fromrgb),
    ('out/debug_large_conv0', conv0),
    ('out/debug_large_conv1', conv1),
  ]:
    golden.assert_close(_to_nchw(value), meta, arrays, key)


def test_epilogue_matches_golden_disc_epilogue():
  arrays, meta = golden.load_golden('disc_epilogue')
  epilogue = _build(lambda: disc.DiscriminatorEpilogue(32, 64, mbstd_group_size=2, conv_clamp=256, rngs=nnx.Rngs(0)))
  golden.load_torch_params(epilogue, golden.params_with_prefix(arrays))
  fn = jax.jit(lambda x, cmap: {'score': epilogue(_to_nhwc(x), cmap)})
  golden.check_golden(fn, arrays, meta, ('x', 'cmap'))
  mbstd = disc.minibatch_stddev(_to_nhwc(jnp.asarray(arrays['in/x'])), 2)
  golden.assert_close(_to_nchw(mbstd), meta, arrays, 'out/debug_after_mbstd')


def test_label_mappings_and_epilogue_match_golden_dual_label_cmap():
  arrays, meta = golden.load_golden('dual_label_cmap')
  model = _build(lambda: disc.DualDiscriminator(16, **SMALL, rngs=nnx.Rngs(0)))
  golden.load_torch_params(model, golden.params_with_prefix(arrays))
  assert model.camera_cmap_dim == 32

  def fn(c, x):
    cmap = model.label_embedding(c)
    return {'cmap1': cmap[:, :32], 'cmap2': cmap[:, 32:], 'cmap': cmap, 'score': model.b4(_to_nhwc(x), cmap)}

  errors = golden.check_golden(jax.jit(fn), arrays, meta, ('c', 'x'))
  assert set(errors) == {'out/cmap1', 'out/cmap2', 'out/cmap', 'out/score', 'grad/c', 'grad/x'}


def test_dual_discriminator_matches_golden_small():
  arrays, meta = golden.load_golden('dual_discriminator_small')
  model = _build(lambda: disc.DualDiscriminator(16, **SMALL, rngs=nnx.Rngs(0)))
  assert model.block_resolutions == (16, 8)
  golden.load_torch_params(model, golden.params_with_prefix(arrays))

  def fn(image, image_raw, c):
    return {'logits': model(_to_nhwc(image), _to_nhwc(image_raw), c)}

  errors = golden.check_golden(jax.jit(fn), arrays, meta, ('image', 'image_raw', 'c'))
  assert set(errors) == {'out/logits', 'grad/image', 'grad/image_raw'}


def test_tiny_discriminator_shape_and_parameter_gradients():
  config = dict(channel_base=64, channel_max=8, expression_cmap_dim=4, num_mapping_layers=2)
  model = _build(lambda: disc.DualDiscriminator(16, **config, rngs=nnx.Rngs(1)), seed=1)
  graphdef, params = nnx.split(model, nnx.Param)
  rng = np.random.default_rng(2)
  image, image_raw, c = (
    jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in [(4, 16, 16, 3), (4, 8, 8, 3), (4, 77)]
  )

  def loss(p):
    logits = nnx.merge(graphdef, p)(image, image_raw, c)
    return jnp.sum(jax.nn.softplus(logits)), logits

  grads, logits = jax.jit(jax.grad(loss, has_aux=True))(params)
  assert logits.shape == (4, 1) and logits.dtype == jnp.float32
  leaves = jax.tree_util.tree_leaves_with_path(grads)
  assert len(leaves) == len(jax.tree.leaves(params)) > 0
  for path, grad in leaves:
    assert np.all(np.isfinite(grad)), jax.tree_util.keystr(path)
    assert np.any(grad != 0), f'{jax.tree_util.keystr(path)} gets no gradient'


def _mbstd_loop(x, group_size):
  """Float64 per-group loop over an NHWC batch: strided groups, one appended channel."""
  x = np.asarray(x, np.float64)
  b = x.shape[0]
  g = min(group_size, b)
  n = b // g
  out = np.empty((*x.shape[:3], 1))
  for group in range(n):
    members = x[group::n]
    value = np.sqrt(members.var(axis=0) + 1e-8).mean()
    out[group::n] = value
  return np.concatenate([x, out], axis=-1)


@pytest.mark.parametrize('batch, group_size', [(4, 2), (3, 4), (1, 2), (6, 3), (4, None)])
def test_minibatch_stddev_groups(batch, group_size):
  x = jnp.asarray(np.random.default_rng(batch).normal(size=(batch, 4, 4, 5)), jnp.float32)
  y = disc.minibatch_stddev(x, group_size)
  expected = _mbstd_loop(x, batch if group_size is None else group_size)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  if batch == 1:  # a group of one: the std is sqrt(1e-8)
    np.testing.assert_allclose(y[..., -1], 1e-4, rtol=1e-5)


def test_minibatch_stddev_rejects_ragged_batches():
  with pytest.raises(ValueError, match='divisible by the minibatch-stddev group size'):
    disc.minibatch_stddev(jnp.zeros((6, 4, 4, 2)), 4)
  with pytest.raises(ValueError, match='num_channels'):
    disc.minibatch_stddev(jnp.zeros((2, 4, 4, 3)), 2, num_channels=2)


def test_nhwc_layout_matches_torch_nchw_layout():
  """A torch-layout (NCHW, OIHW, NCHW flatten) computation equals ours after golden's conversions."""
  rng = np.random.default_rng(0)
  x_nchw = rng.normal(size=(2, 5, 4, 4)).astype(np.float32)
  w_oihw = rng.normal(size=(3, 5, 3, 3)).astype(np.float32)
  conv = _build(lambda: layers.EqualizedConv2d(5, 3, 3, bias=False, rngs=nnx.Rngs(0)))
  conv.weight[...] = golden.oihw_to_hwio(w_oihw)
  ours = conv(jnp.asarray(golden.nchw_to_nhwc(x_nchw)))
  theirs = lax.conv_general_dilated(x_nchw, w_oihw / np.sqrt(45), (1, 1), ((1, 1), (1, 1)))  # NCHW/OIHW
  np.testing.assert_allclose(golden.nhwc_to_nchw(ours), theirs, rtol=1e-5, atol=1e-5)
  # The epilogue's FC reads features in NCHW order: permuting its [out, c*16 + h*4 + w] weight rows
  # into NHWC order and flattening NHWC directly gives the same result.
  epilogue = _build(lambda: disc.DiscriminatorEpilogue(3, 0, mbstd_num_channels=0, rngs=nnx.Rngs(1)))
  features = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  fc_in = epilogue.conv(features)
  w_nchw = np.asarray(epilogue.fc.weight[...])  # (c*16 + h*4 + w, out)
  w_nhwc = w_nchw.reshape(3, 4, 4, -1).transpose(1, 2, 0, 3).reshape(48, -1)
  direct = layers.bias_act(fc_in.reshape(2, -1) @ (w_nhwc * epilogue.fc.weight_gain), epilogue.fc.bias[...], 'lrelu')
  np.testing.assert_allclose(epilogue.out(direct), epilogue(features, None), rtol=1e-5, atol=1e-6)


def test_add_label_noise():
  c = jax.random.uniform(jax.random.key(0), (8, 77))
  key = jax.random.key(1)
  assert disc.add_label_noise(c, key, 0.0) is c
  noisy = disc.add_label_noise(c, key, 0.5)
  unit = (noisy - c) / (np.std(np.asarray(c), axis=0, ddof=1) * 0.5)
  np.testing.assert_allclose(unit, jax.random.normal(key, c.shape), rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match='at least 2'):
    disc.add_label_noise(c[:1], key, 0.5)
  with pytest.raises(ValueError, match='>= 0'):
    disc.add_label_noise(c, key, -1.0)


def test_reference_size_parameter_counts():
  """Reference-spec §7: trunk + epilogue 29.3 M, camera mapping 2.12 M, expression mapping 0.01 M."""
  model = nnx.eval_shape(lambda: disc.DualDiscriminator(512, rngs=nnx.Rngs(0)))
  total = layers.parameter_count(model)
  camera, expression = layers.parameter_count(model.mapping), layers.parameter_count(model.mapping2)
  assert model.block_resolutions == (512, 256, 128, 64, 32, 16, 8)
  assert model.b4.cmap_dim == 544
  assert (total - camera - expression, camera, expression) == (29_261_600, 2_114_560, 10_144)
  # Shapes of a full-size forward pass (traced only): 512^2 image + 64^2 raw render -> (b, 1).
  graphdef, state = nnx.split(model)
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  forward = lambda st, *args: nnx.merge(graphdef, st)(*args)
  logits = jax.eval_shape(forward, state, spec(2, 512, 512, 3), spec(2, 64, 64, 3), spec(2, 77))
  assert logits.shape == (2, 1)


def test_input_validation():
  with pytest.raises(ValueError, match='power of two'):
    disc.DualDiscriminator(12, rngs=nnx.Rngs(0))
  model = _build(
    lambda: disc.DualDiscriminator(8, channel_base=32, channel_max=4, num_mapping_layers=1, rngs=nnx.Rngs(0))
  )
  with pytest.raises(ValueError, match='image must be'):
    model(jnp.zeros((2, 16, 16, 3)), jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 77)))
  with pytest.raises(ValueError, match='label must be'):
    model(jnp.zeros((2, 8, 8, 3)), jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 25)))


def test_r1_penalty_has_finite_second_order_gradients():
  """R1 (reference-spec §5.1) differentiates |grad_image D|^2 + |grad_image_raw D|^2 again, w.r.t. params."""
  config = dict(channel_base=64, channel_max=8, expression_cmap_dim=4, num_mapping_layers=2)
  graphdef, params = nnx.split(_build(lambda: disc.DualDiscriminator(16, **config, rngs=nnx.Rngs(0))), nnx.Param)
  rng = np.random.default_rng(3)
  image, image_raw, c = (
    jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in [(2, 16, 16, 3), (2, 8, 8, 3), (2, 77)]
  )

  def r1(p):
    score = lambda a, b: jnp.sum(nnx.merge(graphdef, p)(a, b, c))
    grad_image, grad_raw = jax.grad(score, argnums=(0, 1))(image, image_raw)
    return jnp.sum(jnp.square(grad_image)) + jnp.sum(jnp.square(grad_raw))

  penalty, grads = jax.jit(jax.value_and_grad(r1))(params)
  assert np.isfinite(penalty) and penalty > 0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  # The last FC's bias adds <bias, cmap> / sqrt(m) to the score: independent of the images, no effect on R1.
  np.testing.assert_array_equal(grads['b4']['out']['bias'][...], 0)
