"""Tests of the SynHead100 data source on a tiny fake dataset written by the test."""

import io
import itertools
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from head360_jax.data import layout, sources, synthetic

RES = 16
IDENTITIES = ('fs_010', 'fs_002')  # given unsorted: the index must sort them
EXPRESSIONS = ('jawOpen', 'browDwonLeft')


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
  root = tmp_path_factory.mktemp('synhead')
  return synthetic.write_fake_dataset(root, resolution=RES, identities=IDENTITIES, expressions=EXPRESSIONS, bald=True)


def _small(tmp_path, **kwargs):
  """A 1-identity, 2-expression, 2-view dataset to break in error tests."""
  return synthetic.write_fake_dataset(tmp_path, resolution=RES, identities=('fs_002',), views=2, **kwargs)


def test_length_and_order(fake):
  source = sources.SynHeadSource(fake.root, RES)
  assert len(source) == 2 * 2 * layout.NUM_VIEWS
  expected = list(itertools.product(sorted(IDENTITIES), sorted(EXPRESSIONS), range(layout.NUM_VIEWS)))
  got = [(r['identity_name'], r['expression_name'], r['view']) for r in (source[i] for i in range(len(source)))]
  assert got == expected
  assert [source[i]['identity'] for i in (0, len(source) - 1)] == [0, 1]
  assert source.identity_names == tuple(sorted(IDENTITIES))
  assert source[-1]['relpath'] == source[len(source) - 1]['relpath']
  with pytest.raises(IndexError):
    source[len(source)]


def test_record_contents_equal_what_was_written(fake):
  source = sources.SynHeadSource(fake.root, RES)
  for index in range(0, len(source), 7):
    record = source[index]
    relpath = layout.image_relpath(RES, record['identity_name'], record['expression_name'], record['view'])
    assert record['relpath'] == relpath
    assert record['hair'] == 1
    assert record['identity'] == sorted(IDENTITIES).index(record['identity_name'])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record['png']))), fake.images[relpath])
    np.testing.assert_array_equal(record['camera'], fake.cameras[relpath])
    np.testing.assert_array_equal(record['expression'], fake.expressions[relpath])
    np.testing.assert_array_equal(record['label'], np.concatenate([fake.cameras[relpath], fake.expressions[relpath]]))
    key = (record['identity_name'], record['expression_name'])
    np.testing.assert_array_equal(record['vertices'], fake.vertices[key])
    np.testing.assert_array_equal(record['landmarks'], fake.landmarks[key])
    assert record['vertices'].dtype == record['landmarks'].dtype == record['label'].dtype == np.float32


def test_bald_records_share_haired_labels(fake):
  haired = sources.SynHeadSource(fake.root, RES)
  source = sources.SynHeadSource(fake.root, RES, include_bald=True)
  assert len(source) == 2 * len(haired)
  for index in (0, 100, len(haired) - 1):
    twin, bald = source[index], source[len(haired) + index]
    assert (twin['hair'], bald['hair']) == (1, 0)
    assert bald['relpath'] == twin['relpath'].replace(f'split_{RES}/', f'split_{RES}_bald/')
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(bald['png']))), fake.images[bald['relpath']])
    for field in ('label', 'vertices', 'landmarks', 'identity', 'view'):
      np.testing.assert_array_equal(bald[field], twin[field])


def test_meshes_are_cached_and_source_pickles(fake):
  source = sources.SynHeadSource(fake.root, RES)
  first, same_mesh = source[0], source[1]
  assert first['vertices'] is same_mesh['vertices']
  clone = pickle.loads(pickle.dumps(source))  # fails if the cache's lock travelled along
  assert len(clone) == len(source)
  ours, theirs = source[5], clone[5]
  assert ours['png'] == theirs['png']
  for field in ('label', 'vertices', 'landmarks'):
    np.testing.assert_array_equal(ours[field], theirs[field])


def test_expected_vertices_from_bilinear_npz(tmp_path):
  _small(tmp_path, num_vertices=10)
  assert sources.SynHeadSource(tmp_path, RES).num_vertices == 10
  np.savez(tmp_path / 'bilinear.npz', core=np.zeros((2, 53, 12, 3), np.float32), faces=np.zeros((1, 3), np.int32))
  with pytest.raises(ValueError, match=r'10 vertices, expected 12'):
    sources.SynHeadSource(tmp_path, RES)
  np.savez(tmp_path / 'bilinear.npz', other=np.zeros(3))  # without the key, the first mesh sets the count
  assert sources.SynHeadSource(tmp_path, RES).num_vertices == 10


def test_image_without_pose_label(tmp_path):
  fake = _small(tmp_path)
  pose_file = tmp_path / 'images' / layout.POSE_JSON
  missing = layout.image_relpath(RES, 'fs_002', 'jawOpen', 1)
  layout.write_labels(pose_file, {k: v for k, v in fake.cameras.items() if k != missing})
  with pytest.raises(ValueError) as error:
    sources.SynHeadSource(tmp_path, RES)
  assert str(tmp_path / 'images' / missing) in str(error.value)
  assert str(pose_file) in str(error.value)


def test_image_without_expression_label(tmp_path):
  fake = _small(tmp_path)
  label_file = tmp_path / 'images' / layout.EXPRESSION_JSON
  rows = json.loads(label_file.read_text())['labels'][1:]
  label_file.write_text(json.dumps({'labels': rows}))
  with pytest.raises(ValueError) as error:
    sources.SynHeadSource(tmp_path, RES)
  assert str(tmp_path / 'images' / sorted(fake.expressions)[0]) in str(error.value)
  assert str(label_file) in str(error.value)


def test_wrong_vertex_count(tmp_path):
  _small(tmp_path, num_vertices=10)
  bad = layout.mesh_path(tmp_path, 'fs_002', 'jawOpen')
  bad.write_text(bad.read_text() + 'v 0 0 0\n')
  with pytest.raises(ValueError) as error:
    sources.SynHeadSource(tmp_path, RES)
  assert f'{bad}: 11 vertices, expected 10' in str(error.value)
  with pytest.raises(ValueError, match=r'10 vertices, expected 9'):
    sources.SynHeadSource(tmp_path, RES, expected_vertices=9)


def test_missing_mesh_and_landmarks(tmp_path):
  _small(tmp_path)
  landmarks = layout.landmarks_path(tmp_path, 'fs_002', 'jawOpen')
  landmarks.unlink()
  with pytest.raises(FileNotFoundError, match=str(landmarks)):
    sources.SynHeadSource(tmp_path, RES)
  mesh = layout.mesh_path(tmp_path, 'fs_002', 'browDwonLeft')
  mesh.unlink()
  with pytest.raises(FileNotFoundError, match=str(mesh)):
    sources.SynHeadSource(tmp_path, RES)


def test_landmark_count_mismatch(tmp_path):
  _small(tmp_path, num_landmarks=4)
  bad = layout.landmarks_path(tmp_path, 'fs_002', 'jawOpen')
  bad.write_text(bad.read_text() + '0 0 0\n')
  with pytest.raises(ValueError, match=f'{bad}: 5 landmarks'):
    sources.SynHeadSource(tmp_path, RES)


def test_bad_image_name_and_missing_split(tmp_path):
  _small(tmp_path)
  with pytest.raises(FileNotFoundError, match='split_32'):
    sources.SynHeadSource(tmp_path, 32)
  stray = tmp_path / 'images' / f'split_{RES}' / 'fs_002' / 'jawOpen' / 'front.png'
  stray.write_bytes(b'')
  with pytest.raises(ValueError, match=str(stray)):
    sources.SynHeadSource(tmp_path, RES)


def test_views_filter_keeps_only_those_views(fake):
  all_views = sources.SynHeadSource(fake.root, RES)
  held_out = sources.SynHeadSource(fake.root, RES, views=[3, 30])
  assert len(held_out) == len(all_views) * 2 // 72
  records = [held_out[i] for i in range(len(held_out))]
  assert sorted({r['view'] for r in records}) == [3, 30]
  assert {r['identity'] for r in records} == {r['identity'] for r in (all_views[i] for i in range(len(all_views)))}
  with pytest.raises(ValueError, match='no images of views'):
    sources.SynHeadSource(fake.root, RES, views=[99])


def test_expression_filters_keep_or_drop_folders(fake):
  kept = sources.SynHeadSource(fake.root, RES, expressions=['jawOpen'])
  dropped = sources.SynHeadSource(fake.root, RES, exclude_expressions=['jawOpen'], views=[3])
  assert {kept[i]['expression_name'] for i in range(len(kept))} == {'jawOpen'}
  assert len(kept) == 2 * layout.NUM_VIEWS
  assert [(r['expression_name'], r['view']) for r in (dropped[i] for i in range(len(dropped)))] == [
    ('browDwonLeft', 3)
  ] * 2
  # the expression labels still come from the label file, not from the folder name
  np.testing.assert_array_equal(kept[0]['expression'], fake.expressions[kept[0]['relpath']])
  with pytest.raises(ValueError, match='no images of'):
    sources.SynHeadSource(fake.root, RES, expressions=['jawOpen'], exclude_expressions=['jawOpen'])
