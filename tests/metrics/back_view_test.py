"""Back-view face rate: dataset views by yaw, the detector on a real face vs a blank image, missing data."""

import numpy as np
import pytest
from PIL import Image

from head360_jax.fitting import landmarks
from head360_jax.geometry import camera
from head360_jax.metrics import back_view


@pytest.mark.parametrize('yaw', [*back_view.BACK_YAWS_DEG, *back_view.FRONT_YAWS_DEG])
def test_dataset_view_has_the_yaw_at_pitch_zero(yaw):
  view = back_view.dataset_view(yaw)
  expected = np.asarray(camera.orbit_cam2world(np.float32([yaw]), np.float32([0.0]), camera.CAMERA_RADIUS))[0]
  cam2world = camera.dataset_cameras()[view, :16].reshape(4, 4)
  np.testing.assert_allclose(cam2world, expected, atol=1e-5)


def test_off_grid_yaw_is_refused():
  with pytest.raises(ValueError, match='not a dataset yaw'):
    back_view.dataset_view(10.0)


def test_detector_scores_a_real_face_and_not_a_blank_image(shared_data):
  photo = Image.open(shared_data / 'faces' / 'man.jpg').convert('RGB')
  small = np.asarray(photo.resize((96, round(96 * photo.height / photo.width)), Image.BILINEAR))  # upsampled inside
  blank = np.full_like(small, 255)
  scores = back_view.face_scores(np.stack([small, blank]), landmarks.FaceLandmarker())
  assert scores[0] > 0.75 and scores[1] == 0.0
  assert back_view.rate(scores) == 0.5 and back_view.rate(scores, min_score=0.99) == 0.0
  with pytest.raises(ValueError, match='uint8'):
    back_view.face_scores(np.zeros((1, 64, 64, 3), np.float32), None)


def test_missing_ground_truth_names_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='id_000/neutral/0042.png'):
    back_view.ground_truth_images(tmp_path, 64, [0], [180.0])
