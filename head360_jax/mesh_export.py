"""Mesh export: the parametric mesh as OBJ, and the radiance field's surface by marching cubes as PLY.

Legend: ``v`` vertices, ``f`` faces, ``g`` grid side, ``w`` style width.

* ``parametric_obj``: ``bilinear.vertices(model, s, b)`` (paper Eq. 1) with the model's UVs,
  in mesh units (``docs/conventions.md``), written by ``geometry.obj.write_obj`` (float32
  exact through ``obj.read_obj``).
* ``density_grid`` + ``field_surface``: the generator's raw density σ on a ``g³`` grid over
  the planes' cube (``model.box_warp`` world units a side, world = ``camera.WORLD_PER_MESH`` ×
  mesh units), then scikit-image's marching cubes at ``level`` (raw σ; the renderer's density
  is ``softplus(σ − 1)`` per world unit, ``rendering/volume.py``), returned in mesh units so
  it overlays the parametric mesh. Colours: the decoder's first three feature channels
  (the raw render's RGB, in [0, 1]) at the surface vertices.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import trimesh
from flax import nnx
from skimage import measure

from head360_jax.geometry import bilinear, camera, obj
from head360_jax.rendering import hexplane


def parametric_obj(path: str | pathlib.Path, model: bilinear.BilinearModel, s: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Writes the mesh of shape code ``s`` (r,) and ARKit weights ``b`` (52,) with UVs; returns its (v, 3) vertices."""
  vertices = np.asarray(bilinear.vertices(model, s, b), np.float32)
  obj.write_obj(path, vertices, model.faces, model.uvs, model.face_uvs)
  return vertices


def _field_fn(generator):
  graphdef, params, rest = nnx.split(generator, nnx.Param, ...)

  @jax.jit
  def field(params, rest, ws, vertices, points, hair):
    g = nnx.merge(graphdef, params, rest)
    planes = g.planes(ws, vertices[None], noise_mode='const', hair=hair[None])
    out = g.decoder(hexplane.aggregate(hexplane.sample_planes(planes, points[None], g.config.box_warp), 'mean'))
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
  field = _field_fn(generator)
  half = generator.config.box_warp / 2
  axis = np.linspace(-half, half, resolution, dtype=np.float32)
  points = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(-1, 3)
  ws = jax.tree.map(jnp.asarray, ws)
  hair = jnp.float32(0.0 if bald else 1.0)
  sigma = []
  for start in range(0, len(points), chunk):
    block = np.zeros((chunk, 3), np.float32)  # one program for every chunk
    part = points[start : start + chunk]
    block[: len(part)] = part
    sigma.append(np.asarray(field(ws, jnp.asarray(vertices), jnp.asarray(block), hair)[0])[: len(part)])
  return np.concatenate(sigma).reshape(resolution, resolution, resolution), axis


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
  world = verts + axis[0]
  field = _field_fn(generator)
  ws = jax.tree.map(jnp.asarray, ws)
  hair = jnp.float32(0.0 if bald else 1.0)
  _, rgb = field(ws, jnp.asarray(vertices), jnp.asarray(world, jnp.float32), hair)
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
