"""Where MediaPipe's 468 face-mesh landmarks lie on a rig's template surface.

Legend: ``l`` = 468 landmarks, ``n`` renders, ``v`` vertices, ``f`` triangles, ``b``
batch (any leading dims).

A correspondence table stores, per landmark, a triangle of the rig's template
triangulation (``Rig.faces``, which the bilinear model shares) and barycentric
coordinates in it, so ``landmark_points`` gives the 3D landmarks of any mesh of the rig
(any identity, any expression) and the landmark-fitting loss can compare their
projections with ``landmarks.FaceLandmarker``'s detections.

Procedure (``build``; rerun with ``python -m head360_jax.fitting.correspondence --rig anny``):

1. Render ``num_renders`` bald neutral heads from the dataset's frontal camera
   (``camera.dataset_cameras()[camera.FRONTAL_VIEW]``, near-orthographic; the detector
   finds every face at ``RESOLUTION`` = 512 px, the face box ~220 px wide): render 0 is
   the template, the others identities ``rig.sample_identity``, each with its own
   procedural appearance (``data.appearance``: skin, lips, brows, eyes baked into a UV
   texture, as the dataset builder colours heads), on mid grey, Lambert-shaded
   (``rendering.gl``), 2x supersampled.
2. Run ``FaceLandmarker`` on each render and cast the ray through every landmark's
   ``(x, y)`` (sub-pixel) into the mesh (world units); the nearest hit gives a triangle
   and barycentrics. A hit on an eyeball or inside the mouth is moved to the closest
   point of the skin surface (the face mesh is a skin surface: its eye and lip contours
   are the lid and lip margins). Rays that miss (silhouette points) are dropped.
3. Map each hit to the neutral template (the same triangle and barycentrics on
   ``rig.vertices``) and take, per landmark, the coordinate-wise median over the renders
   that hit; the stored point is the closest skin-surface point of the template to it.
4. ``spread_mm`` is the median distance (mm, ``rig.mm_per_unit``) of the per-render
   template points from the stored one. A landmark is ``valid`` when at least
   ``MIN_HIT_FRACTION`` of the renders hit the skin near it and its spread is at most
   ``MAX_SPREAD_MM``; invalid ones (mostly the face oval on the cheek silhouette, where a
   ray grazes the surface and the point slides along it) keep their best estimate but
   should get no weight in a fit.

Tables live in ``head360_jax/fitting/data/<rig>_mediapipe468.npz`` (plain arrays and
strings, no pickles, fixed zip timestamps: a rebuild on the same machine gives the same
bytes; another CPU may differ in the last float bits of TFLite's arithmetic).
"""

import argparse
import dataclasses
import io
import pathlib
import time
import zipfile

import jax.numpy as jnp
import numpy as np
import trimesh
from jaxtyping import Array, Float, Int

from head360_jax import assets
from head360_jax.data import appearance
from head360_jax.fitting import landmarks
from head360_jax.geometry import camera
from head360_jax.geometry.rig import Rig, load_rig
from head360_jax.rendering import gl

RIGS = ('anny', 'ict')
NUM_LANDMARKS = 468
DATA_DIR = pathlib.Path(__file__).resolve().parent / 'data'
NUM_RENDERS = 32
RESOLUTION = 512
SUPERSAMPLE = 2
TEXTURE_SIZE = 512
SEED = 0
BACKGROUND = 0.5
MIN_HIT_FRACTION = 0.75
MAX_SPREAD_MM = 4.0


@dataclasses.dataclass(frozen=True)
class Correspondence:
  """MediaPipe-468 landmarks as points on a rig's template surface.

  Attributes:
    faces: (468,) int32 triangle indices into the rig's ``faces``.
    barycentrics: (468, 3) float32 weights of the triangle's corners, >= 0, sum 1.
    valid: (468,) bool, True where the landmark was found consistently (module doc).
    rig: rig name.
    spread_mm: (468,) float32 median distance of the per-render points from the stored
      one, millimetres (``inf`` for a landmark no render hit).
    num_renders: renders the table was built from.
    resolution: their width = height in pixels.
  """

  faces: np.ndarray
  barycentrics: np.ndarray
  valid: np.ndarray
  rig: str
  spread_mm: np.ndarray | None = None
  num_renders: int = 0
  resolution: int = 0


def table_path(rig: str) -> pathlib.Path:
  """Path of the shipped table of ``rig``.

  Raises:
    ValueError: for an unknown rig.
  """
  if rig not in RIGS:
    raise ValueError(f'unknown rig {rig!r}; expected one of {RIGS}')
  return DATA_DIR / f'{rig}_mediapipe468.npz'


def load_correspondence(rig: str) -> Correspondence:
  """Loads the shipped correspondence table of ``rig`` ("anny" or "ict").

  Raises:
    ValueError: for an unknown rig, or a file that is not a correspondence table.
    FileNotFoundError: if the table is missing, naming the command that builds it.
  """
  path = table_path(rig)
  if not path.is_file():
    raise FileNotFoundError(
      f'{path} not found; build it with: python -m head360_jax.fitting.correspondence --rig {rig}'
    )
  try:
    with np.load(path, allow_pickle=False) as data:
      table = Correspondence(
        faces=data['faces'].astype(np.int32),
        barycentrics=data['barycentrics'].astype(np.float32),
        valid=data['valid'].astype(bool),
        rig=str(data['rig']),
        spread_mm=data['spread_mm'].astype(np.float32),
        num_renders=int(data['num_renders']),
        resolution=int(data['resolution']),
      )
  except (KeyError, ValueError, OSError) as e:
    raise ValueError(f'{path}: not a correspondence table ({e})') from None
  if table.rig != rig or table.faces.shape != (NUM_LANDMARKS,) or table.barycentrics.shape != (NUM_LANDMARKS, 3):
    raise ValueError(f'{path}: expected a 468-landmark table of rig {rig!r}, got rig {table.rig!r}')
  return table


def landmark_points(
  vertices: Float[Array, '*b v 3'], corr: Correspondence, faces: Int[Array, 'f 3']
) -> Float[Array, '*b 468 3']:
  """The 468 landmarks on a mesh of the rig: barycentric interpolation of its vertices.

  Args:
    vertices: (..., v, 3) vertices of any identity/expression of the rig (any units;
      the result is in the same units); differentiable.
    corr: the rig's correspondence (``load_correspondence``).
    faces: (f, 3) the rig's triangulation (``Rig.faces`` or the bilinear model's ``faces``).

  Returns:
    (..., 468, 3) points; use ``corr.valid`` to weight them.
  """
  corners = jnp.asarray(faces)[jnp.asarray(corr.faces)]  # (468, 3) vertex indices
  triangles = jnp.asarray(vertices)[..., corners, :]  # (..., 468, 3, 3)
  return jnp.einsum('...lcd,lc->...ld', triangles, jnp.asarray(corr.barycentrics, triangles.dtype))


def save(corr: Correspondence, path: str | pathlib.Path) -> None:
  """Writes a table as a plain ``.npz`` (no pickles, fixed timestamps), atomically."""
  arrays = {
    'faces': np.asarray(corr.faces, np.int32),
    'barycentrics': np.asarray(corr.barycentrics, np.float32),
    'valid': np.asarray(corr.valid, bool),
    'spread_mm': np.asarray(corr.spread_mm, np.float32),
    'rig': np.str_(corr.rig),
    'num_renders': np.int32(corr.num_renders),
    'resolution': np.int32(corr.resolution),
    'mediapipe_version': np.str_(landmarks.MEDIAPIPE_VERSION),
  }
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
    for name, array in arrays.items():
      with archive.open(zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0)), 'w') as f:
        np.lib.format.write_array(f, array, allow_pickle=False)
  assets.atomic_write_bytes(pathlib.Path(path), buffer.getvalue())


# --- The procedure. ---


def frontal_camera() -> tuple[np.ndarray, np.ndarray]:
  """The dataset's frontal camera: ``(cam2world (4, 4), normalised intrinsics (3, 3))``, world units."""
  label = camera.dataset_cameras()[camera.FRONTAL_VIEW]
  return label[:16].reshape(4, 4), label[16:].reshape(3, 3)


def render_head(
  rig: Rig,
  vertices: np.ndarray,
  texture: np.ndarray,
  resolution: int = RESOLUTION,
  renderer: gl.Renderer | None = None,
) -> np.ndarray:
  """A bald head from the frontal camera on mid grey, (r, r, 3) uint8.

  Args:
    rig: the rig (topology and UVs).
    vertices: (v, 3) mesh units.
    texture: (s, s, 3) uint8 albedo (``appearance.head_texture``).
    resolution: image width = height.
    renderer: GL renderer to reuse.
  """
  cam2world, intrinsics = frontal_camera()
  out = gl.render_mesh(
    np.asarray(vertices, np.float32) * camera.WORLD_PER_MESH,
    rig.faces,
    cam2world,
    intrinsics,
    resolution,
    uvs=rig.uvs,
    face_uvs=rig.face_uvs,
    texture=texture,
    supersample=SUPERSAMPLE,
    renderer=renderer,
  )
  rgba = out['rgba']
  rgb = rgba[..., :3] * rgba[..., 3:] + BACKGROUND * (1 - rgba[..., 3:])
  return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def pixel_rays(pixels: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
  """World rays of the frontal camera through continuous pixel positions (n, 2) ``(x, y)``.

  Returns:
    ``(origins (n, 3), unit directions (n, 3))`` in world units (inverse of ``camera.project``).
  """
  cam2world, intrinsics = frontal_camera()
  uv = np.asarray(pixels, np.float64) / resolution
  local = np.stack(
    [(uv[:, 0] - intrinsics[0, 2]) / intrinsics[0, 0], (uv[:, 1] - intrinsics[1, 2]) / intrinsics[1, 1]], -1
  )
  directions = np.concatenate([local, np.ones_like(local[:, :1])], -1) @ cam2world[:3, :3].T.astype(np.float64)
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  return np.broadcast_to(cam2world[:3, 3].astype(np.float64), directions.shape).copy(), directions


def skin_faces(rig: Rig) -> np.ndarray:
  """(f,) bool: triangles whose corners are all skin (incl. lips, brows), not eyes or mouth interior."""
  groups = rig.vertex_groups
  skin = groups['skin'] | groups['lips'] | groups['brows']
  skin &= ~groups['eyes'] & ~groups['mouth_interior']
  return skin[rig.faces].all(axis=1)


def _barycentrics(mesh: trimesh.Trimesh, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
  weights = trimesh.triangles.points_to_barycentric(mesh.triangles[faces], points)
  weights = np.clip(weights, 0.0, None)
  return weights / weights.sum(axis=-1, keepdims=True)


def _closest_skin_point(mesh: trimesh.Trimesh, skin: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Closest points (n, 3) on the skin triangles and their (n,) triangle indices into ``mesh``."""
  skin_ids = np.flatnonzero(skin)
  submesh = trimesh.Trimesh(mesh.vertices, mesh.faces[skin_ids], process=False)
  closest, _, local = trimesh.proximity.closest_point(submesh, points)
  return closest, skin_ids[local]


def surface_hits(
  rig: Rig, vertices: np.ndarray, pixels: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Casts the frontal camera's rays through ``pixels`` (l, 2) into a mesh of the rig.

  Returns:
    ``(faces (l,) int, barycentrics (l, 3), hit (l,) bool)``: the skin triangle and
    weights of the nearest hit (hits on eyeballs or the mouth interior moved to the
    closest skin point); rows where ``hit`` is False are zeros.
  """
  mesh = trimesh.Trimesh(np.asarray(vertices, np.float64) * camera.WORLD_PER_MESH, rig.faces, process=False)
  origins, directions = pixel_rays(pixels, resolution)
  locations, ray_ids, tri_ids = mesh.ray.intersects_location(origins, directions, multiple_hits=True)
  count = len(pixels)
  faces, points, hit = np.zeros(count, np.int64), np.zeros((count, 3)), np.zeros(count, bool)
  if len(ray_ids):
    distance = np.einsum('nd,nd->n', locations - origins[ray_ids], directions[ray_ids])
    order = np.lexsort((distance, ray_ids))  # by ray, nearest first
    first = order[np.r_[True, ray_ids[order][1:] != ray_ids[order][:-1]]]
    faces[ray_ids[first]], points[ray_ids[first]], hit[ray_ids[first]] = tri_ids[first], locations[first], True
  skin = skin_faces(rig)
  off_skin = hit & ~skin[faces]
  if off_skin.any():
    points[off_skin], faces[off_skin] = _closest_skin_point(mesh, skin, points[off_skin])
  weights = np.zeros((count, 3))
  if hit.any():
    weights[hit] = _barycentrics(mesh, faces[hit], points[hit])
  return faces, weights, hit


def detect_and_hit(
  rig: Rig, vertices: np.ndarray, texture: np.ndarray, landmarker: landmarks.FaceLandmarker, renderer: gl.Renderer
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One render of the procedure: render, detect, cast rays (``surface_hits``'s outputs).

  Raises:
    landmarks.NoFaceError: if the render shows no detectable face.
  """
  image = render_head(rig, vertices, texture, RESOLUTION, renderer)
  face = landmarker(image)
  return surface_hits(rig, vertices, face.points[:, :2], RESOLUTION)


def aggregate(
  rig: Rig, faces: np.ndarray, barycentrics: np.ndarray, hits: np.ndarray, num_renders: int, resolution: int
) -> Correspondence:
  """Steps 3-4 of the procedure: robust per-landmark point on the template, spread, validity.

  Args:
    rig: the rig.
    faces: (n, l) triangle per render and landmark; barycentrics: (n, l, 3); hits: (n, l) bool.
    num_renders, resolution: provenance stored in the table.
  """
  template = trimesh.Trimesh(np.asarray(rig.vertices, np.float64), rig.faces, process=False)
  points = np.einsum('nlcd,nlc->nld', template.vertices[rig.faces[faces]], barycentrics)
  median = np.stack(
    [np.median(points[hits[:, i], i], axis=0) if hits[:, i].any() else np.zeros(3) for i in range(faces.shape[1])]
  )
  closest, tri = _closest_skin_point(template, skin_faces(rig), median)
  distance = np.linalg.norm(points - closest[None], axis=-1) * rig.mm_per_unit
  spread = np.array(
    [np.median(distance[hits[:, i], i]) if hits[:, i].any() else np.inf for i in range(faces.shape[1])], np.float32
  )
  hit_fraction = hits.mean(axis=0)
  valid = (hit_fraction >= MIN_HIT_FRACTION) & (spread <= MAX_SPREAD_MM)
  return Correspondence(
    faces=tri.astype(np.int32),
    barycentrics=_barycentrics(template, tri, closest).astype(np.float32),
    valid=valid,
    rig=rig.name,
    spread_mm=spread,
    num_renders=num_renders,
    resolution=resolution,
  )


def build_identities(rig: Rig, num_renders: int, seed: int = SEED) -> list[tuple[np.ndarray, appearance.Appearance]]:
  """The procedure's heads: (vertices, appearance) per render; render 0 is the template."""
  heads = []
  for i in range(num_renders):
    rng = np.random.default_rng([seed, i])
    vertices = rig.vertices if i == 0 else rig.sample_identity(rng)
    heads.append((np.asarray(vertices, np.float32), appearance.sample_appearance(rng)))
  return heads


def build(rig: str | Rig, num_renders: int = NUM_RENDERS, seed: int = SEED, verbose: bool = False) -> Correspondence:
  """Runs the whole procedure (module doc) for one rig.

  Raises:
    ValueError: for an unknown rig or ``num_renders < 1``.
    landmarks.NoFaceError: if a render shows no detectable face.
  """
  if num_renders < 1:
    raise ValueError(f'num_renders must be >= 1, got {num_renders}')
  rig = load_rig(rig) if isinstance(rig, str) else rig
  landmarker, renderer = landmarks.FaceLandmarker(), gl.Renderer()
  faces, weights, hits = [], [], []
  start = time.perf_counter()
  try:
    for i, (vertices, look) in enumerate(build_identities(rig, num_renders, seed)):
      texture = appearance.head_texture(rig, vertices, look, TEXTURE_SIZE, renderer)
      f, w, h = detect_and_hit(rig, vertices, texture, landmarker, renderer)
      faces.append(f)
      weights.append(w)
      hits.append(h)
      if verbose:
        print(f'render {i + 1}/{num_renders}: {h.mean():.0%} of the rays hit ({time.perf_counter() - start:.0f} s)')
  finally:
    renderer.release()
  return aggregate(rig, np.stack(faces), np.stack(weights), np.stack(hits), num_renders, RESOLUTION)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description='Builds the MediaPipe-468 correspondence table of a rig.')
  parser.add_argument('--rig', default='anny', choices=RIGS)
  parser.add_argument('--renders', type=int, default=NUM_RENDERS)
  parser.add_argument('--seed', type=int, default=SEED)
  parser.add_argument('--out', default=None, help='output .npz (default: the shipped table)')
  args = parser.parse_args(argv)
  corr = build(args.rig, args.renders, args.seed, verbose=True)
  path = pathlib.Path(args.out) if args.out else table_path(args.rig)
  save(corr, path)
  spread = corr.spread_mm[corr.valid]
  print(
    f'{path}: {corr.valid.mean():.1%} of 468 landmarks valid; spread of the valid ones: '
    f'median {np.median(spread):.2f} mm, max {spread.max():.2f} mm'
  )


if __name__ == '__main__':
  main()
