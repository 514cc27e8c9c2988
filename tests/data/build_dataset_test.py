"""Tests of the dataset builder and the GL renderer it uses (layout, projection, determinism, resume)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from head360_jax.data import build_dataset, layout
from head360_jax.geometry import arkit, camera, rig
from head360_jax.rendering import gl

RES = 64
EXPRESSIONS = ['jawOpen', 'neutral']


@pytest.fixture(scope='module')
def anny():
  return rig.load_rig('anny')


@pytest.fixture(scope='module')
def dataset(anny, tmp_path_factory):
  root = tmp_path_factory.mktemp('synhead')
  summary = build_dataset.build(
    root, rig=anny, num_identities=2, expressions=EXPRESSIONS, resolution=RES, seed=3, progress=False
  )
  return root, summary


def test_marker_pixel_matches_camera_project():
  cameras = camera.dataset_cameras()
  rng = np.random.default_rng(0)
  for view in (0, 30, 47, 71):
    cam2world, intrinsics = cameras[view, :16].reshape(4, 4), cameras[view, 16:].reshape(3, 3)
    centre = rng.uniform(-0.3, 0.3, 3)
    right, down = cam2world[:3, 0], cam2world[:3, 1]
    # A marker ~1.5 px across (0.8 world units span 64 px) around the point.
    radius = 0.015
    triangle = np.stack([centre + radius * (np.cos(a) * right + np.sin(a) * down) for a in (0.2, 2.3, 4.4)])
    out = gl.render_mesh(triangle, np.array([[0, 1, 2]]), cam2world, intrinsics, RES, lighting=False)
    pixels, depth = camera.project(centre[None, None], cam2world[None], intrinsics[None], RES)
    col, row = np.floor(np.asarray(pixels)[0, 0]).astype(int)
    assert out['coverage'][row, col], (view, col, row, np.argwhere(out['coverage']))
    rows, cols = np.nonzero(out['coverage'])
    assert np.all(np.abs(rows + 0.5 - np.asarray(pixels)[0, 0, 1]) < 2) and np.all(np.abs(cols + 0.5 - col - 0.5) < 2)
    np.testing.assert_allclose(out['depth'][row, col], np.asarray(depth)[0, 0], atol=1e-3)
    assert np.isinf(out['depth'][~out['coverage']]).all()


def test_layout_is_exact(dataset):
  root, summary = dataset
  images = root / layout.IMAGES
  names = sorted(EXPRESSIONS)
  expected = {
    layout.image_relpath(RES, layout.identity_name(i), e, v, bald)
    for i in range(2)
    for e in names
    for v in range(72)
    for bald in (False, True)
  }
  found = {str(p.relative_to(images)) for p in images.rglob('*.png')}
  assert found == expected
  assert summary['images_written'] == len(expected)
  poses = layout.read_labels(images / layout.POSE_JSON, 25)
  exps = layout.read_labels(images / layout.EXPRESSION_JSON, 52)
  haired = {p for p in expected if '_bald' not in p}
  assert set(poses) == haired and set(exps) == haired
  cameras = camera.dataset_cameras()
  for relpath, label in poses.items():
    np.testing.assert_array_equal(label, cameras[int(relpath[-8:-4])])
    expression = relpath.split('/')[2]
    assert exps[relpath].sum() == (0 if expression == 'neutral' else 1)
    if expression != 'neutral':
      assert exps[relpath][arkit.index(expression)] == 1
  meshes = sorted(p.name for p in (root / layout.MESHES).iterdir())
  assert meshes == sorted(f'{layout.identity_name(i)}_{e}.obj' for i in range(2) for e in names)
  assert len(list((root / layout.LANDMARKS).iterdir())) == 4
  build = json.loads((root / 'build.json').read_text())
  assert build['camera']['radius'] == camera.CAMERA_RADIUS and len(build['per_identity']) == 2
  assert (root / 'bilinear.npz').is_file()
  image = np.asarray(Image.open(images / layout.image_relpath(RES, 'id_000', 'jawOpen', 30)))
  assert image.shape == (RES, RES, 4) and image[0, 0, 3] == 0 and image[RES // 2, RES // 2, 3] == 255


def test_landmarks_project_onto_the_render(dataset, anny):
  import trimesh

  from head360_jax.geometry import obj

  root, _ = dataset
  labels = layout.read_labels(root / layout.IMAGES / layout.POSE_JSON, 25)
  visible_count = 0
  for name in EXPRESSIONS:
    mesh = obj.read_obj(layout.mesh_path(root, 'id_001', name))
    landmarks = np.loadtxt(layout.landmarks_path(root, 'id_001', name), ndmin=2)
    np.testing.assert_allclose(landmarks, mesh.vertices[anny.landmark_vertices], atol=1e-6)
    world = trimesh.Trimesh(mesh.vertices * camera.WORLD_PER_MESH, mesh.faces, process=False)
    points = landmarks * camera.WORLD_PER_MESH
    for view in (30, 27, 33, 42):
      label = labels[layout.image_relpath(RES, 'id_001', name, view)]
      cam2world, intrinsics = label[:16].reshape(4, 4), label[16:].reshape(3, 3)
      alpha = np.asarray(Image.open(root / layout.IMAGES / layout.image_relpath(RES, 'id_001', name, view)))[..., 3]
      pixels, _ = camera.project(points[None], cam2world[None], intrinsics[None], RES)
      pixels = np.asarray(pixels)[0]
      # Visibility by ray casting (independent of GL): nothing hit before the landmark.
      eye = cam2world[:3, 3]
      directions = points - eye
      distance = np.linalg.norm(directions, axis=-1)
      hits, rays, _ = world.ray.intersects_location(np.tile(eye, (len(points), 1)), directions / distance[:, None])
      first = np.full(len(points), np.inf)
      np.minimum.at(first, rays, np.linalg.norm(hits - eye, axis=-1))
      visible = first > distance - 2e-3
      rows, cols = np.nonzero(alpha > 0)
      for col, row in pixels[visible]:
        gap = np.min(np.hypot(cols + 0.5 - col, rows + 0.5 - row))
        assert gap <= 2.0 * RES / 128, (name, view, col, row, gap)  # 2 px at 128^2
      visible_count += visible.sum()
      assert view != 42 or not visible.any()  # view 42 looks at the back of the head
  assert visible_count > 20


def test_rebuild_is_identical_and_resume_rewrites_only_missing(dataset, anny, tmp_path):
  root, _ = dataset
  images = root / layout.IMAGES
  deleted = [images / layout.image_relpath(RES, 'id_001', 'neutral', v, bald) for v in (3, 40) for bald in (0, 1)]
  originals = {p: p.read_bytes() for p in deleted}
  for p in deleted:
    p.unlink()
  kept = images / layout.image_relpath(RES, 'id_000', 'jawOpen', 5)
  before = kept.stat().st_mtime_ns
  stray = kept.parent / '.0005.png.abc123.tmp'
  stray.write_bytes(b'half')
  summary = build_dataset.build(
    root, rig=anny, num_identities=2, expressions=EXPRESSIONS, resolution=RES, seed=3, progress=False
  )
  assert summary['images_written'] == len(deleted) and summary['stray_tmp_removed'] == 1
  assert not stray.exists() and kept.stat().st_mtime_ns == before
  for p, data in originals.items():
    assert p.read_bytes() == data  # deterministic: the re-rendered image is byte-identical


def test_unknown_expression_lists_valid_names(tmp_path):
  with pytest.raises(ValueError, match='jawOpne.*valid names.*jawOpen'):
    build_dataset.build(tmp_path, rig='anny', num_identities=1, expressions='jawOpne,neutral', resolution=RES)
  assert build_dataset.parse_expressions(None) == sorted(arkit.ARKIT_NAMES)


def test_cli_writes_dataset(tmp_path, anny, capsys):
  # The CLI path end to end on the smallest build: 1 identity, 1 expression.
  build_dataset.main(
    ['--identities', '1', '--expressions', 'neutral', '--resolution', '16', '--out', str(tmp_path), '--workers', '1']
  )
  assert len(list((tmp_path / layout.IMAGES).rglob('*.png'))) == 144
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['images_written'] == 144
  assert not any(name.endswith('.tmp') for _, _, files in os.walk(tmp_path) for name in files)


def test_loader_reads_the_built_dataset(dataset):
  """Builder -> loader: records carry the bilinear-model meshes, labels and images the builder wrote."""
  from head360_jax.data import pipeline, sources
  from head360_jax.geometry import bilinear

  root, _ = dataset
  source = sources.SynHeadSource(root, RES, include_bald=True)
  assert len(source) == 2 * 2 * 72 * 2
  model = bilinear.load(root / 'bilinear.npz')
  for index in (0, 72 + 30, 3 * 72 + 71, 4 * 72 + 5):
    record = source[index]
    b = np.zeros(52, np.float32) if record['expression_name'] == 'neutral' else arkit.weights({'jawOpen': 1.0})
    expected = np.asarray(bilinear.vertices(model, model.identity_codes[record['identity']], b))
    np.testing.assert_allclose(record['vertices'], expected, atol=1e-6)
    np.testing.assert_allclose(record['landmarks'], expected[model.landmark_vertices], atol=1e-6)
    np.testing.assert_array_equal(record['camera'], camera.dataset_cameras()[record['view']])
    np.testing.assert_array_equal(record['expression'], b)
    assert record['hair'] == int(index < 2 * 2 * 72)
  batch = next(iter(pipeline.make_dataset(source, batch_size=8, seed=0)))
  assert batch['image'].shape == (8, RES, RES, 3) and np.isfinite(batch['image']).all()
  assert batch['image'].min() >= -1 and batch['image'].max() <= 1 and batch['label'].shape == (8, 77)
