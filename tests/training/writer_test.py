"""Image grids and the TensorBoard writer (tensorboardX; TensorFlow is never imported)."""

import sys

import numpy as np
import pytest
from PIL import Image

from head360_jax.metrics import writer as writer_lib


def test_image_grid_tiles_and_maps_to_uint8():
  images = np.stack([np.full((2, 3, 3), v, np.float32) for v in (-1.0, 0.0, 1.0)])
  grid = writer_lib.image_grid(images, columns=2)
  assert grid.shape == (4, 6, 3) and grid.dtype == np.uint8
  assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 128 and grid[2, 0, 0] == 255
  assert grid[2, 3, 0] == 255  # the empty cell is white
  assert writer_lib.image_grid(images[:, :1, :1], size=4).shape == (8, 8, 3)  # nearest-neighbour upsampling
  with pytest.raises(ValueError, match='expected'):
    writer_lib.image_grid(np.zeros((2, 2, 2)))


def test_writer_writes_event_file_without_tensorflow(tmp_path):
  writer = writer_lib.Writer(tmp_path)
  writer.scalars(1, {'g/loss': 1.5})
  grid = writer_lib.image_grid(np.linspace(-1, 1, 48).reshape(1, 4, 4, 3))
  writer.images(12, {'samples/image': grid})
  writer.close()
  events = list(tmp_path.glob('events.out.tfevents.*'))
  assert len(events) == 1 and events[0].stat().st_size > 0
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'samples' / 'samples_image_000012.png')), grid)
  assert 'tensorflow' not in sys.modules
