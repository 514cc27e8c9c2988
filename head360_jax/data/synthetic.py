"""A tiny fake dataset in the SynHead100 layout, for tests, benchmarks and smoke runs.

Legend: ``h w`` image size, ``v`` mesh vertices, ``f`` faces, ``l`` landmarks.

No renderer is involved: images are random soft-edged blobs (RGBA with a range of
partial alphas, smooth colours plus noise, so PNGs compress like real renders), labels
and meshes are random. Everything written is returned, so a test can compare what a
loader reads against it.
"""

import dataclasses
import io
import os
import pathlib

import numpy as np
from PIL import Image

from head360_jax import assets
from head360_jax.data import layout
from head360_jax.geometry import obj


@dataclasses.dataclass(frozen=True)
class FakeDataset:
  """What ``write_fake_dataset`` wrote.

  Attributes:
    root: dataset root.
    images: relpath (relative to ``images/``, haired and bald) -> (h, w, 4) uint8 RGBA.
    cameras: haired relpath -> (25,) float32 (the pose label).
    expressions: haired relpath -> (52,) float32 (the expression label).
    vertices: (identity, expression) -> (v, 3) float32 mesh positions.
    landmarks: (identity, expression) -> (l, 3) float32.
  """

  root: pathlib.Path
  images: dict[str, np.ndarray]
  cameras: dict[str, np.ndarray]
  expressions: dict[str, np.ndarray]
  vertices: dict[tuple[str, str], np.ndarray]
  landmarks: dict[tuple[str, str], np.ndarray]


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
  """(size, size, 4) uint8: a smooth-coloured disk whose soft edge has partial alphas."""
  coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
  rgb = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR), np.float64)
  rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255)
  y, x = np.mgrid[:size, :size] + 0.5
  distance = np.hypot(x - size * rng.uniform(0.4, 0.6), y - size * rng.uniform(0.4, 0.6))
  alpha = np.clip((0.4 * size - distance) / (0.15 * size), 0, 1) * 255
  return np.concatenate([rgb, alpha[..., None]], -1).round().astype(np.uint8)


def _png(rgba: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(rgba).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def write_fake_dataset(
  root: str | os.PathLike,
  *,
  resolution: int = 16,
  identities: tuple[str, ...] = ('fs_002', 'fs_010'),
  expressions: tuple[str, ...] = ('browDwonLeft', 'jawOpen'),
  views: int = layout.NUM_VIEWS,
  num_vertices: int = 10,
  num_landmarks: int = 4,
  bald: bool = False,
  seed: int = 0,
) -> FakeDataset:
  """Writes a random dataset in the SynHead100 layout (``layout.py``) under ``root``.

  Expression labels are random weights, deliberately unrelated to the folder names (the
  default names include the real dataset's ``browDwonLeft`` typo).

  Args:
    root: destination folder (created).
    resolution: image size, also the ``split_<res>`` name.
    identities, expressions: folder names.
    views: images per identity and expression (``0000.png`` ...).
    num_vertices, num_landmarks: mesh and landmark sizes.
    bald: also write ``split_<res>_bald`` (different images, no labels of its own).
    seed: seed of all random content.

  Returns:
    Everything written (``FakeDataset``).
  """
  root = pathlib.Path(root)
  rng = np.random.default_rng(seed)
  images, cameras, weights, vertices, landmarks = {}, {}, {}, {}, {}
  for identity in identities:
    for expression in expressions:
      key = (identity, expression)
      vertices[key] = rng.normal(0, 0.1, (num_vertices, 3)).astype(np.float32)
      landmarks[key] = rng.normal(0, 0.1, (num_landmarks, 3)).astype(np.float32)
      faces = np.stack([np.zeros(num_vertices - 2), np.arange(1, num_vertices - 1), np.arange(2, num_vertices)], -1)
      obj.write_obj(layout.mesh_path(root, *key), vertices[key], faces.astype(np.int32))
      lines = ''.join(f'{x:.9g} {y:.9g} {z:.9g}\n' for x, y, z in landmarks[key].tolist())
      assets.atomic_write_bytes(layout.landmarks_path(root, *key), lines.encode())
      for view in range(views):
        for is_bald in (False, True) if bald else (False,):
          relpath = layout.image_relpath(resolution, identity, expression, view, bald=is_bald)
          images[relpath] = _blob(rng, resolution)
          assets.atomic_write_bytes(root / layout.IMAGES / relpath, _png(images[relpath]))
        relpath = layout.image_relpath(resolution, identity, expression, view)
        cameras[relpath] = rng.normal(0, 1, 25).astype(np.float32)
        weights[relpath] = rng.uniform(0, 1, 52).astype(np.float32)
  layout.write_labels(root / layout.IMAGES / layout.POSE_JSON, cameras)
  layout.write_labels(root / layout.IMAGES / layout.EXPRESSION_JSON, weights)
  return FakeDataset(root, images, cameras, weights, vertices, landmarks)
