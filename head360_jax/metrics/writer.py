"""TensorBoard scalars and image grids without TensorFlow (tensorboardX), and a progress line.

Legend: ``n`` images, ``h w`` image size. Images arrive NHWC in [-1, 1].

``clu.metric_writers`` imports TensorFlow (stack-notes §2(g)), so this is a thin writer
over ``tensorboardX.SummaryWriter``. Only process 0 writes; the others are silent.
"""

import math
import pathlib
import time

import jax
import numpy as np
from absl import logging
from PIL import Image


def image_grid(images: np.ndarray, columns: int | None = None, size: int | None = None) -> np.ndarray:
  """Tiles images in [-1, 1] into one uint8 (rows·h, columns·w, 3) grid.

  Args:
    images: (n, h, w, c) with c 1 or 3.
    columns: images per row (default ``ceil(sqrt(n))``).
    size: resize each image to ``size``² first (nearest neighbour, so raw renders keep
      their pixels next to the high-resolution ones).

  Raises:
    ValueError: if ``images`` is not 4-D with 1 or 3 channels.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'expected (n, h, w, 1 or 3) images, got {images.shape}')
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if size is not None and images.shape[1] != size:
    rows = np.arange(size) * images.shape[1] // size
    cols = np.arange(size) * images.shape[2] // size
    images = images[:, rows][:, :, cols]
  n, h, w, _ = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  grid = np.ones((rows * h, columns * w, 3), np.float32)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
  return np.clip(np.rint((grid + 1) * 127.5), 0, 255).astype(np.uint8)


class Writer:
  """Scalars and image grids into ``logdir`` (TensorBoard event files); a no-op off process 0.

  Image grids are also written as ``logdir/samples/<name>_<step>.png`` (``/`` in the name
  becomes ``_``), so samples can be looked at without TensorBoard.
  """

  def __init__(self, logdir: str | pathlib.Path):
    self._writer = None
    self._samples = pathlib.Path(logdir) / 'samples'
    if jax.process_index() == 0:
      import tensorboardX  # imported here: other processes never open event files

      self._writer = tensorboardX.SummaryWriter(str(logdir))

  def scalars(self, step: int, values: dict[str, float]) -> None:
    """Writes ``{name: value}`` at ``step``."""
    if self._writer is not None:
      for name, value in values.items():
        self._writer.add_scalar(name, float(value), step)

  def images(self, step: int, grids: dict[str, np.ndarray]) -> None:
    """Writes ``{name: (h, w, 3) uint8 grid}`` at ``step`` (see ``image_grid``)."""
    if self._writer is not None:
      self._samples.mkdir(parents=True, exist_ok=True)
      for name, grid in grids.items():
        self._writer.add_image(name, grid, step, dataformats='HWC')
        Image.fromarray(grid).save(self._samples / f'{name.replace("/", "_")}_{step:06d}.png')

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


class Progress:
  """Logs ``step n/N, images/s, chosen metrics`` each time it is called (absl INFO, process 0 only)."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int = 0):
    self._total, self._batch = total_steps, batch_size
    self._last_step, self._last_time = start_step, time.perf_counter()

  def __call__(self, step: int, metrics: dict[str, float]) -> float:
    """Logs the line for ``step`` and returns the images/s since the previous call."""
    now = time.perf_counter()
    rate = (step - self._last_step) * self._batch / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    shown = '  '.join(f'{name} {value:.4g}' for name, value in metrics.items())
    if jax.process_index() == 0:
      logging.info('step %d/%d  %.1f images/s  %s', step, self._total, rate, shown)
    return rate
