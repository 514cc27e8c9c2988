"""Tests of PNG decoding, compositing on white and resizing."""

import io

import numpy as np
import pytest
from PIL import Image

from head360_jax.data import transforms


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def _rgba(seed: int = 0, size: int = 12) -> np.ndarray:
  rgba = np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8)
  rgba[0, :, 3], rgba[1, :, 3] = 0, 255  # make sure fully transparent and opaque pixels occur
  return rgba


def test_composite_on_white_matches_numpy():
  rgba = _rgba()
  image = transforms.decode_image(_png(rgba), 'x.png')
  # Independent float64 computation of rgb·a + (1 − a), then x / 127.5 − 1 in 8-bit units.
  a = rgba[..., 3:] / 255.0
  expected = (rgba[..., :3] * a + 255.0 * (1 - a)) / 127.5 - 1
  assert image.dtype == np.float32 and image.shape == (12, 12, 3)
  np.testing.assert_allclose(image, expected, atol=1e-6)
  np.testing.assert_array_equal(image[0], 1.0)  # transparent → white
  assert image.min() >= -1 and image.max() <= 1


def test_opaque_rgb_png():
  rgb = _rgba()[..., :3].copy()
  image = transforms.decode_image(_png(rgb), 'x.png')
  np.testing.assert_allclose(image, rgb / 127.5 - 1, atol=1e-6)


def test_resize_preserves_a_ramp_and_constants():
  size, target = 32, 16
  ramp = np.broadcast_to(np.linspace(-0.9, 0.9, size, dtype=np.float32)[None, :, None], (size, size, 3))
  small = transforms.resize(ramp, target)
  assert small.shape == (target, target, 3) and small.dtype == np.float32
  # A symmetric interpolation filter reproduces a linear function at the new pixel centres
  # away from the borders: new pixel j covers old pixels 2j and 2j + 1.
  centres = (ramp[0, 0::2, 0] + ramp[0, 1::2, 0]) / 2
  np.testing.assert_allclose(small[:, 3:-3, 0], np.broadcast_to(centres[3:-3], (target, target - 6)), atol=1e-4)
  np.testing.assert_allclose(transforms.resize(np.full((8, 8, 3), 0.25, np.float32), 20), 0.25, atol=1e-5)


def test_decode_with_resolution():
  rgba = _rgba(size=16)
  image = transforms.decode_image(_png(rgba), 'x.png', expected_size=16, resolution=8)
  full = transforms.decode_image(_png(rgba), 'x.png')
  assert image.shape == (8, 8, 3)
  assert -1 <= image.min() and image.max() <= 1
  # The resampling filter's weights sum to one, so downsampling keeps the image mean.
  np.testing.assert_allclose(image.mean(), full.mean(), atol=0.02)


def test_corrupt_and_truncated_png_name_the_file():
  data = _png(_rgba())
  for bad in (data[: len(data) // 2], b'not a png at all'):
    with pytest.raises(ValueError, match='bad/0001.png') as error:
      transforms.decode_image(bad, 'bad/0001.png')
    assert isinstance(error.value.__cause__, (OSError, SyntaxError))


def test_wrong_size_names_the_file():
  with pytest.raises(ValueError, match=r'x\.png: image is 12x12, expected 16x16'):
    transforms.decode_image(_png(_rgba()), 'x.png', expected_size=16)


def test_decode_transform_replaces_png():
  rgba = _rgba()
  record = transforms.DecodeImage(expected_size=12).map({'png': _png(rgba), 'path': 'x.png', 'view': 3})
  assert set(record) == {'image', 'path', 'view'}
  np.testing.assert_allclose(record['image'], transforms.composite_on_white(rgba))


def test_decode_image_and_alpha():
  rgba = _rgba(size=16)
  image, alpha = transforms.decode_image_and_alpha(_png(rgba), 'x.png')
  np.testing.assert_array_equal(image, transforms.decode_image(_png(rgba), 'x.png'))
  np.testing.assert_allclose(alpha[..., 0], rgba[..., 3] / 255.0, atol=1e-7)
  assert alpha.shape == (16, 16, 1) and alpha.dtype == np.float32
  small, small_alpha = transforms.decode_image_and_alpha(_png(rgba), 'x.png', resolution=8)
  assert small.shape == (8, 8, 3) and small_alpha.shape == (8, 8, 1)
  assert 0 <= small_alpha.min() and small_alpha.max() <= 1
  np.testing.assert_allclose(small_alpha.mean(), alpha.mean(), atol=0.02)  # resampling keeps the mean
  assert transforms.decode_image_and_alpha(_png(rgba), 'x.png', alpha=False)[1] is None
