"""Camera conventions: the EG3D 25-d label, orbit poses, projection.

Legend: ``b`` batch (any leading dims), ``n`` points, ``h w`` image rows/columns.

Conventions (reference-spec §1.3-1.4, written once here and in docs/conventions.md):

* World frame: y up, +z is the direction the face looks at, +x is the subject's left
  (it appears on the right of a frontal image). World units are ``WORLD_PER_MESH`` x mesh
  units (the reference maps mesh x9 to NDC and the planes cover world [-0.5, 0.5]).
* ``cam2world`` is a 4x4 rigid transform whose rotation columns are the camera axes in
  OpenCV order: x right, y down (image rows), z forward (viewing direction).
* ``intrinsics`` are normalised by the image size: ``fx, fy`` in image widths,
  ``cx = cy = 0.5``. A pixel ``(col, row)`` has centre ``((col + 0.5)/W, (row + 0.5)/H)``.
* The 25-d camera label ``c`` is ``cam2world`` row-major (16) then ``intrinsics``
  row-major (9).
* Dataset cameras: radius ``CAMERA_RADIUS`` = 22.5 world units around the origin,
  ``FOCAL`` = 28 (full field of view 2.05 deg, near-orthographic; the image spans 0.80
  world units = 0.178 mesh units), 3 pitches x 24 yaws, view index = pitch_index * 24 +
  yaw_index, view 30 frontal (pitch 0, yaw 0).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

WORLD_PER_MESH = 4.5
CAMERA_RADIUS = 22.5
FOCAL = 28.0
DATASET_PITCHES_DEG = (-20.0, 0.0, 20.0)
DATASET_YAW_STEP_DEG = 15.0
DATASET_NUM_YAWS = 24
FRONTAL_VIEW = 30  # = 1 * 24 + 6: pitch index 1 (0 deg), yaw index 6 (0 deg)


def pack_label(cam2world: Float[Array, 'b 4 4'], intrinsics: Float[Array, 'b 3 3']) -> Float[Array, 'b 25']:
  """Packs ``cam2world`` and normalised ``intrinsics`` into the 25-d EG3D camera label."""
  batch = cam2world.shape[:-2]
  return jnp.concatenate([cam2world.reshape(*batch, 16), intrinsics.reshape(*batch, 9)], axis=-1)


def unpack_label(c: Float[Array, 'b 25']) -> tuple[Float[Array, 'b 4 4'], Float[Array, 'b 3 3']]:
  """Splits a 25-d label into ``(cam2world (..., 4, 4), intrinsics (..., 3, 3))``.

  Raises:
    ValueError: if the last dimension is not 25 (e.g. a 77-d label was passed whole).
  """
  if c.shape[-1] != 25:
    raise ValueError(f'camera label must have 25 entries, got shape {c.shape}')
  batch = c.shape[:-1]
  return c[..., :16].reshape(*batch, 4, 4), c[..., 16:].reshape(*batch, 3, 3)


def normalized_intrinsics(focal: float = FOCAL, cx: float = 0.5, cy: float = 0.5) -> np.ndarray:
  """Returns the 3x3 normalised intrinsics (focal in image widths), float32."""
  return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]], np.float32)


def _rigid(rotation: Float[Array, 'b 3 3'], eye: Float[Array, 'b 3']) -> Float[Array, 'b 4 4']:
  top = jnp.concatenate([rotation, eye[..., None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], jnp.float32), (*top.shape[:-2], 1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def look_at(
  eye: Float[Array, 'b 3'], target: Float[Array, 'b 3'], up: Float[Array, '3'] = (0.0, 1.0, 0.0)
) -> Float[Array, 'b 4 4']:
  """OpenCV-convention ``cam2world`` for a camera at ``eye`` looking at ``target``.

  The image's down axis is the projection of world ``-up``. Undefined when the view
  direction is parallel to ``up`` (exact top/bottom views): use ``orbit_cam2world``,
  which handles pitch +-90 deg.
  """
  eye, target, up = jnp.asarray(eye, jnp.float32), jnp.asarray(target, jnp.float32), jnp.asarray(up, jnp.float32)
  z = target - eye
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  x = jnp.cross(z, jnp.broadcast_to(up, z.shape))
  x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  y = jnp.cross(z, x)
  return _rigid(jnp.stack([x, y, z], axis=-1), eye)


def orbit_cam2world(
  yaw_deg: Float[Array, ' b'],
  pitch_deg: Float[Array, ' b'],
  radius: float = CAMERA_RADIUS,
  target: Float[Array, '3'] = (0.0, 0.0, 0.0),
) -> Float[Array, 'b 4 4']:
  """``cam2world`` of a camera orbiting ``target`` and looking at it.

  Args:
    yaw_deg: rotation about world +y in degrees; 0 = in front of the face (+z), 90 = on
      the subject's left (+x), 180 = behind.
    pitch_deg: elevation in degrees, in [-90, 90]; positive = above, looking down.
    radius: distance to ``target`` in world units.
    target: the point looked at (world units).

  Returns:
    (..., 4, 4) float32. The camera's image-right axis is always horizontal (no roll),
    so the poles are well defined.
  """
  yaw = jnp.deg2rad(jnp.asarray(yaw_deg, jnp.float32))
  pitch = jnp.deg2rad(jnp.asarray(pitch_deg, jnp.float32))
  yaw, pitch = jnp.broadcast_arrays(yaw, pitch)
  # Unit vector from target to camera.
  back = jnp.stack([jnp.cos(pitch) * jnp.sin(yaw), jnp.sin(pitch), jnp.cos(pitch) * jnp.cos(yaw)], -1)
  z = -back
  x = jnp.stack([jnp.cos(yaw), jnp.zeros_like(yaw), -jnp.sin(yaw)], -1)
  y = jnp.cross(z, x)
  eye = jnp.asarray(target, jnp.float32) + radius * back
  return _rigid(jnp.stack([x, y, z], axis=-1), eye)


def dataset_cameras(focal: float = FOCAL, radius: float = CAMERA_RADIUS) -> np.ndarray:
  """The 72 dataset camera labels (3 pitches x 24 yaws), (72, 25) float32.

  View ``i`` has pitch ``DATASET_PITCHES_DEG[i // 24]`` and yaw
  ``(i % 24 - 6) * 15`` deg, so view 30 is frontal (reference-spec §1.4, paper L50).
  """
  views = np.arange(3 * DATASET_NUM_YAWS)
  pitch = np.asarray(DATASET_PITCHES_DEG, np.float32)[views // DATASET_NUM_YAWS]
  yaw = (views % DATASET_NUM_YAWS - 6).astype(np.float32) * DATASET_YAW_STEP_DEG
  cam2world = orbit_cam2world(yaw, pitch, radius)
  intrinsics = jnp.broadcast_to(jnp.asarray(normalized_intrinsics(focal)), (len(views), 3, 3))
  return np.asarray(pack_label(cam2world, intrinsics))


def project(
  points: Float[Array, 'b n 3'], cam2world: Float[Array, 'b 4 4'], intrinsics: Float[Array, 'b 3 3'], resolution: int
) -> tuple[Float[Array, 'b n 2'], Float[Array, 'b n']]:
  """Perspective projection of world points into pixel coordinates.

  Returns:
    ``(pixels, depth)``: pixels as continuous ``(col, row)`` where pixel ``(i, j)`` spans
    ``[i, i+1) x [j, j+1)`` (its centre is ``i + 0.5``); depth is the camera-space z
    (world units, positive in front of the camera).
  """
  rotation, eye = cam2world[..., :3, :3], cam2world[..., :3, 3]
  cam = jnp.einsum('...ij,...ni->...nj', rotation, points - eye[..., None, :])
  depth = cam[..., 2]
  uv = cam[..., :2] / depth[..., None]
  fx_fy = jnp.stack([intrinsics[..., 0, 0], intrinsics[..., 1, 1]], -1)[..., None, :]
  cx_cy = jnp.stack([intrinsics[..., 0, 2], intrinsics[..., 1, 2]], -1)[..., None, :]
  return (uv * fx_fy + cx_cy) * resolution, depth


def mismatched_labels(
  key: jax.Array, c: Float[Array, 'b k'], min_yaw_deg: float = 90.0, max_yaw_deg: float = 270.0
) -> Float[Array, 'b k']:
  """Camera labels turned about the world y axis by a random yaw, for a view-consistency loss.

  Each sample's ``cam2world`` becomes ``R_y(δ) @ cam2world`` with ``R_y(δ)`` the rotation by
  ``δ`` degrees about world +y (rotation columns and camera position turned alike), ``δ``
  uniform in ``[min_yaw_deg, max_yaw_deg]`` per sample (independent over leading dims). A
  camera orbiting the origin keeps its radius, pitch and the fact that it looks at the
  origin; only its yaw (``orbit_cam2world``'s convention) grows by ``δ``. The intrinsics and
  any columns after the 25 camera entries (the expression of a 77-d label) are unchanged.
  With the default range the new camera is at least 90 deg of yaw away from the image's own.
  The construction (a yaw offset in 90-270 deg) is ours; SphereHead (arXiv 2404.05680 §3)
  pairs images with mismatched camera labels but its code does not show how it draws them.

  Args:
    key: PRNG key of the offsets.
    c: labels (..., 25) (docs/conventions.md) or (..., 77) ``[camera (25), expression (52)]``.
    min_yaw_deg, max_yaw_deg: range of the yaw offset in degrees, ``min <= max``.

  Returns:
    Labels like ``c`` (same shape and dtype).

  Raises:
    ValueError: if the last dimension of ``c`` is neither 25 nor 77, or ``min_yaw_deg > max_yaw_deg``.
  """
  if c.shape[-1] not in (25, 77):
    raise ValueError(f'camera label must have 25 or 77 entries, got shape {c.shape}')
  if min_yaw_deg > max_yaw_deg:
    raise ValueError(f'min_yaw_deg must be <= max_yaw_deg, got {min_yaw_deg} > {max_yaw_deg}')
  c = jnp.asarray(c)
  cam2world, intrinsics = unpack_label(c[..., :25])
  delta = jnp.deg2rad(jax.random.uniform(key, c.shape[:-1], jnp.float32, min_yaw_deg, max_yaw_deg))
  cos, sin = jnp.cos(delta)[..., None].astype(c.dtype), jnp.sin(delta)[..., None].astype(c.dtype)
  # R_y(δ) @ cam2world row by row (elementwise, so no reduced-precision matmul on accelerators).
  row0, row1, row2, row3 = (cam2world[..., i, :] for i in range(4))
  cam2world = jnp.stack([cos * row0 + sin * row2, row1, cos * row2 - sin * row0, row3], axis=-2)
  turned = pack_label(cam2world, intrinsics)
  return jnp.concatenate([turned, c[..., 25:]], axis=-1)
