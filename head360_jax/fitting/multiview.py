"""Multi-view targets of the photo fit: the photo projected onto the fitted mesh, seen from other cameras (paper §3.4).

Legend: ``v`` mesh vertices, ``f`` faces, ``S`` side of the aligned photo crop, ``D`` side of
the photo's depth map, ``K`` target views, ``R`` generator output resolution.

The paper fits the neural texture to "multi-view images" made from the single photo: the
photo's face is carried to other views through the fitted mesh and Poisson-blended into
renders of the starting head. Ours (projective texturing, no UV atlas):

1. the fitted mesh is rasterised from the photo's camera (the crop's ``label``) into a depth
   map (``rasterize.rasterize``, perspective-correct, ``D``²; empty cells at the silhouette take their
   neighbours' nearest depth, so surface just behind the silhouette does not leak through);
2. for each target view the mesh is rasterised again; every covered pixel's surface point is
   projected into the photo and kept when it passes the depth test there (it is the surface the
   photo saw, not one hidden behind the nose or the cheek) and lies in the photo's face region;
3. its colour is the photo's, sampled bilinearly; its weight is that visibility times
   ``|cos|`` of the angle between the face normal and the ray to the photo's camera, so
   surface the photo saw at a grazing angle (stretched, blurred) counts less.

``fitting.pipeline`` blends the colours into the start head's render of the same view
(``appearance.blend_face``) and the appearance passes fit all views, weighting pixels by these
visibilities (``appearance.Targets``).

Default views (``VIEW_YAWS_DEG``, ``VIEW_PITCHES_DEG``): yaw 0, ±20, ±40 deg at pitch 0 and
pitch ±10 deg at yaw 0, on the dataset's camera orbit (``camera.orbit_cam2world``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from head360_jax.geometry import camera
from head360_jax.rendering import rasterize

VIEW_YAWS_DEG = (0.0, -20.0, 20.0, -40.0, 40.0, 0.0, 0.0)
VIEW_PITCHES_DEG = (0.0, 0.0, 0.0, 0.0, 0.0, -10.0, 10.0)
DEPTH_TOLERANCE = 0.01  # depth test slack, fraction of the mesh's bounding-box diagonal


def view_labels(
  yaws_deg: tuple[float, ...] = VIEW_YAWS_DEG, pitches_deg: tuple[float, ...] = VIEW_PITCHES_DEG
) -> Float[np.ndarray, 'K 25']:
  """25-d labels of the target views on the dataset's orbit (radius, focal), (K, 25) float32.

  Raises:
    ValueError: if the yaw and pitch lists differ in length or are empty.
  """
  if len(yaws_deg) != len(pitches_deg) or not yaws_deg:
    raise ValueError(f'need as many yaws as pitches (>= 1), got {len(yaws_deg)} and {len(pitches_deg)}')
  cam2world = camera.orbit_cam2world(np.asarray(yaws_deg, np.float32), np.asarray(pitches_deg, np.float32))
  intrinsics = jnp.broadcast_to(jnp.asarray(camera.normalized_intrinsics()), (len(yaws_deg), 3, 3))
  return np.asarray(camera.pack_label(cam2world, intrinsics))


def _screen(points: Float[Array, 'n 3'], label: Float[Array, '25'], resolution: int):
  cam2world, intrinsics = camera.unpack_label(label[None])
  pixels, depth = camera.project(points[None], cam2world, intrinsics, resolution)
  return pixels[0], depth[0], cam2world[0, :3, 3]


def _bilinear(image: Float[Array, 'h w c'], xy: Float[Array, '... 2']) -> Float[Array, '... c']:
  """Bilinear sample at continuous pixel positions (col, row), pixel centres at +0.5, edges clamped."""
  height, width = image.shape[:2]
  x = jnp.clip(xy[..., 0] - 0.5, 0, width - 1)
  y = jnp.clip(xy[..., 1] - 0.5, 0, height - 1)
  x0, y0 = jnp.floor(x).astype(jnp.int32), jnp.floor(y).astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, width - 1), jnp.minimum(y0 + 1, height - 1)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def project_photo(
  vertices: Float[Array, 'v 3'],
  faces: Int[Array, 'f 3'],
  photo: Float[Array, 'S S 3'],
  face_mask: Float[Array, 'S S'],
  photo_label: Float[Array, '25'],
  labels: Float[Array, 'K 25'],
  resolution: int,
  *,
  depth_resolution: int = 256,
) -> tuple[Float[Array, 'K R R 3'], Float[Array, 'K R R']]:
  """The photo's colours on the fitted mesh seen from ``labels``, and their visibility weights (module docstring).

  Args:
    vertices: (v, 3) fitted mesh in mesh units (``bilinear.vertices``).
    faces: (f, 3) int triangles, wound counter-clockwise seen from outside.
    photo: (S, S, 3) aligned photo crop, any value range (returned colours share it).
    face_mask: (S, S) in [0, 1], the photo's face region (face oval minus hair).
    photo_label: (25,) camera label of the crop (the fit's ``Alignment.label``).
    labels: (K, 25) target cameras.
    resolution: ``R``, side of the returned images.
    depth_resolution: ``D``, side of the photo's depth map for the visibility test.

  Returns:
    ``(colours (K, R, R, 3), weights (K, R, R))``; weights in [0, 1], 0 where the surface is not
    in the photo's face region, was hidden in the photo, or is not covered in the view (colours
    are 0 there). Jit-able (``resolution``, ``depth_resolution`` static).
  """
  world = camera.WORLD_PER_MESH * jnp.asarray(vertices, jnp.float32)
  faces = jnp.asarray(faces, jnp.int32)
  tolerance = DEPTH_TOLERANCE * jnp.linalg.norm(world.max(0) - world.min(0))
  photo_xy, photo_depth, photo_eye = _screen(world, photo_label, 1)
  depth_map = rasterize.rasterize(
    photo_xy * depth_resolution, photo_depth, faces, depth_resolution, perspective=True, cull_backfaces=True
  ).depth
  # Empty cells next to the silhouette take the nearest depth of their 3 x 3 neighbourhood, so a
  # point just behind the photo's silhouette does not pass through an infinitely deep border cell.
  nearest = jax.lax.reduce_window(depth_map, jnp.inf, jax.lax.min, (3, 3), (1, 1), 'SAME')
  depth_map = jnp.where(jnp.isinf(depth_map), nearest, depth_map)
  corners = world[faces]
  normals = jnp.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
  normals = normals / jnp.maximum(jnp.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
  photo_rgbm = jnp.concatenate([jnp.asarray(photo, jnp.float32), jnp.asarray(face_mask, jnp.float32)[..., None]], -1)
  size = photo.shape[0]

  def one(label):
    xy, depth, _ = _screen(world, label, resolution)
    fragments = rasterize.rasterize(xy, depth, faces, resolution, perspective=True, cull_backfaces=True)
    face = jnp.maximum(fragments.face_id, 0)
    point = jnp.einsum('hwk,hwkc->hwc', fragments.barycentrics, corners[face])
    uv, z, _ = _screen(point.reshape(-1, 3), photo_label, 1)
    uv, z = uv.reshape(resolution, resolution, 2), z.reshape(resolution, resolution)
    cell = jnp.clip(jnp.floor(uv * depth_resolution).astype(jnp.int32), 0, depth_resolution - 1)
    inside = jnp.all((uv >= 0) & (uv < 1), -1)
    seen = z <= depth_map[cell[..., 1], cell[..., 0]] + tolerance
    ray = photo_eye - point
    cosine = jnp.abs(jnp.sum(normals[face] * ray, -1)) / jnp.maximum(jnp.linalg.norm(ray, axis=-1), 1e-12)
    sampled = _bilinear(photo_rgbm, uv * size)
    weight = jnp.where(fragments.coverage & inside & seen, cosine * jnp.clip(sampled[..., 3], 0, 1), 0.0)
    return jnp.where(weight[..., None] > 0, sampled[..., :3], 0.0), weight

  return jax.lax.map(one, jnp.asarray(labels, jnp.float32))
