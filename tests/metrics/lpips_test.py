"""LPIPS-VGG and LPIPS-AlexNet (head360_jax.metrics.lpips) against float64 numpy references and on photos.

The AlexNet weights' layout (HWIO kernels, RGB, v0.1 heads) was also checked once against
the lpips package itself: its ``test_network.py`` prints ``Distances: (0.722, 0.138)`` for
its ``ex_ref.png`` vs ``ex_p0.png`` / ``ex_p1.png``; ``lpips`` gives 0.72188 and 0.13757
(with H and W of the kernels swapped 0.780 and 0.091, with BGR input 0.710 and 0.155). Those
images are not in this repository.
"""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageFilter

from head360_jax.metrics import lpips as lpips_lib

_lpips = jax.jit(lpips_lib.lpips)

# The layers of torchvision's ``features``, written out independently of the module's tables:
# ('conv', stride, padding, tapped) and ('pool', window, stride).
_C, _T = ('conv', 1, 1, False), ('conv', 1, 1, True)
_VGG16 = [_C, _T, ('pool', 2, 2), _C, _T, ('pool', 2, 2), _C, _C, _T, ('pool', 2, 2), _C, _C, _T, ('pool', 2, 2)]
_VGG16 += [_C, _C, _T]
_ALEXNET = [('conv', 4, 2, True), ('pool', 3, 2), ('conv', 1, 2, True), ('pool', 3, 2)] + [('conv', 1, 1, True)] * 3


@pytest.fixture(scope='session')
def vgg():
  return lpips_lib.load_lpips('vgg')


@pytest.fixture(scope='session')
def alex():
  return lpips_lib.load_lpips('alex')


def _photo(shared_data, name, size, blur=0.0):
  """A face photo resized to ``size`` x ``size``, RGB float64 in [-1, 1], shape (size, size, 3)."""
  image = Image.open(shared_data / 'faces' / name).convert('RGB').resize((size, size), Image.Resampling.LANCZOS)
  if blur:
    image = image.filter(ImageFilter.GaussianBlur(blur))
  return np.asarray(image, np.float64) / 127.5 - 1.0


def _area_resize(mask, n, m):
  """(b, h, w) -> (b, n, m) area averages, exactly: repeat each pixel n x m times, then average h x w blocks."""
  b, h, w = mask.shape
  fine = np.repeat(np.repeat(mask, n, axis=1), m, axis=2)
  return fine.reshape(b, n, h, m, w).mean(axis=(2, 4))


def _reference_lpips(params, layers, x, y, mask=None):
  """Independent float64 LPIPS: im2col convs, strided max pools, LPIPS's own normalize_tensor."""
  kernels = [np.asarray(k, np.float64) for k in params.kernels]
  biases = [np.asarray(b, np.float64) for b in params.biases]
  heads = [np.asarray(w, np.float64) for w in params.heads]

  def windows(a, k, stride):
    """All k x k windows with the given stride, (k * k, b, ho, wo, c), row-major over (dy, dx)."""
    ho, wo = (a.shape[1] - k) // stride + 1, (a.shape[2] - k) // stride + 1
    return [a[:, dy : dy + stride * ho : stride, dx : dx + stride * wo : stride] for dy in range(k) for dx in range(k)]

  def conv_relu(a, kernel, bias, stride, pad):
    k = kernel.shape[0]
    cols = np.stack(windows(np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0))), k, stride), axis=3)
    b, ho, wo = cols.shape[:3]
    flat = cols.reshape(b * ho * wo, -1) @ kernel.reshape(-1, kernel.shape[-1])
    return np.maximum(flat + bias, 0.0).reshape(b, ho, wo, -1)

  def features(a):
    a = (a - np.array([-0.030, -0.088, -0.188])) / np.array([0.458, 0.448, 0.450])
    out, convs = [], iter(zip(kernels, biases, strict=True))
    for layer in layers:
      if layer[0] == 'pool':
        a = np.max(windows(a, layer[1], layer[2]), axis=0)
      else:
        a = conv_relu(a, *next(convs), layer[1], layer[2])
        if layer[3]:
          out.append(a)
    return out

  total = np.zeros(len(x))
  for fx, fy, w in zip(features(x), features(y), heads, strict=True):
    fx = fx / (np.sqrt((fx**2).sum(-1, keepdims=True)) + 1e-10)
    fy = fy / (np.sqrt((fy**2).sum(-1, keepdims=True)) + 1e-10)
    d = ((fx - fy) ** 2) @ w
    if mask is None:
      total += d.mean(axis=(1, 2))
    else:
      m = _area_resize(mask, *d.shape[1:])
      total += (d * m).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
  return total


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def test_weights_have_expected_layout(vgg, alex):
  assert isinstance(vgg, lpips_lib.LpipsVggParams) and isinstance(alex, lpips_lib.LpipsAlexParams)
  assert [k.shape for k in vgg.kernels][:3] == [(3, 3, 3, 64), (3, 3, 64, 64), (3, 3, 64, 128)]
  assert [h.shape for h in vgg.heads] == [(64,), (128,), (256,), (512,), (512,)]
  assert [k.shape for k in alex.kernels] == [
    (11, 11, 3, 64),
    (5, 5, 64, 192),
    (3, 3, 192, 384),
    (3, 3, 384, 256),
    (3, 3, 256, 256),
  ]
  assert [h.shape for h in alex.heads] == [(64,), (192,), (384,), (256,), (256,)]
  for params in (vgg, alex):
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    assert all(float(h.min()) >= 0.0 for h in params.heads)  # LPIPS clamps its heads to >= 0 in training


def test_vgg_matches_float64_reference(vgg, shared_data):
  # Two 32x32 pairs: a photo against a noisy copy, and two different faces.
  rng = np.random.default_rng(0)
  man, other = _photo(shared_data, 'man.jpg', 32), _photo(shared_data, '000134.jpg', 32)
  x = np.stack([man, man])
  y = np.stack([np.clip(man + 0.2 * rng.standard_normal(man.shape), -1, 1), other])
  with jax.default_matmul_precision('highest'):  # no TF32 if this runs on a GPU
    got = np.asarray(_lpips(vgg, *_f32(x, y)))
  want = _reference_lpips(vgg, _VGG16, x, y)
  assert got.shape == (2,) and got.dtype == np.float32
  # float32 vs float64 through 13 convs with up to 4608-term sums: a rounding-error bound of
  # ~sqrt(4608) * 6e-8 ~ 4e-6 relative per layer (observed: 5e-8 on the distance). 1e-5 keeps
  # that margin while a wiring error is far outside it (swapping kernel H and W changes these
  # distances by 0.4% and 9%, BGR input by 21% and 7%).
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert want[1] > want[0] > 0.0


def test_alex_matches_float64_reference(alex, shared_data):
  # 64x64: a photo against a noisy copy and another face; 40x72: random images (odd layer sizes
  # 9x17, 4x8, 1x3 exercise the floors of the stride-4 conv and the 3/2 pools).
  rng = np.random.default_rng(0)
  man, other = _photo(shared_data, 'man.jpg', 64), _photo(shared_data, '000134.jpg', 64)
  x = np.stack([man, man])
  y = np.stack([np.clip(man + 0.2 * rng.standard_normal(man.shape), -1, 1), other])
  a, b = rng.uniform(-1, 1, (2, 1, 40, 72, 3))
  with jax.default_matmul_precision('highest'):
    got = np.asarray(_lpips(alex, *_f32(x, y)))
    got_odd = np.asarray(_lpips(alex, *_f32(a, b)))
  np.testing.assert_allclose(got, _reference_lpips(alex, _ALEXNET, x, y), rtol=1e-5)
  np.testing.assert_allclose(got_odd, _reference_lpips(alex, _ALEXNET, a, b), rtol=1e-5)
  assert got[1] > got[0] > 0.0


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_masked_distance_matches_reference(vgg, alex, shared_data, net):
  params, layers = {'vgg': (vgg, _VGG16), 'alex': (alex, _ALEXNET)}[net]
  rng = np.random.default_rng(4)
  man = _photo(shared_data, 'man.jpg', 48)
  x = np.stack([man] * 3)
  y = np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1)
  rect = np.zeros((48, 48))
  rect[8:40, 5:30] = 1.0
  mask = np.stack([np.ones((48, 48)), rect, rng.uniform(0, 1, (48, 48))])
  with jax.default_matmul_precision('highest'):
    got = np.asarray(_lpips(params, *_f32(x, y), jnp.asarray(mask, jnp.float32)))
    plain = np.asarray(_lpips(params, *_f32(x, y)))
    got_4d = np.asarray(_lpips(params, *_f32(x, y), jnp.asarray(mask[..., None], jnp.float32)))
  np.testing.assert_allclose(got, _reference_lpips(params, layers, x, y, mask), rtol=1e-5)
  np.testing.assert_allclose(got[0], plain[0], rtol=1e-6)  # all-ones mask: the plain distance
  np.testing.assert_allclose(got_4d, got, rtol=1e-7)
  assert abs(got[1] - plain[1]) > 1e-3 * plain[1]  # the rectangle weighs some pixels out


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_identity_and_symmetry(vgg, alex, net):
  params = {'vgg': vgg, 'alex': alex}[net]
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
  y = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
  # XLA may fuse the normalisation of the x and y halves differently (1-ulp differences in the
  # unit features), which leaves ~1e-16 where different images give > 0.1.
  assert (np.asarray(_lpips(params, x, x)) < 1e-12).all()
  assert (np.asarray(_lpips(params, x, x, jnp.ones((2, 32, 32)))) < 1e-12).all()
  d_xy, d_yx = _lpips(params, x, y), _lpips(params, y, x)
  np.testing.assert_allclose(d_xy, d_yx, rtol=1e-5)
  assert (d_xy > 0.05).all()  # observed: VGG 0.25, AlexNet 0.06-0.08 for these noise images
  # Batch items are independent: the pair alone gives the same distance as in the batch.
  np.testing.assert_allclose(_lpips(params, x[:1], y[:1]), d_xy[:1], rtol=1e-5)


@pytest.mark.parametrize('size', [64, 128])
def test_vgg_grows_with_noise_level(vgg, shared_data, size):
  man = _photo(shared_data, 'man.jpg', size)
  noise = np.random.default_rng(1).standard_normal(man.shape)
  sigmas = np.array([0.02, 0.05, 0.1, 0.2, 0.4])
  noisy = np.clip(man + sigmas[:, None, None, None] * noise, -1.0, 1.0)
  clean = np.broadcast_to(man, noisy.shape)
  d = np.asarray(_lpips(vgg, *_f32(clean, noisy)))
  assert (np.diff(d) > 0).all(), d
  assert d[0] > 0.0 and d[-1] > 5 * d[0], d


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_blur_is_closer_than_another_face_and_gradient_flows(vgg, alex, shared_data, net):
  params = {'vgg': vgg, 'alex': alex}[net]
  man = _photo(shared_data, 'man.jpg', 64)
  blurred = _photo(shared_data, 'man.jpg', 64, blur=1.0)
  other = _photo(shared_data, '000134.jpg', 64)
  x = jnp.asarray(np.stack([man, man]), jnp.float32)
  d = np.asarray(_lpips(params, x, jnp.asarray(np.stack([blurred, other]), jnp.float32)))
  # Observed: VGG 0.141 and 0.496, AlexNet 0.157 and 0.208 (AlexNet weighs blur more).
  assert 0.0 < d[0] < {'vgg': 0.5, 'alex': 0.9}[net] * d[1], d

  grad = jax.jit(jax.grad(lambda a, b: lpips_lib.lpips(params, a, b).sum()))(x[:1], jnp.asarray(blurred[None]))
  assert grad.shape == (1, 64, 64, 3)
  assert np.isfinite(grad).all()
  assert float(jnp.abs(grad).max()) > 0.0
  # A small step against the gradient lowers the distance (the loss can be descended).
  step = x[:1] - 1e-3 * grad / jnp.abs(grad).max()
  assert float(_lpips(params, step, jnp.asarray(blurred[None]))[0]) < float(d[0])


def test_minimum_sizes(vgg, alex):
  for params, size in ((vgg, 16), (alex, 31)):
    assert _lpips(params, jnp.zeros((1, size, 40, 3)), jnp.ones((1, size, 40, 3))).shape == (1,)
    with pytest.raises(ValueError, match=str(size)):
      lpips_lib.lpips(params, jnp.zeros((1, 40, size - 1, 3)), jnp.zeros((1, 40, size - 1, 3)))


def test_rejects_bad_inputs(vgg, alex):
  with pytest.raises(ValueError, match="'vgg' or 'alex'"):
    lpips_lib.load_lpips('squeeze')
  for params in (vgg, alex):
    with pytest.raises(ValueError, match='shape'):
      lpips_lib.lpips(params, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 31, 3)))
    with pytest.raises(ValueError, match='shape'):
      lpips_lib.lpips(params, jnp.zeros((32, 32, 3)), jnp.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match='mask'):
      lpips_lib.lpips(params, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)), jnp.ones((1, 32, 32, 3)))
  with pytest.raises(TypeError, match='load_lpips'):
    lpips_lib.lpips(tuple(vgg), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)))


def test_area_matrix_rows_average_the_covered_pixels():
  np.testing.assert_allclose(lpips_lib.area_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
  m = lpips_lib.area_matrix(7, 3)  # intervals of 7/3 pixels
  np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(m[0], np.array([1, 1, 1 / 3, 0, 0, 0, 0]) * 3 / 7, rtol=1e-6)


class _RunsCode:
  def __reduce__(self):
    return os.system, ('echo should-not-run',)


def test_restricted_unpickler_only_builds_numpy_arrays():
  tree = {'a': {'kernel': np.arange(6, dtype=np.float32).reshape(2, 3)}, 'b': [np.zeros(2)]}
  loaded = lpips_lib.restricted_load(pickle.dumps(tree, protocol=3))
  np.testing.assert_array_equal(loaded['a']['kernel'], tree['a']['kernel'])
  with pytest.raises(pickle.UnpicklingError, match='system'):
    lpips_lib.restricted_load(pickle.dumps(_RunsCode()))
  with pytest.raises(pickle.UnpicklingError, match='object'):
    lpips_lib.restricted_load(pickle.dumps(np.array([None, 1], dtype=object)))


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_distance_to_precomputed_features_is_the_distance(vgg, alex, shared_data, net):
  """A loss against fixed targets keeps ``reference_features(y)``: the distance and its gradient must not change."""
  params = {'vgg': vgg, 'alex': alex}[net]
  man = _photo(shared_data, 'man.jpg', 64)
  x = jnp.asarray(np.stack([man, man[::-1]]), jnp.float32)
  y = np.stack([_photo(shared_data, 'man.jpg', 64, blur=1.0), _photo(shared_data, '000134.jpg', 64)])
  y = jnp.asarray(y, jnp.float32)
  y_features = lpips_lib.reference_features(params, y)
  mask = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 64, 64)), jnp.float32)
  for m in (None, mask):
    expected = _lpips(params, x, y, m)
    np.testing.assert_allclose(lpips_lib.lpips_to_features(params, x, y_features, m), expected, rtol=1e-6)
  grad = lambda f: jax.grad(lambda a: f(a).sum())(x)
  np.testing.assert_allclose(
    grad(lambda a: lpips_lib.lpips_to_features(params, a, y_features)),
    grad(lambda a: lpips_lib.lpips(params, a, y)),
    rtol=1e-5,
    atol=1e-9,
  )
  with pytest.raises(ValueError, match='reference features'):
    lpips_lib.lpips_to_features(params, x[:, :48, :48], y_features)
