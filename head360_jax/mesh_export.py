"""Mesh export: the parametric mesh as OBJ, and the radiance field's surface by marching cubes as PLY.

Legend: ``v`` vertices, ``f`` faces, ``t`` UV coordinates, ``g`` grid side, ``T`` texture side,
``w`` style width.

* ``parametric_obj``: ``bilinear.vertices(model, s, b)`` (paper Eq. 1) with the model's UVs,
  in mesh units (``docs/conventions.md``), written by ``geometry.obj.write_obj`` (float32
  exact through ``obj.read_obj``); with a ``texture``, also ``<stem>.mtl`` and ``<stem>.png``.
* ``bake_texture``: that texture: every texel of the UV layout (``T²``, rasterised in UV space
  by ``rendering.rasterize``) is mapped to its point on the mesh surface, where the radiance
  field's colour (the decoder's RGB channels, as for the PLY below) is read.
* ``density_grid`` + ``field_surface``: the generator's raw density σ on a ``g³`` grid over
  the planes' cube (``model.box_warp`` world units a side, world = ``camera.WORLD_PER_MESH`` ×
  mesh units), then scikit-image's marching cubes at ``level`` (raw σ; the renderer's density
  is ``softplus(σ − 1)`` per world unit, ``rendering/volume.py``), returned in mesh units so
  it overlays the parametric mesh. Colours: the decoder's first three feature channels
  (the raw render's RGB, in [0, 1]) at the surface vertices.
"""

import functools
import pathlib

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import trimesh
from flax import nnx
from skimage import measure

from head360_jax import assets
from head360_jax.geometry import bilinear, camera, obj
from head360_jax.rendering import rasterize

_rasterize = jax.jit(rasterize.rasterize, static_argnums=3)  # (uv positions, depth, faces, texture side)


def parametric_obj(
  path: str | pathlib.Path,
  model: bilinear.BilinearModel,
  s: np.ndarray,
  b: np.ndarray,
  texture: np.ndarray | None = None,
) -> np.ndarray:
  """Writes the mesh of shape code ``s`` (r,) and ARKit weights ``b`` (52,) with UVs; returns its (v, 3) vertices.

  ``texture`` (T, T, 3) uint8 (``bake_texture``) is written next to the OBJ as ``<stem>.png``
  with a ``<stem>.mtl`` material (``map_Kd``) that the OBJ names.
  """
  path = pathlib.Path(path)
  vertices = np.asarray(bilinear.vertices(model, s, b), np.float32)
  material = None
  if texture is not None:
    assets.atomic_write_bytes(path.with_suffix('.png'), iio.imwrite('<bytes>', np.asarray(texture), extension='.png'))
    mtl = f'newmtl head\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {path.with_suffix(".png").name}\n'
    assets.atomic_write_bytes(path.with_suffix('.mtl'), mtl.encode())
    material = (path.with_suffix('.mtl').name, 'head')
  obj.write_obj(path, vertices, model.faces, model.uvs, model.face_uvs, material=material)
  return vertices


def uv_surface_points(
  vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, face_uvs: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
  """The mesh point under every texel centre of a ``resolution²`` texture: ((T, T, 3) mesh units, (T, T) covered).

  Texture row 0 holds ``v = 1`` (image convention, ``rendering/texture.uv_to_grid``); texel
  ``(row, col)`` has its centre at ``u = (col + 0.5) / T``, ``v = 1 - (row + 0.5) / T``.
  Texels outside every UV triangle are not covered (their points are 0).
  """
  uvs = np.asarray(uvs, np.float32)
  screen = np.stack([uvs[:, 0] * resolution, (1.0 - uvs[:, 1]) * resolution], axis=-1)
  fragments = _rasterize(  # depth 1: in front of the near plane at 0
    jnp.asarray(screen), jnp.ones(len(uvs), jnp.float32), jnp.asarray(face_uvs, jnp.int32), resolution
  )
  face_id, bary = np.asarray(fragments.face_id), np.asarray(fragments.barycentrics)
  corners = np.asarray(vertices, np.float32)[np.asarray(faces)[np.maximum(face_id, 0)]]  # (T, T, 3, 3)
  points = np.einsum('hwk,hwkc->hwc', bary, corners)
  covered = face_id >= 0
  return np.where(covered[..., None], points, 0.0).astype(np.float32), covered


def bake_texture(
  generator,
  ws: dict,
  vertices: np.ndarray,
  model: bilinear.BilinearModel,
  resolution: int = 256,
  *,
  bald: bool = False,
  chunk: int = 32768,
) -> np.ndarray:
  """An RGB texture (T, T, 3) uint8 for the model's UV layout: the field's colour on the mesh surface.

  Each covered texel (``uv_surface_points``) gets the decoder's RGB at its surface point;
  the rest take the nearest covered texel's colour, so bilinear lookups at UV seams do not
  bleed background in. The colour is the raw (neural-resolution) render's, without
  super-resolution; with hair it is the hair where hair covers the scalp (``bald``: without).

  Raises:
    ValueError: if no texel is covered (a model without UVs).
  """
  from scipy import ndimage

  points, covered = uv_surface_points(vertices, model.faces, model.uvs, model.face_uvs, resolution)
  if not covered.any():
    raise ValueError('the UV layout covers no texel')
  world = points[covered] * camera.WORLD_PER_MESH
  _, rgb = _query(generator, ws, vertices, world, bald, chunk)
  texture = np.zeros((resolution, resolution, 3), np.float32)
  texture[covered] = rgb
  nearest = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
  texture = texture[nearest[0], nearest[1]]
  return np.clip(np.rint(texture * 255), 0, 255).astype(np.uint8)


def _query(generator, ws: dict, vertices: np.ndarray, points: np.ndarray, bald: bool, chunk: int):
  """σ (p,) and RGB (p, 3) of the field at world points (p, 3), ``chunk`` points per call (one program)."""
  field = _field_fn(generator)
  ws = jax.tree.map(jnp.asarray, ws)
  hair = jnp.float32(0.0 if bald else 1.0)
  sigma, rgb = [], []
  for start in range(0, len(points), chunk):
    block = np.zeros((chunk, 3), np.float32)
    part = points[start : start + chunk]
    block[: len(part)] = part
    out = field(ws, jnp.asarray(vertices), jnp.asarray(block), hair)
    sigma.append(np.asarray(out[0])[: len(part)])
    rgb.append(np.asarray(out[1])[: len(part)])
  return np.concatenate(sigma), np.concatenate(rgb)


@functools.lru_cache(maxsize=4)  # one compiled field per generator
def _field_fn(generator):
  graphdef, params, rest = nnx.split(generator, nnx.Param, ...)

  @jax.jit
  def field(params, rest, ws, vertices, points, hair):
    g = nnx.merge(graphdef, params, rest)
    out = g.field(g.scene(ws, vertices[None], noise_mode='const', hair=hair[None]), points[None])
    return out['sigma'][0, :, 0], out['features'][0, :, :3]

  return lambda *args: field(params, rest, *args)


def density_grid(
  generator, ws: dict, vertices: np.ndarray, resolution: int = 96, *, bald: bool = False, chunk: int = 32768
) -> tuple[np.ndarray, np.ndarray]:
  """σ on a ``resolution³`` grid over the planes' cube, and the grid's world coordinates per axis.

  Args:
    generator: the ``Head360Generator`` (e.g. ``HeadRenderer.generator``).
    ws: styles ``{'texture', 'hair', 'sr'}`` each (1, w) (``HeadRenderer.styles``).
    vertices: (v, 3) the head's mesh, mesh units.
    resolution: grid side ``g``.
    bald: without the static/hair planes.

  Returns:
    ``(sigma (g, g, g) float32 indexed [x, y, z], axis (g,) world units)``.
  """
  half = generator.config.box_warp / 2
  axis = np.linspace(-half, half, resolution, dtype=np.float32)
  points = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(-1, 3)
  sigma, _ = _query(generator, ws, vertices, points, bald, chunk)
  return sigma.reshape(resolution, resolution, resolution), axis


def field_surface(
  generator, ws: dict, vertices: np.ndarray, resolution: int = 96, *, level: float = 10.0, bald: bool = False
) -> trimesh.Trimesh:
  """The radiance field's iso-surface ``σ = level`` in mesh units, with vertex colours.

  Raises:
    ValueError: if σ never crosses ``level`` on the grid (no surface).
  """
  sigma, axis = density_grid(generator, ws, vertices, resolution, bald=bald)
  if not sigma.min() < level < sigma.max():
    raise ValueError(f'density never crosses level {level} (range {sigma.min():.3g} to {sigma.max():.3g})')
  verts, faces, _, _ = measure.marching_cubes(sigma, level, spacing=(float(axis[1] - axis[0]),) * 3)
  world = (verts + axis[0]).astype(np.float32)
  _, rgb = _query(generator, ws, vertices, world, bald, 32768)
  colours = np.clip(np.rint(np.asarray(rgb) * 255), 0, 255).astype(np.uint8)
  colours = np.concatenate([colours, np.full((len(colours), 1), 255, np.uint8)], axis=1)
  # marching_cubes orients faces towards increasing values (inwards for a density); flip to face outwards
  return trimesh.Trimesh(world / camera.WORLD_PER_MESH, faces[:, ::-1], vertex_colors=colours, process=False)


def surface_distance_mm(surface: trimesh.Trimesh, vertices: np.ndarray, faces: np.ndarray, mm_per_unit: float) -> dict:
  """Distance from the field surface's vertices to the parametric mesh, in mm (median, mean, 90th percentile)."""
  mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), process=False)
  _, distance, _ = trimesh.proximity.closest_point(mesh, np.asarray(surface.vertices, np.float64))
  distance = distance * mm_per_unit
  return {
    'median_mm': float(np.median(distance)),
    'mean_mm': float(distance.mean()),
    'p90_mm': float(np.percentile(distance, 90)),
  }
