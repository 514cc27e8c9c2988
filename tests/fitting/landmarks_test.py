"""Tests of the MediaPipe face detector / face mesh / selfie segmentation wrapper on real photos."""

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from head360_jax.fitting import landmarks as lm

PHOTOS = ('000134.jpg', 'man.jpg', 'astronaut')


@pytest.fixture(scope='module')
def landmarker():
  return lm.FaceLandmarker()


@pytest.fixture(scope='module')
def photos(shared_data):
  images = {name: lm.load_image(shared_data / 'faces' / name) for name in PHOTOS[:2]}
  images['astronaut'] = skimage.data.astronaut()
  return images


@pytest.fixture(scope='module')
def results(landmarker, photos):
  return {name: landmarker(image) for name, image in photos.items()}


def _inside(points, polygon):
  hull = cv2.convexHull(np.asarray(polygon, np.float32))
  return np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), False) > 0 for x, y in points])


@pytest.mark.parametrize('name', PHOTOS)
def test_landmarks_are_sane_on_upright_photos(results, photos, name):
  face = results[name]
  height, width = photos[name].shape[:2]
  assert face.points.shape == (468, 3) and face.points.dtype == np.float32
  assert face.keypoints.shape == (6, 2) and face.box.shape == (4,)
  assert face.score > 0.9
  points = face.points[:, :2]
  assert np.all((points >= 0) & (points <= [width, height]))
  x0, y0, x1, y1 = face.box
  eyes = points[list(lm.RIGHT_EYE_CORNERS + lm.LEFT_EYE_CORNERS)]
  assert np.all((eyes >= [x0, y0]) & (eyes <= [x1, y1]))
  right_eye, left_eye = points[list(lm.RIGHT_EYE_CORNERS)].mean(0), points[list(lm.LEFT_EYE_CORNERS)].mean(0)
  eye_distance = left_eye[0] - right_eye[0]
  assert eye_distance > 0  # the subject's left eye is on the image right
  assert abs(left_eye[1] - right_eye[1]) < 0.15 * eye_distance  # upright photos: eyes roughly level
  nose = points[lm.NOSE_TIP]
  assert right_eye[0] < nose[0] < left_eye[0]
  assert nose[1] > max(right_eye[1], left_eye[1])
  mouth = points[list(lm.MOUTH_CORNERS)]
  assert mouth[0, 0] < nose[0] < mouth[1, 0] and np.all(mouth[:, 1] > nose[1])
  assert np.all(_inside(np.concatenate([nose[None], mouth]), points[list(lm.FACE_OVAL)]))
  # The nose tip is the closest point of the face (MediaPipe's z: smaller = closer).
  assert face.points[lm.NOSE_TIP, 2] < np.percentile(face.points[:, 2], 5)
  # Detector keypoints agree with the mesh: eyes near the eye centres, nose near the tip.
  np.testing.assert_allclose(face.keypoints[0], right_eye, atol=0.2 * eye_distance)
  np.testing.assert_allclose(face.keypoints[1], left_eye, atol=0.2 * eye_distance)
  np.testing.assert_allclose(face.keypoints[2], nose, atol=0.2 * eye_distance)


def test_face_oval_lies_inside_the_foreground_mask(shared_data, results):
  matte = np.asarray(Image.open(shared_data / 'faces' / '000134_seg.png')) >= 128
  face = lm.face_mask(results['000134.jpg'], matte.shape)
  assert face.sum() > 0.15 * face.size
  assert matte[face].mean() > 0.99


@pytest.mark.parametrize('name', PHOTOS[:2])
@pytest.mark.parametrize('degrees', [-30, 30])
def test_rotated_photo_maps_back_to_the_upright_landmarks(landmarker, photos, results, name, degrees):
  image = photos[name]
  height, width = image.shape[:2]
  matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)  # on pixel indices (centres at 0)
  rotated = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
  points = landmarker(rotated).points[:, :2].astype(np.float64)
  back = np.linalg.solve(matrix[:, :2], (points - 0.5 - matrix[:, 2]).T).T + 0.5
  error = np.linalg.norm(back - results[name].points[:, :2], axis=-1)
  eye_distance = np.ptp(results[name].points[[33, 263], 0])
  # Measured on these photos: median 1.5-2.4 px, 90th percentile 3.9-5.4 px, eye distance ~190 px.
  assert np.median(error) < 4.0
  assert np.percentile(error, 90) < 9.0
  key = list(lm.RIGHT_EYE_CORNERS + lm.LEFT_EYE_CORNERS + lm.MOUTH_CORNERS) + [lm.NOSE_TIP]
  assert error[key].max() < 0.05 * eye_distance


def test_selfie_segmentation_matches_the_foreground_mask(shared_data, photos, results):
  image = photos['000134.jpg']
  person = lm.SelfieSegmenter()(image)
  assert person.shape == image.shape[:2] and person.dtype == np.float32
  assert person.min() >= 0 and person.max() <= 1
  x, y = results['000134.jpg'].points[lm.NOSE_TIP, :2].astype(int)
  assert person[y, x] > 0.9
  for corner in (person[:20, :20], person[:20, -20:], person[-20:, -20:]):
    assert corner.max() < 0.1
  matte = np.asarray(Image.open(shared_data / 'faces' / '000134_seg.png')) >= 128
  mask = person >= 0.5
  iou = (mask & matte).sum() / (mask | matte).sum()
  assert iou > 0.95  # measured 0.990


@pytest.mark.parametrize('with_image', [False, True])
def test_hair_mask_covers_hair_not_face(photos, results, with_image):
  image, face = photos['000134.jpg'], results['000134.jpg']
  person = lm.SelfieSegmenter()(image)
  hair = lm.hair_mask(person, face, image=image if with_image else None)
  assert hair.shape == person.shape and hair.dtype == bool
  assert not np.any(hair & (person < 0.5))
  points = face.points[:, :2]
  # No face skin: the eyes, nose, mouth and cheeks are never hair.
  for index in lm.RIGHT_EYE_CORNERS + lm.LEFT_EYE_CORNERS + lm.MOUTH_CORNERS + (lm.NOSE_TIP, 50, 280):
    x, y = points[index].astype(int)
    assert not hair[y, x]
  # Her hair: the crown above the forehead and the bob at both sides of the face.
  top, chin = points[lm.FOREHEAD_TOP], points[lm.CHIN]
  crown = (top + 0.3 * (top - chin)).astype(int)
  assert hair[crown[1], crown[0]]
  eye_row = int(points[list(lm.RIGHT_EYE_CORNERS)].mean(0)[1])
  oval_x = points[list(lm.FACE_OVAL), 0]
  assert hair[eye_row, int(oval_x.min()) - 25] and hair[eye_row, int(oval_x.max()) + 25]
  # Nothing below the chin (neck, clothes).
  assert not hair[int(chin[1]) + 5 :].any()
  assert hair.sum() > 0.15 * hair.size


def test_hair_mask_with_image_finds_bangs_and_keeps_bare_forehead(photos, results):
  # 000134 has bangs over the forehead inside the face oval; man.jpg has a bare forehead.
  for name, expect_hair in (('000134.jpg', True), ('man.jpg', False)):
    image, face = photos[name], results[name]
    hair = lm.hair_mask(lm.SelfieSegmenter()(image), face, image=image)
    top = face.points[lm.FOREHEAD_TOP, :2]
    brows = face.points[list(lm.RIGHT_EYEBROW + lm.LEFT_EYEBROW), 1]
    y = int((top[1] + brows.min()) / 2)  # between the brows and the oval top, on the midline
    patch = hair[y - 5 : y + 5, int(top[0]) - 5 : int(top[0]) + 5]
    assert patch.mean() > 0.9 if expect_hair else patch.mean() < 0.1


def test_load_image_errors(tmp_path, shared_data):
  text = tmp_path / 'notes.jpg'
  text.write_text('not an image')
  with pytest.raises(lm.ImageError, match='notes.jpg'):
    lm.load_image(text)
  truncated = tmp_path / 'truncated.jpg'
  truncated.write_bytes((shared_data / 'faces' / 'man.jpg').read_bytes()[:5000])
  with pytest.raises(lm.ImageError, match='truncated.jpg'):
    lm.load_image(truncated)
  with pytest.raises(lm.ImageError, match='missing.png'):
    lm.load_image(tmp_path / 'missing.png')
  tiny = tmp_path / 'tiny.png'
  Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tiny)
  with pytest.raises(lm.ImageError, match='tiny.png.*smaller than 64'):
    lm.load_image(tiny)


def test_load_image_applies_exif_orientation(tmp_path, photos):
  image = photos['man.jpg'][:, :400]  # not square, so a rotation shows in the shape
  path = tmp_path / 'rotated.jpg'
  exif = Image.Exif()
  exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
  Image.fromarray(image).save(path, exif=exif, quality=95)
  loaded = lm.load_image(path)
  assert loaded.shape == (400, 563, 3) and loaded.dtype == np.uint8
  np.testing.assert_allclose(loaded.astype(float), np.rot90(image, -1).astype(float), atol=40)


def test_array_errors(landmarker):
  with pytest.raises(lm.ImageError, match='smaller than'):
    landmarker(np.full((16, 16, 3), 128, np.uint8))
  with pytest.raises(lm.ImageError, match='uint8'):
    landmarker(np.zeros((128, 128, 3), np.float32))
  with pytest.raises(lm.ImageError, match=r'\(H, W, 3\)'):
    lm.SelfieSegmenter()(np.zeros((128, 128), np.uint8))
  with pytest.raises(ValueError, match='min_detection_score'):
    lm.FaceLandmarker(min_detection_score=1.5)


@pytest.mark.parametrize('kind', ['grey', 'noise', 'background'])
def test_no_face(landmarker, kind):
  image = {
    'grey': np.full((256, 256, 3), 128, np.uint8),
    'noise': np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8),
    'background': np.ascontiguousarray(skimage.data.astronaut()[0:200, 300:512]),  # flag-free sky and shuttle
  }[kind]
  assert landmarker.detect(image) == []
  with pytest.raises(lm.NoFaceError, match='no face'):
    landmarker(image)


def test_anchors_and_weighted_nms():
  anchors = lm.ssd_anchors()
  assert anchors.shape == (896, 2)
  np.testing.assert_allclose(anchors[:2], [[1 / 32, 1 / 32]] * 2)  # first 16x16 cell, two anchors
  np.testing.assert_allclose(anchors[512:518], [[1 / 16, 1 / 16]] * 6)  # first 8x8 cell, six anchors
  # Two overlapping boxes merge (score-weighted), a far one stays separate.
  boxes = np.array([[0, 0, 1, 1], [0.1, 0, 1.1, 1], [3, 3, 4, 4]], float)
  scores = np.array([0.9, 0.3, 0.6])
  keypoints = np.zeros((3, 6, 2))
  merged = lm.weighted_nms(scores, boxes, keypoints)
  assert [d.score for d in merged] == pytest.approx([0.9, 0.6])
  np.testing.assert_allclose(merged[0].box, [0.025, 0, 1.025, 1], atol=1e-6)
  np.testing.assert_allclose(merged[1].box, boxes[2])
