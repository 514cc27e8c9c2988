"""Tests of the hairstyle classifier: a small built dataset (3 identities: long, ponytail, side_part) and a
tiny rendered set of every style of ``hair.STYLES``."""

import json
import time

import cv2
import numpy as np
import pytest

from head360_jax.data import build_dataset, hair, layout
from head360_jax.fitting import hairstyle

RES = 64
TRAIN_VIEWS = (29, 30, 31)  # yaw -15°, 0°, 15° at pitch 0°
HELD_OUT_VIEWS = (28, 32, 6, 54, 4, 8, 52, 56)  # yaw ±30° at pitch 0°, then pitch ±20° at yaw 0° and ±30°
# A tiny rendered set: 2 identities per style (18 in all), one expression, 3 views, 32² (~10-20 s on 2 cores).
TINY = {'identities_per_style': 2, 'expressions': ('neutral',), 'resolution': 32, 'views': TRAIN_VIEWS}


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  """~5 s on 2 cores: seed 0 deals long, ponytail, side_part to the three identities; only the views used here."""
  root = tmp_path_factory.mktemp('hairstyles')
  views = TRAIN_VIEWS + HELD_OUT_VIEWS + hairstyle.NEAR_FRONTAL_VIEWS
  build_dataset.build(
    root, num_identities=3, expressions=['neutral'], resolution=RES, seed=0, progress=False, views=views
  )
  return root


@pytest.fixture(scope='module')
def classifier(root):
  return hairstyle.train_classifier(root, source='dataset')


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  """A private ``assets.cache_dir()`` for the module, so the rendered set is rendered here."""
  with pytest.MonkeyPatch.context() as patch:
    path = tmp_path_factory.mktemp('cache')
    patch.setenv('HEAD360_CACHE', str(path))
    yield path


@pytest.fixture(scope='module')
def rendered(cache):
  return hairstyle.rendered_hair_masks(**TINY)


def _accuracy(classifier, masks, hairstyles):
  predicted = np.array(classifier.classes)[hairstyle.predict_batch(classifier, masks).argmax(axis=1)]
  return np.mean(predicted == np.array(hairstyles))


def test_hair_from_renders_thresholds_the_premultiplied_difference():
  bald = np.zeros((2, 3, 4), np.float32)
  bald[0] = [0.5, 0.4, 0.3, 1.0]  # row 0 skin, row 1 background
  haired = bald.copy()
  haired[0, 1, 0] += 0.04  # below the threshold: low contrast or a hair edge
  haired[0, 2, 1] -= 0.06
  haired[1, 1] = [0.02, 0.02, 0.02, 0.3]  # 30 % hair coverage over the background
  expected = np.array([[False, False, True], [False, True, False]])
  np.testing.assert_array_equal(hairstyle.hair_from_renders(haired, bald), expected)
  with pytest.raises(ValueError, match='one shape'):
    hairstyle.hair_from_renders(haired[..., :3], bald[..., :3])


def test_dataset_hair_masks(root):
  build = json.loads((root / 'build.json').read_text())
  views = sorted(set(TRAIN_VIEWS + HELD_OUT_VIEWS + hairstyle.NEAR_FRONTAL_VIEWS))
  assert build['views'] == views  # build(views=...) renders only those, haired and bald
  assert len(list((root / layout.IMAGES).rglob('*.png'))) == 3 * len(views) * 2
  views = (30, 6)
  masks, hairstyles, identities = hairstyle.dataset_hair_masks(root, views=views)
  assert masks.shape == (3 * len(views), RES, RES) and masks.dtype == bool
  assert identities == [row['identity'] for row in build['per_identity'] for _ in views]
  assert hairstyles == [row['hairstyle'] for row in build['per_identity'] for _ in views]
  assert set(hairstyles) == {'long', 'ponytail', 'side_part'}
  area = {h: masks[i].mean() for i, h in enumerate(hairstyles) if i % 2 == 0}  # frontal view
  # Frontal hair: a tight shell over the scalp < side part < long hair falling beside the face.
  assert 0.02 < area['ponytail'] < area['side_part'] < area['long'] < 0.5, area
  assert not masks[::2, 30:50, 26:38].any()  # the middle of the face (eyes to mouth) is never hair
  with pytest.raises(ValueError, match='not in'):
    hairstyle.dataset_hair_masks(root, expressions=['jawOpen'])
  with pytest.raises(ValueError, match='views'):
    hairstyle.dataset_hair_masks(root, views=(72,))


def test_missing_build_json_or_bald_images(root, tmp_path):
  with pytest.raises(FileNotFoundError, match='build.json'):
    hairstyle.train_classifier(tmp_path)
  (tmp_path / 'build.json').write_text((root / 'build.json').read_text())
  (tmp_path / layout.IMAGES / layout.split_name(RES)).mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='split_64_bald'):
    hairstyle.dataset_hair_masks(tmp_path)


def test_hair_features_are_cell_fractions():
  rng = np.random.default_rng(0)
  masks = rng.random((2, 64, 64)) < np.linspace(0, 1, 64)[None, :, None]  # hair more likely towards the bottom
  features = hairstyle.hair_features(masks)
  side = hairstyle.HAIR_FEATURE_SIDE
  assert features.shape == (2, side * side) and features.dtype == np.float32
  cells = masks.reshape(2, side, 64 // side, side, 64 // side).mean(axis=(2, 4)).reshape(2, -1)
  np.testing.assert_allclose(features, cells, atol=1e-6)
  odd = hairstyle.hair_features(np.ones((1, 37, 53), bool))  # any side: area resize keeps a full mask full
  np.testing.assert_allclose(odd, 1.0, atol=1e-6)
  with pytest.raises(ValueError, match='n, H, W'):
    hairstyle.hair_features(np.zeros((64, 64), bool))


def test_training_accuracy(root, classifier):
  masks, hairstyles, identities = hairstyle.dataset_hair_masks(root)
  assert classifier.classes == ('long', 'ponytail', 'side_part')
  assert classifier.weights.shape == (hairstyle.HAIR_FEATURE_SIDE**2, 3) and classifier.bias.shape == (3,)
  build = {row['hairstyle']: row['identity'] for row in json.loads((root / 'build.json').read_text())['per_identity']}
  assert classifier.identities_by_class == tuple((build[c],) for c in classifier.classes)
  probabilities = hairstyle.predict_batch(classifier, masks)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
  # Measured: 27/27 correct, true-class probability >= 0.986.
  assert _accuracy(classifier, masks, hairstyles) == 1.0
  truth = probabilities[np.arange(len(masks)), [classifier.classes.index(h) for h in hairstyles]]
  assert truth.min() > 0.8, truth


def test_held_out_views(root):
  classifier = hairstyle.train_classifier(root, source='dataset', views=TRAIN_VIEWS)
  masks, hairstyles, _ = hairstyle.dataset_hair_masks(root, views=HELD_OUT_VIEWS)
  # Measured: 24/24 correct (yaw ±30° and pitch ±20° views never seen in training).
  assert _accuracy(classifier, masks, hairstyles) >= 21 / 24


def test_predict_any_side_and_bald_differs(root, classifier):
  masks, hairstyles, _ = hairstyle.dataset_hair_masks(root, views=(30,))
  for mask, style in zip(masks, hairstyles, strict=True):
    big = cv2.resize(mask.astype(np.uint8), (150, 150), interpolation=cv2.INTER_NEAREST).astype(bool)
    predicted, probabilities = hairstyle.predict(classifier, big)
    assert predicted == style and probabilities.shape == (3,)
    assert hairstyle.predict(classifier, mask[:, ::-1])[0] == style  # a parting on the other side
  long_hair = masks[hairstyles.index('long')]
  bald, bald_p = hairstyle.predict(classifier, np.zeros_like(long_hair))
  assert hairstyle.predict(classifier, long_hair)[0] == 'long' != bald
  assert np.abs(bald_p - hairstyle.predict(classifier, long_hair)[1]).max() > 0.5
  for bad in (np.zeros(64, bool), np.zeros((1, 64, 64), bool)):
    with pytest.raises(ValueError, match='2-D'):
      hairstyle.predict(classifier, bad)


def test_one_hairstyle(root):
  masks, hairstyles, identities = hairstyle.dataset_hair_masks(root, views=TRAIN_VIEWS)
  keep = [i for i, h in enumerate(hairstyles) if h == 'side_part']
  classifier = hairstyle.fit_classifier(masks[keep], ['side_part'] * len(keep), [identities[i] for i in keep], steps=20)
  assert classifier.classes == ('side_part',)
  for mask in (masks[0], np.zeros((10, 10), bool), np.ones((33, 33), bool)):
    style, probabilities = hairstyle.predict(classifier, mask)
    assert style == 'side_part' and probabilities.tolist() == [1.0]


def test_save_and_load(classifier, tmp_path):
  path = tmp_path / 'hairstyle.npz'
  hairstyle.save_classifier(classifier, path)
  loaded = hairstyle.load_classifier(path)
  assert loaded.classes == classifier.classes and loaded.identities_by_class == classifier.identities_by_class
  np.testing.assert_array_equal(loaded.weights, classifier.weights)
  np.testing.assert_array_equal(loaded.bias, classifier.bias)
  with np.load(path, allow_pickle=False) as data:  # plain arrays, no object dtype
    assert all(data[name].dtype != object for name in data.files)
  np.savez(
    path,
    weights=classifier.weights[:10],
    bias=classifier.bias,
    classes=np.array(classifier.classes),
    identities=np.array([], np.str_),
    identity_class=np.array([], np.int64),
  )
  with pytest.raises(ValueError, match='do not fit'):
    hairstyle.load_classifier(path)
  with pytest.raises(FileNotFoundError):
    hairstyle.load_classifier(tmp_path / 'missing.npz')


def test_rendered_set_covers_every_style_and_is_cached(cache, rendered):
  masks, hairstyles, identities = rendered
  n = len(hair.STYLES) * TINY['identities_per_style'] * len(TINY['views'])
  assert masks.shape == (n, 32, 32) and masks.dtype == bool
  assert sorted(set(hairstyles)) == sorted(hair.STYLES)
  for style in hair.STYLES:  # identities_per_style identities each, all views of each
    members = {i for i, h in zip(identities, hairstyles, strict=True) if h == style}
    assert len(members) == TINY['identities_per_style'], (style, members)
  area = {h: masks[np.array(hairstyles) == h].mean() for h in hair.STYLES}
  # Measured (6 identities per style, 64²): buzz 0.07 (the thinnest shell) < crop 0.11 < afro 0.20 < long 0.26.
  assert 0.01 < area['buzz'] < area['crop'] < min(area['afro'], area['long']) < 0.5, area
  folder = hairstyle.rendered_set_dir(**TINY)
  assert folder.parent.parent == cache and [p.name for p in folder.iterdir()] == ['masks.npz']  # renders deleted
  start = time.perf_counter()
  again = hairstyle.rendered_hair_masks(**TINY)  # from masks.npz
  assert time.perf_counter() - start < 2
  np.testing.assert_array_equal(again[0], masks)
  assert again[1:] == (hairstyles, identities)
  assert hairstyle.rendered_set_dir(**{**TINY, 'seed': 1}) != folder
  with pytest.raises(ValueError, match='identities_per_style'):
    hairstyle.rendered_hair_masks(**{**TINY, 'identities_per_style': 0})


def test_held_out_identities(rendered):
  masks, hairstyles, identities = rendered
  evaluation = hairstyle.cross_validate(masks, hairstyles, identities, folds=2)
  k = len(hair.STYLES)
  assert evaluation.classes == tuple(sorted(hair.STYLES)) and evaluation.confusion.shape == (k, k)
  assert evaluation.confusion.sum() == len(masks)  # every mask tested once
  np.testing.assert_array_equal(evaluation.confusion.sum(axis=1), len(masks) // k)  # rows: true class
  assert evaluation.accuracy == pytest.approx(np.trace(evaluation.confusion) / len(masks))
  # Measured 45/54 = 0.83 (buzz, bun and ponytail are a tight shell from the front); chance 1/9.
  assert evaluation.accuracy >= 0.65, evaluation.format()
  assert 'accuracy' in evaluation.format()
  with pytest.raises(ValueError, match='folds'):
    hairstyle.cross_validate(masks, hairstyles, identities, folds=3)  # 2 identities per style


def test_train_on_rendered_set_starts_from_the_run(root, rendered, tmp_path):
  classifier = hairstyle.train_classifier(
    root,
    identities_per_style=TINY['identities_per_style'],
    expressions=TINY['expressions'],
    resolution=TINY['resolution'],
    views=TINY['views'],
  )  # the module's cache: no rendering
  assert classifier.classes == tuple(sorted(hair.STYLES))
  run = {row['hairstyle']: row['identity'] for row in json.loads((root / 'build.json').read_text())['per_identity']}
  assert classifier.identities_by_class == tuple((run[c],) if c in run else () for c in classifier.classes)
  masks, hairstyles, _ = rendered
  for style in ('afro', 'long', 'mohawk'):
    mask = masks[hairstyles.index(style)]
    predicted, probabilities = hairstyle.predict(classifier, mask)
    assert predicted == style and probabilities.shape == (len(hair.STYLES),)
    start = hairstyle.training_identity(classifier, probabilities)
    available = [c for c, ids in zip(classifier.classes, classifier.identities_by_class, strict=True) if ids]
    fallback = hairstyle.nearest_training_style(predicted, probabilities, available, classifier.classes)
    assert start == run[fallback] and (fallback == style) == (style in run)
  with pytest.raises(ValueError, match='source'):
    hairstyle.train_classifier(root, source='photos')
  hairstyle.save_classifier(classifier, tmp_path / 'rendered.npz')  # empty classes survive the file
  assert hairstyle.load_classifier(tmp_path / 'rendered.npz').identities_by_class == classifier.identities_by_class


def test_nearest_training_style_falls_back_to_the_most_probable_available():
  classes = ('afro', 'bob', 'crop', 'long', 'ponytail')
  p = np.array([0.05, 0.1, 0.6, 0.05, 0.2], np.float32)
  assert hairstyle.nearest_training_style('crop', p, ['crop', 'long'], classes) == 'crop'  # the run has it
  assert hairstyle.nearest_training_style('crop', p, ['long', 'ponytail', 'bob'], classes) == 'ponytail'
  assert hairstyle.nearest_training_style('crop', p, {'afro', 'long', 'mohawk'}, classes) == 'afro'  # tie: first
  with pytest.raises(ValueError, match='none of'):
    hairstyle.nearest_training_style('crop', p, ['mohawk'], classes)
  with pytest.raises(ValueError, match='probabilities'):
    hairstyle.nearest_training_style('crop', p[:3], ['long'], classes)
  classifier = hairstyle.HairstyleClassifier(
    np.zeros((hairstyle.HAIR_FEATURE_SIDE**2, 5), np.float32),
    np.zeros(5, np.float32),
    classes,
    ((), ('id_003',), (), ('id_000', 'id_002'), ('id_001',)),
  )
  assert hairstyle.training_identity(classifier, p) == 'id_001'  # crop absent -> ponytail (0.2) beats bob (0.1)
  assert hairstyle.training_identity(classifier, np.array([0, 0.1, 0, 0.9, 0])) == 'id_000'
  with pytest.raises(ValueError, match='probabilities'):
    hairstyle.training_identity(classifier, p[:4])
