"""LPIPS-VGG (head360_jax.fitting.perceptual) against a float64 numpy reference and on real photos."""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageFilter

from head360_jax.fitting import perceptual

_lpips = jax.jit(perceptual.lpips)


@pytest.fixture(scope='session')
def params():
  return perceptual.load_lpips()


def _photo(shared_data, name, size, blur=0.0):
  """A face photo resized to ``size`` x ``size``, RGB float64 in [-1, 1], shape (size, size, 3)."""
  image = Image.open(shared_data / 'faces' / name).convert('RGB').resize((size, size), Image.Resampling.LANCZOS)
  if blur:
    image = image.filter(ImageFilter.GaussianBlur(blur))
  return np.asarray(image, np.float64) / 127.5 - 1.0


def _reference_lpips(params, x, y):
  """Independent float64 LPIPS-VGG: im2col 3x3 convs, reshape max pools, LPIPS's own normalize_tensor."""
  kernels = [np.asarray(k, np.float64) for k in params.kernels]
  biases = [np.asarray(b, np.float64) for b in params.biases]
  heads = [np.asarray(w, np.float64) for w in params.heads]

  def conv3x3_relu(a, kernel, bias):
    b, h, w, c = a.shape
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.stack([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=3)
    return np.maximum(cols.reshape(b * h * w, 9 * c) @ kernel.reshape(9 * c, -1) + bias, 0.0).reshape(b, h, w, -1)

  def max_pool(a):
    b, h, w, c = a.shape
    a = a[:, : h // 2 * 2, : w // 2 * 2]
    return a.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

  def features(a):
    a = (a - np.array([-0.030, -0.088, -0.188])) / np.array([0.458, 0.448, 0.450])
    out = []
    # Blocks of torchvision VGG16 up to relu5_3: 2, 2, 3, 3, 3 convs, a pool between blocks.
    convs = iter(zip(kernels, biases, strict=True))
    for block, n in enumerate((2, 2, 3, 3, 3)):
      if block:
        a = max_pool(a)
      for _ in range(n):
        a = conv3x3_relu(a, *next(convs))
      out.append(a)
    return out

  total = np.zeros(len(x))
  for fx, fy, w in zip(features(x), features(y), heads, strict=True):
    fx = fx / (np.sqrt((fx**2).sum(-1, keepdims=True)) + 1e-10)
    fy = fy / (np.sqrt((fy**2).sum(-1, keepdims=True)) + 1e-10)
    total += (((fx - fy) ** 2) @ w).mean(axis=(1, 2))
  return total


def test_weights_have_expected_layout(params):
  assert [k.shape for k in params.kernels][:3] == [(3, 3, 3, 64), (3, 3, 64, 64), (3, 3, 64, 128)]
  assert [h.shape for h in params.heads] == [(64,), (128,), (256,), (512,), (512,)]
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
  assert all(float(h.min()) >= 0.0 for h in params.heads)  # LPIPS clamps its heads to >= 0 in training


def test_matches_float64_reference(params, shared_data):
  # Two 32x32 pairs: a photo against a noisy copy, and two different faces.
  rng = np.random.default_rng(0)
  man, other = _photo(shared_data, 'man.jpg', 32), _photo(shared_data, '000134.jpg', 32)
  x = np.stack([man, man])
  y = np.stack([np.clip(man + 0.2 * rng.standard_normal(man.shape), -1, 1), other])
  with jax.default_matmul_precision('highest'):  # no TF32 if this runs on a GPU
    got = np.asarray(_lpips(params, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
  want = _reference_lpips(params, x, y)
  assert got.shape == (2,) and got.dtype == np.float32
  # float32 vs float64 through 13 convs with up to 4608-term sums: a rounding-error bound of
  # ~sqrt(4608) * 6e-8 ~ 4e-6 relative per layer (observed: 5e-8 on the distance). 1e-5 keeps
  # that margin while a wiring error is far outside it (swapping kernel H and W changes these
  # distances by 0.4% and 9%, BGR input by 21% and 7%).
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert want[1] > want[0] > 0.0


def test_identity_and_symmetry(params):
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
  y = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
  # XLA may fuse the normalisation of the x and y halves differently (1-ulp differences in the
  # unit features), which leaves ~1e-16 where different images give > 0.1.
  assert (np.asarray(_lpips(params, x, x)) < 1e-12).all()
  d_xy, d_yx = _lpips(params, x, y), _lpips(params, y, x)
  np.testing.assert_allclose(d_xy, d_yx, rtol=1e-5)
  assert (d_xy > 0.1).all()
  # Batch items are independent: the pair alone gives the same distance as in the batch.
  np.testing.assert_allclose(_lpips(params, x[:1], y[:1]), d_xy[:1], rtol=1e-5)


@pytest.mark.parametrize('size', [64, 128])
def test_grows_with_noise_level(params, shared_data, size):
  man = _photo(shared_data, 'man.jpg', size)
  noise = np.random.default_rng(1).standard_normal(man.shape)
  sigmas = np.array([0.02, 0.05, 0.1, 0.2, 0.4])
  noisy = np.clip(man + sigmas[:, None, None, None] * noise, -1.0, 1.0)
  clean = np.broadcast_to(man, noisy.shape)
  d = np.asarray(_lpips(params, jnp.asarray(clean, jnp.float32), jnp.asarray(noisy, jnp.float32)))
  assert (np.diff(d) > 0).all(), d
  assert d[0] > 0.0 and d[-1] > 5 * d[0], d


def test_blur_is_closer_than_another_face_and_gradient_flows(params, shared_data):
  man = _photo(shared_data, 'man.jpg', 64)
  blurred = _photo(shared_data, 'man.jpg', 64, blur=1.0)
  other = _photo(shared_data, '000134.jpg', 64)
  x = jnp.asarray(np.stack([man, man]), jnp.float32)
  d = np.asarray(_lpips(params, x, jnp.asarray(np.stack([blurred, other]), jnp.float32)))
  assert 0.0 < d[0] < 0.5 * d[1], d

  grad = jax.jit(jax.grad(lambda a, b: perceptual.lpips(params, a, b).sum()))(x[:1], jnp.asarray(blurred[None]))
  assert grad.shape == (1, 64, 64, 3)
  assert np.isfinite(grad).all()
  assert float(jnp.abs(grad).max()) > 0.0
  # A small step against the gradient lowers the distance (the loss can be descended).
  step = x[:1] - 1e-3 * grad / jnp.abs(grad).max()
  assert float(_lpips(params, step, jnp.asarray(blurred[None]))[0]) < float(d[0])


def test_rejects_bad_inputs(params):
  with pytest.raises(ValueError, match='vgg'):
    perceptual.load_lpips('alex')
  with pytest.raises(ValueError, match='16'):
    perceptual.lpips(params, jnp.zeros((1, 8, 32, 3)), jnp.zeros((1, 8, 32, 3)))
  with pytest.raises(ValueError, match='shape'):
    perceptual.lpips(params, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 16, 3)))
  with pytest.raises(ValueError, match='shape'):
    perceptual.lpips(params, jnp.zeros((32, 32, 3)), jnp.zeros((32, 32, 3)))


class _RunsCode:
  def __reduce__(self):
    return os.system, ('echo should-not-run',)


def test_restricted_unpickler_only_builds_numpy_arrays():
  tree = {'a': {'kernel': np.arange(6, dtype=np.float32).reshape(2, 3)}, 'b': [np.zeros(2)]}
  loaded = perceptual.restricted_load(pickle.dumps(tree, protocol=3))
  np.testing.assert_array_equal(loaded['a']['kernel'], tree['a']['kernel'])
  with pytest.raises(pickle.UnpicklingError, match='system'):
    perceptual.restricted_load(pickle.dumps(_RunsCode()))
  with pytest.raises(pickle.UnpicklingError, match='object'):
    perceptual.restricted_load(pickle.dumps(np.array([None, 1], dtype=object)))
