"""L1, PSNR and SSIM (head360_jax.metrics.image) against scikit-image and a numpy masked mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage
from PIL import Image

from head360_jax.metrics import image

_psnr = jax.jit(image.psnr, static_argnames='data_range')
_ssim = jax.jit(image.ssim, static_argnames='data_range')


def _skimage_ssim(x, y, data_range=2.0, full=False):
  """Wang et al. 2004 settings, as scikit-image's docs give them."""
  return skimage.metrics.structural_similarity(
    x,
    y,
    gaussian_weights=True,
    sigma=1.5,
    use_sample_covariance=False,
    data_range=data_range,
    channel_axis=-1,
    full=full,
  )


def _pairs(rng, shape, noise=0.2):
  """A batch of uniform images in [-1, 1] and noisy copies, float64."""
  x = rng.uniform(-1.0, 1.0, shape)
  return x, np.clip(x + noise * rng.standard_normal(shape), -1.0, 1.0)


def _photos(shared_data):
  """The astronaut (512²) against a noisy copy and against the man photo, float64 in [-1, 1]."""
  astronaut = skimage.data.astronaut().astype(np.float64) / 127.5 - 1.0
  man = Image.open(shared_data / 'faces' / 'man.jpg').convert('RGB').resize((512, 512), Image.Resampling.LANCZOS)
  man = np.asarray(man, np.float64) / 127.5 - 1.0
  noisy = np.clip(astronaut + 0.1 * np.random.default_rng(0).standard_normal(astronaut.shape), -1.0, 1.0)
  return np.stack([astronaut, astronaut]), np.stack([noisy, man])


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def test_psnr_matches_skimage(shared_data):
  rng = np.random.default_rng(0)
  for x, y in [_pairs(rng, (3, 23, 40, 3)), _photos(shared_data)]:
    got = np.asarray(_psnr(*_f32(x, y)))
    want = [skimage.metrics.peak_signal_noise_ratio(a, b, data_range=2.0) for a, b in zip(x, y, strict=True)]
    assert got.shape == (len(x),) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
  # [0, 1] images with data_range 1 give the same figure as [-1, 1] with 2.
  x, y = _pairs(rng, (2, 16, 16, 1))
  np.testing.assert_allclose(_psnr(*_f32((x + 1) / 2, (y + 1) / 2), data_range=1.0), _psnr(*_f32(x, y)), rtol=1e-6)


@pytest.mark.parametrize('shape', [(2, 11, 11, 3), (3, 37, 64, 3), (2, 16, 24, 1)])
def test_ssim_matches_skimage_on_random_images(shape):
  x, y = _pairs(np.random.default_rng(1), shape)
  got = np.asarray(_ssim(*_f32(x, y)))
  want = [_skimage_ssim(a, b) for a, b in zip(x, y, strict=True)]
  assert got.shape == (shape[0],) and got.dtype == np.float32
  # float32 local moments vs skimage's float64 (observed <= 4e-7).
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_ssim_matches_skimage_on_photos(shared_data):
  x, y = _photos(shared_data)
  got = np.asarray(_ssim(*_f32(x, y)))
  want = [_skimage_ssim(a, b) for a, b in zip(x, y, strict=True)]
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert want[0] > 0.3 > want[1]  # noise keeps the structure, another photo does not
  # Scaling the values and data_range together leaves SSIM unchanged (a shift would not: the
  # luminance term compares means to C1).
  np.testing.assert_allclose(_ssim(*_f32(x / 2, y / 2), data_range=1.0), got, atol=1e-5)


def test_identical_images():
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1.0, maxval=1.0)
  np.testing.assert_allclose(_ssim(x, x), 1.0, atol=1e-6)
  assert np.isposinf(np.asarray(_psnr(x, x))).all()


def _masks(rng, b, h, w):
  """Per item: all ones, a binary rectangle, soft random weights."""
  rect = np.zeros((h, w))
  rect[h // 4 : 3 * h // 4, w // 3 :] = 1.0
  return np.stack([np.ones((h, w)), rect, rng.uniform(0.0, 1.0, (h, w))][:b])


def test_masked_psnr_matches_numpy():
  rng = np.random.default_rng(2)
  x, y = _pairs(rng, (3, 20, 28, 3))
  mask = _masks(rng, 3, 20, 28)
  mse = (mask[..., None] * (x - y) ** 2).sum(axis=(1, 2, 3)) / (3 * mask.sum(axis=(1, 2)))
  want = 10 * np.log10(4.0 / mse)
  got = _psnr(*_f32(x, y), mask=jnp.asarray(mask, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(_psnr(*_f32(x, y), mask=jnp.asarray(mask[..., None], jnp.float32)), got, rtol=1e-7)
  # The all-ones mask is the plain PSNR; the binary one that of the rectangle alone.
  np.testing.assert_allclose(got[0], _psnr(*_f32(x[:1], y[:1]))[0], rtol=1e-6)
  inside = np.s_[:, 5:15, 9:]
  np.testing.assert_allclose(got[1], _psnr(*_f32(x[1:2][inside], y[1:2][inside]))[0], rtol=1e-6)


def test_l1_matches_numpy_with_and_without_mask():
  rng = np.random.default_rng(4)
  x, y = _pairs(rng, (3, 20, 28, 3))
  mask = _masks(rng, 3, 20, 28)
  l1 = jax.jit(image.l1)
  np.testing.assert_allclose(l1(*_f32(x, y)), np.abs(x - y).mean(axis=(1, 2, 3)), rtol=1e-6)
  want = (mask[..., None] * np.abs(x - y)).sum(axis=(1, 2, 3)) / (3 * mask.sum(axis=(1, 2)))
  np.testing.assert_allclose(l1(*_f32(x, y), mask=jnp.asarray(mask, jnp.float32)), want, rtol=1e-6)
  assert np.isnan(l1(*_f32(x[:1], y[:1]), mask=jnp.zeros((1, 20, 28)))[0])  # an empty mask: nan, like PSNR
  with pytest.raises(ValueError, match='shape'):
    image.l1(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 15, 3)))


def test_masked_ssim_matches_numpy():
  rng = np.random.default_rng(3)
  x, y = _pairs(rng, (3, 30, 26, 3))
  mask = _masks(rng, 3, 30, 26)
  want = []
  for a, b, m in zip(x, y, mask, strict=True):
    _, s = _skimage_ssim(a, b, full=True)  # (h, w, c) map before skimage's crop
    s, m = s[5:-5, 5:-5], m[5:-5, 5:-5, None]
    want.append((s * m).sum() / (m.sum() * s.shape[-1]))
  got = _ssim(*_f32(x, y), mask=jnp.asarray(mask, jnp.float32))
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_allclose(got[0], _ssim(*_f32(x[:1], y[:1]))[0], atol=1e-6)


def test_rejects_bad_inputs():
  a = jnp.zeros((1, 16, 16, 3))
  for fn in (image.psnr, image.ssim):
    with pytest.raises(ValueError, match='shape'):
      fn(a, jnp.zeros((1, 16, 15, 3)))
    with pytest.raises(ValueError, match='shape'):
      fn(a[0], a[0])
    with pytest.raises(ValueError, match='mask'):
      fn(a, a, mask=jnp.ones((1, 16, 16, 3)))
    with pytest.raises(ValueError, match='mask'):
      fn(a, a, mask=jnp.ones((16, 16)))
  with pytest.raises(ValueError, match='11'):
    image.ssim(jnp.zeros((1, 10, 32, 3)), jnp.zeros((1, 10, 32, 3)))
