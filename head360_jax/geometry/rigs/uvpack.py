"""Repacking the UV islands of a cropped mesh so that they fill the unit square.

Legend: ``t`` texture coordinates, ``f`` triangles, ``i`` islands, ``h w`` mask rows/columns.

A head cut out of a full-body atlas (MakeHuman hm08) uses a third of the texture square;
the generator's neural texture is only 256² (reference-spec §3.4), so unused atlas space
would cost texture resolution. Each island (connected set of UV corners) keeps its shape
and orientation; all islands share one scale, so texel density stays proportional to the
source. Islands are placed by shelf packing (tallest first) with a gap between them, and
UV-space masks are resampled with the same per-island maps.
"""

import dataclasses

import numpy as np
import scipy.ndimage
import scipy.sparse
import scipy.sparse.csgraph


@dataclasses.dataclass(frozen=True)
class Packing:
  """Per-island maps ``uv' = (uv - src_lo) * scale + dst_lo``.

  Attributes:
    src_lo: (i, 2) lower corner of each island's source box.
    src_hi: (i, 2) upper corner of each island's source box.
    dst_lo: (i, 2) lower corner of each island's packed box.
    scale: the common scale.
    island_of_uv: (t,) island of each UV coordinate.
  """

  src_lo: np.ndarray
  src_hi: np.ndarray
  dst_lo: np.ndarray
  scale: float
  island_of_uv: np.ndarray

  def apply(self, uvs: np.ndarray) -> np.ndarray:
    """Maps the (t, 2) source UVs to (t, 2) float32 packed UVs."""
    i = self.island_of_uv
    return ((uvs - self.src_lo[i]) * self.scale + self.dst_lo[i]).astype(np.float32)

  def resample(self, image: np.ndarray, size: int) -> np.ndarray:
    """Resamples a source UV-space image (h, w) (row 0 = v = 1) into the packed layout.

    Returns:
      (size, size) float32 image; texels outside every island box are 0.
    """
    out = np.zeros((size, size), np.float32)
    centres = (np.arange(size) + 0.5) / size
    for lo, hi, dst in zip(self.src_lo, self.src_hi, self.dst_lo, strict=True):
      dst_hi = dst + (hi - lo) * self.scale
      cols = np.flatnonzero((centres >= dst[0]) & (centres < dst_hi[0]))
      rows = np.flatnonzero((1 - centres >= dst[1]) & (1 - centres < dst_hi[1]))
      if not len(cols) or not len(rows):
        continue
      u = (centres[cols] - dst[0]) / self.scale + lo[0]
      v = (1 - centres[rows] - dst[1]) / self.scale + lo[1]
      uu, vv = np.meshgrid(u, v)
      coords = np.stack([(1 - vv) * image.shape[0] - 0.5, uu * image.shape[1] - 0.5])
      out[rows[:, None], cols[None, :]] = scipy.ndimage.map_coordinates(image, coords, order=1, mode='nearest')
    return out


def pack(uvs: np.ndarray, face_uvs: np.ndarray, gap: float = 0.004) -> Packing:
  """Finds a packing of the UV islands of ``face_uvs`` into the unit square.

  Args:
    uvs: (t, 2) source texture coordinates (every one used by some face).
    face_uvs: (f, 3) indices into ``uvs``.
    gap: space kept around each island, in source UV units.

  Returns:
    The ``Packing``; its ``apply(uvs)`` lies in [0, 1]².
  """
  n = len(uvs)
  rows = np.concatenate([face_uvs[:, 0], face_uvs[:, 1]])
  cols = np.concatenate([face_uvs[:, 1], face_uvs[:, 2]])
  graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
  count, island = scipy.sparse.csgraph.connected_components(graph, directed=False)
  lo = np.full((count, 2), np.inf)
  hi = np.full((count, 2), -np.inf)
  np.minimum.at(lo, island, uvs)
  np.maximum.at(hi, island, uvs)
  lo, hi = lo - gap, hi + gap
  size = hi - lo
  order = np.argsort(-size[:, 1], kind='stable')
  best = None
  # Try every strip width between the widest island and all islands side by side; keep
  # the layout whose bounding square is smallest.
  for width in np.linspace(size[:, 0].max(), size[:, 0].sum(), 64):
    pos = np.zeros((count, 2))
    x = y = shelf = 0.0
    for i in order:
      if x + size[i, 0] > width + 1e-12:
        x, y = 0.0, y + shelf
        shelf = 0.0
      pos[i] = (x, y)
      x += size[i, 0]
      shelf = max(shelf, size[i, 1])
    side = max((pos + size).max(axis=0))
    if best is None or side < best[0]:
      best = (side, pos)
  side, pos = best
  scale = 1.0 / side
  # Shelves run top-down so the tallest island sits at the top, as in the source atlases;
  # ``lo`` includes the gap, so island content starts ``gap`` inside its box.
  dst = np.stack([pos[:, 0] * scale, 1.0 - (pos[:, 1] + size[:, 1]) * scale], axis=1)
  return Packing(src_lo=lo, src_hi=hi, dst_lo=dst, scale=scale, island_of_uv=island)
