"""The fast resampling ops of ``layers`` vs the direct XLA formulations they replace (values and gradients).

The references are the formulations ``layers.py`` used before: the FIR as a depthwise convolution
of the 2-D filter ``outer(f, f)`` with ``lhs_dilation`` for up-sampling, the up-sampling
convolution as a ``lhs_dilation`` (transposed) convolution, the down-sampling one as a strided
convolution, and plain ``lax.conv_general_dilated`` with XLA's own transpose rules. They compute
the same linear maps, so values, first derivatives and R1-style second derivatives must agree.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from head360_jax.models import layers

_DN = ('NHWC', 'HWIO', 'NHWC')


def reference_upfirdn2d(x, taps, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
  """StyleGAN2 upfirdn2d as one depthwise convolution of the 2-D filter (the pre-rewrite code)."""
  px0, px1, py0, py1 = padding
  f2 = jnp.outer(taps, taps) * gain
  c = x.shape[-1]
  kernel = jnp.broadcast_to(f2[::-1, ::-1][:, :, None, None], (*f2.shape, 1, c)).astype(x.dtype)
  return lax.conv_general_dilated(
    x,
    kernel,
    (down, down),
    ((py0, py1 + up - 1), (px0, px1 + up - 1)),
    lhs_dilation=(up, up),
    dimension_numbers=_DN,
    feature_group_count=c,
  )


def reference_conv2d_resample(x, weight, taps, up=1, down=1, padding=0):
  """conv2d_resample with lax's dilated / strided convolutions (the pre-rewrite code)."""
  k, ft = weight.shape[0], taps.shape[0]
  if up > 1:
    p0 = padding + (ft + up - 1) // 2 - (k - 1)
    p1 = padding + (ft - up) // 2 - (k - up)
    pt = max(min(-p0, -p1), 0)
    edge = (k - 1 - pt, k - 1 - pt)
    x = lax.conv_general_dilated(
      x, weight[::-1, ::-1], (1, 1), (edge, edge), lhs_dilation=(up, up), dimension_numbers=_DN
    )
    p0, p1 = p0 + pt, p1 + pt
    return reference_upfirdn2d(x, taps, padding=(p0, p1, p0, p1), gain=up**2)
  if down > 1:
    p0, p1 = padding + (ft - down + 1) // 2, padding + (ft - down) // 2
    x = reference_upfirdn2d(x, taps, padding=(p0, p1, p0, p1))
    return lax.conv_general_dilated(x, weight, (down, down), 'VALID', dimension_numbers=_DN)
  return lax.conv_general_dilated(x, weight, (1, 1), ((padding, padding),) * 2, dimension_numbers=_DN)


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _close(a, b, tol=2e-5):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape
  np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(np.abs(b).max(), 1e-6))


@pytest.mark.parametrize(
  'up,down,padding,taps',
  [
    (2, 1, (2, 1, 2, 1), (1, 3, 3, 1)),  # upsample2d
    (1, 2, (1, 1, 1, 1), (1, 3, 3, 1)),  # downsample2d
    (1, 1, (1, 2, 0, 3), (1, 2, 1)),  # plain filter, asymmetric padding
    (3, 1, (3, 2, 1, 4), (1, 3, 3, 1)),
    (1, 3, (-1, 2, 2, 0), (1, 4, 6, 4, 1)),  # crop on one side
    (2, 1, (1, 0, 1, 0), (1, 3, 3, 1)),  # the up-conv's FIR padding
  ],
)
def test_upfirdn2d_matches_depthwise_reference(up, down, padding, taps):
  x = _random((2, 11, 9, 3), 0)
  f = layers.setup_filter(taps)
  ours = lambda x: layers.upfirdn2d(x, f, up, down, padding, gain=up**2)
  ref = lambda x: reference_upfirdn2d(x, f, up, down, padding, gain=up**2)
  _close(ours(x), ref(x))
  probe = _random(ref(x).shape, 1)
  grad = lambda fn: jax.grad(lambda x: jnp.sum(fn(x) * probe))(x)
  _close(grad(ours), grad(ref))


@pytest.mark.parametrize(
  'k,up,down,padding,channels',
  [
    (3, 2, 1, 1, 5),
    (3, 1, 2, 1, 5),
    (1, 1, 2, 0, 5),
    (3, 1, 1, 1, 5),
    (1, 1, 1, 0, 5),
    (4, 2, 1, 2, 5),
    (5, 1, 2, 2, 5),
    (2, 3, 1, 1, 5),
    (3, 2, 1, 1, 256),  # GEMM form of the weight gradient
    (3, 1, 2, 1, 256),
  ],
)
def test_conv2d_resample_matches_lax_reference_values_and_gradients(k, up, down, padding, channels):
  x = _random((2, 8, 8, channels), 2)
  w = _random((k, k, channels, 7), 3) * 0.3
  f = layers.setup_filter()
  ours = lambda x, w: layers.conv2d_resample(x, w, f, up=up, down=down, padding=padding)
  ref = lambda x, w: reference_conv2d_resample(x, w, f, up=up, down=down, padding=padding)
  _close(ours(x, w), ref(x, w))
  probe = _random(ref(x, w).shape, 4)
  grads = lambda fn: jax.grad(lambda x, w: jnp.sum(fn(x, w) * probe), argnums=(0, 1))(x, w)
  for a, b in zip(grads(ours), grads(ref), strict=True):
    _close(a, b)


@pytest.mark.parametrize(
  'k,up,down,padding,channels',
  [(3, 1, 2, 1, 4), (3, 2, 1, 1, 4), (3, 1, 1, 1, 4), (1, 1, 2, 0, 4), (1, 1, 1, 0, 4), (3, 1, 1, 1, 256)],
)
def test_second_derivatives_match_reference(k, up, down, padding, channels):
  """R1's double backward: d/dW of |d out / d x|², as the discriminator's R1 penalty takes it.

  256 input channels take conv2d's GEMM form of the weight gradient (``_DW_GEMM_MIN_CHANNELS``).
  """
  x = _random((1, 8, 8, channels), 5)
  w = _random((k, k, channels, 6), 6) * 0.3
  f = layers.setup_filter()

  def r1(fn):
    def penalty(w):
      gx = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, w))))(x)
      return jnp.sum(jnp.square(gx))

    return jax.grad(penalty)(w)

  ours = lambda x, w: layers.conv2d_resample(x, w, f, up=up, down=down, padding=padding)
  ref = lambda x, w: reference_conv2d_resample(x, w, f, up=up, down=down, padding=padding)
  _close(r1(ours), r1(ref), tol=1e-4)


@pytest.mark.parametrize('up,edge,k', [(2, 2, 3), (2, 1, 3), (2, 0, 1), (3, 3, 4), (2, 3, 4)])
def test_conv_transpose2d_matches_lhs_dilated_conv(up, edge, k):
  x = _random((2, 6, 5, 3), 7)
  w = _random((k, k, 3, 4), 8)
  ref = lax.conv_general_dilated(x, w, (1, 1), ((edge, edge),) * 2, lhs_dilation=(up, up), dimension_numbers=_DN)
  _close(layers.conv_transpose2d(x, w, up, edge), ref)


@pytest.mark.parametrize('shape,k,down', [((2, 9, 7, 3), 3, 2), ((1, 10, 10, 2), 4, 2), ((1, 11, 12, 2), 3, 3)])
def test_strided_conv2d_matches_strided_lax_conv(shape, k, down):
  x = _random(shape, 9)
  w = _random((k, k, shape[-1], 5), 10)
  ref = lax.conv_general_dilated(x, w, (down, down), 'VALID', dimension_numbers=_DN)
  _close(layers.strided_conv2d(x, w, down), ref)


def test_fast_ops_lower_to_no_dilated_or_grouped_convolution():
  """The optimised HLO of an R1 penalty through an up- and a down-sampling conv has only plain convolutions."""
  x = _random((1, 16, 16, 4), 11)
  w = _random((3, 3, 4, 4), 12)
  f = layers.setup_filter()

  def net(x, w):
    y = layers.conv2d_resample(x, w, f, up=2, padding=1)
    return layers.conv2d_resample(jnp.tanh(y), w, f, down=2, padding=1)

  def r1(w):
    return jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(net(x, w))))(x)))

  hlo = jax.jit(jax.grad(r1)).lower(w).compile().as_text()
  convs = [line for line in hlo.splitlines() if ' convolution(' in line]
  assert convs
  for line in convs:
    for bad in ('lhs_dilate', 'rhs_dilate', 'rhs_reversal', 'feature_group_count', 'stride='):
      assert bad not in line, line


@pytest.mark.parametrize('rows', [128, 131])
def test_conv2d_weight_gradient_in_row_blocks(rows):
  """From 128 rows on the weight gradient is reduced in row blocks (and a remainder for 131)."""
  x = _random((2, rows, 5, 3), 13)
  w = _random((3, 3, 3, 4), 14)
  padding = ((1, 1), (1, 1))
  ours = lambda x, w: layers.conv2d(x, w, padding)
  ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)
  probe = _random(ref(x, w).shape, 15)
  grads = lambda fn: jax.grad(lambda x, w: jnp.sum(fn(x, w) * probe), argnums=(0, 1))(x, w)
  for a, b in zip(grads(ours), grads(ref), strict=True):
    _close(a, b)


def test_pointwise_conv2d_is_a_gemm_with_gemm_derivatives():
  """A 1x1 unpadded conv2d (ToRGB, skip layers) lowers to dot_general only, first and second derivatives too."""
  x = _random((1, 8, 8, 6), 16)
  w = _random((1, 1, 6, 3), 17)
  conv = lambda x, w: layers.conv2d(x, w, ((0, 0), (0, 0)))
  ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'VALID', dimension_numbers=_DN)
  _close(conv(x, w), ref(x, w))
  r1 = lambda w: jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w))))(x)))
  hlo = jax.jit(jax.grad(r1)).lower(w).as_text()
  assert 'stablehlo.dot_general' in hlo
  assert 'stablehlo.convolution' not in hlo
  # A padded 1x1 kernel keeps the convolution (the GEMM form has no border).
  assert 'stablehlo.convolution' in jax.jit(lambda x, w: layers.conv2d(x, w, ((1, 1), (1, 1)))).lower(x, w).as_text()
