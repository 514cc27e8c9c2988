"""Per-record grain transforms: PNG decoding, compositing on white, resizing, [-1, 1].

Legend: ``h w`` image rows/columns, ``r`` target resolution.

SynHead100 images are RGBA renders; the reference composites them over white
(``rgb·a + (1 − a)``) and feeds the networks ``x / 127.5 − 1`` (reference-spec §1.2).
We composite in float (the reference rounds back to uint8 in between) and resize, when
asked, after compositing so that transparent pixels' colours never bleed into the head.
"""

import io

import grain
import numpy as np
from PIL import Image


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
  """Composites an RGBA image over white and maps it to [-1, 1].

  Args:
    rgba: (h, w, 4) uint8 straight (not premultiplied) alpha.

  Returns:
    (h, w, 3) float32 in [-1, 1]: ``2·(rgb·a + 1 − a) − 1`` with ``rgb, a`` in [0, 1].

  Raises:
    ValueError: if ``rgba`` is not (h, w, 4) uint8.
  """
  if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[-1] != 4:
    raise ValueError(f'expected (h, w, 4) uint8 RGBA, got {rgba.shape} {rgba.dtype}')
  # Rearranged to 2a/255² · (rgb − 255) + 1 (rgb, a in 0..255) and computed in place:
  # this runs per image in the input threads, and fewer passes over memory matter at 512².
  image = rgba[..., :3].astype(np.float32)
  image -= 255.0
  image *= rgba[..., 3:].astype(np.float32) * np.float32(2.0 / 255.0**2)
  image += 1.0
  return image


def resize(image: np.ndarray, resolution: int) -> np.ndarray:
  """Resizes an (h, w, c) float image to (r, r, c) with pillow's antialiased Lanczos filter.

  Each channel is resized in pillow's 32-bit float mode, so no precision is lost to uint8.
  Lanczos rings slightly at edges; values are clipped back to [-1, 1].

  Returns:
    (r, r, c) float32 in [-1, 1].
  """
  channels = [
    np.asarray(
      Image.fromarray(np.ascontiguousarray(image[..., k], np.float32)).resize(
        (resolution, resolution), Image.Resampling.LANCZOS
      )
    )
    for k in range(image.shape[-1])
  ]
  return np.clip(np.stack(channels, axis=-1), -1.0, 1.0)


def decode_image(
  data: bytes, path: str, *, expected_size: int | None = None, resolution: int | None = None
) -> np.ndarray:
  """Decodes an encoded image (PNG), composites it on white and maps it to [-1, 1].

  Images without alpha are treated as opaque.

  Args:
    data: the encoded file contents.
    path: the file's path, for error messages only.
    expected_size: if given, the image must be ``expected_size`` pixels square.
    resolution: if given and different from the image size, the output is resized to it.

  Returns:
    (h, w, 3) float32 in [-1, 1], or (r, r, 3) when ``resolution`` is given.

  Raises:
    ValueError: naming ``path``, if the data cannot be decoded (corrupt or truncated
      file; the pillow error is chained) or the image is not ``expected_size`` square.
  """
  return decode_image_and_alpha(data, path, expected_size=expected_size, resolution=resolution, alpha=False)[0]


def decode_image_and_alpha(
  data: bytes, path: str, *, expected_size: int | None = None, resolution: int | None = None, alpha: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
  """``decode_image`` that also returns the alpha channel (the foreground mask of a render).

  Returns:
    ``(image, alpha)``: the image as ``decode_image``; alpha (h, w, 1) float32 in [0, 1]
    (resized like the image, clipped), or None when ``alpha`` is False.

  Raises:
    ValueError: as ``decode_image``.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      rgba = np.asarray(image.convert('RGBA'))
  except (OSError, SyntaxError, ValueError) as e:  # pillow's errors for bad/truncated files
    raise ValueError(f'{path}: cannot decode image ({e})') from e
  if expected_size is not None and rgba.shape[:2] != (expected_size, expected_size):
    raise ValueError(f'{path}: image is {rgba.shape[1]}x{rgba.shape[0]}, expected {expected_size}x{expected_size}')
  image = composite_on_white(rgba)
  mask = rgba[..., 3:].astype(np.float32) / 255.0 if alpha else None
  if resolution is not None and image.shape[:2] != (resolution, resolution):
    image = resize(image, resolution)
    if mask is not None:
      mask = np.clip((resize(mask * 2.0 - 1.0, resolution) + 1.0) / 2.0, 0.0, 1.0)
  return image, mask


class DecodeImage(grain.transforms.Map):
  """Replaces a record's ``png`` bytes by ``image`` (h, w, 3) float32 in [-1, 1] (and ``alpha`` if asked).

  Expects the ``png`` and ``path`` fields of ``sources.SynHeadSource`` records; other
  fields pass through unchanged. See ``decode_image`` for the arguments and errors; with
  ``alpha`` the record also gets ``alpha`` (h, w, 1) float32 in [0, 1]
  (``decode_image_and_alpha``).
  """

  def __init__(self, *, expected_size: int | None = None, resolution: int | None = None, alpha: bool = False):
    self.expected_size = expected_size
    self.resolution = resolution
    self.alpha = alpha

  def map(self, record: dict) -> dict:
    record = dict(record)
    record['image'], mask = decode_image_and_alpha(
      record.pop('png'), record['path'], expected_size=self.expected_size, resolution=self.resolution, alpha=self.alpha
    )
    if self.alpha:
      record['alpha'] = mask
    return record
