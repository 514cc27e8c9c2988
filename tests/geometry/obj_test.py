"""Tests for the seam-keeping OBJ reader/writer."""

import numpy as np
import pytest

from head360_jax.geometry import obj


def _seamed_square():
  # Two triangles sharing an edge whose UVs differ on each side: a seam (4 v, 6 vt).
  vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.5]], np.float32) * np.float32(0.1234567)
  faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
  uvs = np.array([[0, 0], [0.5, 0], [0.5, 0.5], [0.6, 0.1], [0.9, 0.9], [0.6, 0.9]], np.float32)
  face_uvs = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
  return vertices, faces, uvs, face_uvs


def test_round_trip_keeps_seams(tmp_path):
  vertices, faces, uvs, face_uvs = _seamed_square()
  path = tmp_path / 'sub' / 'm.obj'
  obj.write_obj(path, vertices, faces, uvs, face_uvs)
  mesh = obj.read_obj(path)
  np.testing.assert_array_equal(mesh.vertices, vertices)
  np.testing.assert_array_equal(mesh.uvs, uvs)
  np.testing.assert_array_equal(mesh.faces, faces)
  np.testing.assert_array_equal(mesh.face_uvs, face_uvs)
  np.testing.assert_array_equal(obj.read_obj_vertices(path, expected_count=4), vertices)
  assert not list(path.parent.glob('*.tmp'))  # atomic write leaves no temporary file


def test_random_round_trip_is_exact(tmp_path):
  rng = np.random.default_rng(0)
  vertices = rng.normal(size=(50, 3)).astype(np.float32) * 1e-3
  faces = rng.integers(0, 50, size=(80, 3)).astype(np.int32)
  uvs = rng.uniform(size=(70, 2)).astype(np.float32)
  face_uvs = rng.integers(0, 70, size=(80, 3)).astype(np.int32)
  obj.write_obj(tmp_path / 'r.obj', vertices, faces, uvs, face_uvs)
  mesh = obj.read_obj(tmp_path / 'r.obj')
  for got, want in [(mesh.vertices, vertices), (mesh.uvs, uvs), (mesh.faces, faces), (mesh.face_uvs, face_uvs)]:
    np.testing.assert_array_equal(got, want)


def test_polygons_groups_and_relative_indices(tmp_path):
  path = tmp_path / 'p.obj'
  path.write_text(
    '# comment\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0 1.0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n'
    'vn 0 0 1\ng top\nf 1/1/1 2/2/1 3/3/1 4/4/1\ng bottom extra\nf -4//1 -2//1 -1//1\n'
  )
  mesh = obj.read_obj(path)
  # The quad is fanned around its first corner; the triangle uses relative indices.
  np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
  np.testing.assert_array_equal(mesh.face_uvs, [[0, 1, 2], [0, 2, 3], [-1, -1, -1]])
  assert mesh.group_names == ('top', 'bottom')
  np.testing.assert_array_equal(mesh.face_groups, [0, 0, 1])
  np.testing.assert_array_equal(mesh.face_polygons, [0, 0, 1])
  np.testing.assert_array_equal(mesh.group_faces('bottom'), [2])
  np.testing.assert_array_equal(obj.read_obj_vertices(path), mesh.vertices)  # 'v x y z w' path


@pytest.mark.parametrize(
  'text, where',
  [
    ('v 0 0 0\nv 1 0\n', ':2:'),
    ('v 0 0 0\nv 1 0 x\n', ':2:'),
    ('v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n', ':4:'),
    ('v 0 0 0\nv 1 0 0\nf 1 2\n', ':3:'),
    ('v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2 3\n', ':5:'),
    ('v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n', ':4:'),
  ],
)
def test_malformed_obj_names_file_and_line(tmp_path, text, where):
  path = tmp_path / 'bad.obj'
  path.write_text(text)
  with pytest.raises(ValueError, match=f'bad.obj{where}'):
    obj.read_obj(path)


def test_read_vertices_checks_count_and_numbers(tmp_path):
  path = tmp_path / 'v.obj'
  path.write_text('v 0 0 0\nv 1 2 3\nf 1 2 1\n')
  np.testing.assert_array_equal(obj.read_obj_vertices(path, 2), [[0, 0, 0], [1, 2, 3]])
  with pytest.raises(ValueError, match='v.obj: 2 vertices, expected 3'):
    obj.read_obj_vertices(path, expected_count=3)
  path.write_text('v 0 0 0\nv 1 a 3\n')
  with pytest.raises(ValueError, match='v.obj'):
    obj.read_obj_vertices(path)


def test_write_rejects_bad_input(tmp_path):
  vertices, faces, uvs, face_uvs = _seamed_square()
  with pytest.raises(ValueError, match='x.obj'):
    obj.write_obj(tmp_path / 'x.obj', vertices, faces + 3)
  with pytest.raises(ValueError, match='both uvs and face_uvs'):
    obj.write_obj(tmp_path / 'x.obj', vertices, faces, uvs)
  assert not (tmp_path / 'x.obj').exists()


def test_reads_real_template_with_seams(shared_data):
  path = shared_data / 'ict-facekit' / 'FaceXModel' / 'generic_neutral_mesh.obj'
  mesh = obj.read_obj(path)
  assert mesh.vertices.shape == (26719, 3) and mesh.uvs.shape == (28911, 2)  # README counts
  with np.load(shared_data / 'ict-facekit' / 'ict_facekit_shapes.npz') as z:
    np.testing.assert_allclose(mesh.vertices, z['neutral'], atol=1e-6)
  np.testing.assert_array_equal(obj.read_obj_vertices(path, 26719), mesh.vertices)
