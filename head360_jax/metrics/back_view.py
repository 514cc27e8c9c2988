"""Back-view face rate: faces found where the back of the head should be (the "mirroring" artifact).

Legend: ``n`` images, ``H W`` image rows/columns, ``i`` identities.

SphereHead (arXiv 2404.05680, §1 and §3.3) names the artifact of 360° generators it targets:
a face, or part of one, rendered on the back of the head. The figure here counts it the way
a user sees it: MediaPipe's face detector (``fitting.landmarks.FaceLandmarker.detect``,
BlazeFace short range, MediaPipe's default score threshold 0.5) runs on renders from behind
(yaw 150-210°, pitch 0) and from the front (yaw -30-30°, its sensitivity on these renders).
The detector is not perfect on synthetic heads: it also fires on some back views of the
*ground truth* (hair seen from behind scores 0.5-0.8 for some anny identities), so every
figure comes with the same figure on the dataset's images at the same cameras, and the
artifact is the render rate above the ground truth's (``excess``).
"""

import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

BACK_YAWS_DEG = (150.0, 165.0, 180.0, 195.0, 210.0)
FRONT_YAWS_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)
MIN_SIDE = 128  # renders are upsampled to this side before detection (the detector's own input size)


def face_scores(images: np.ndarray, detector, *, min_side: int = MIN_SIDE) -> np.ndarray:
  """The best face-detection score of each image, 0 where none: (n,) float32 in [0, 1].

  Args:
    images: (n, H, W, 3) uint8 RGB (renders composited on white, ground truth likewise).
    detector: a ``fitting.landmarks.FaceLandmarker`` (its ``detect``; score threshold its own).
    min_side: smaller images are upsampled (bilinear) to this side first; the detector
      letterboxes into 128² anyway, and its input checks refuse images under 64².

  Raises:
    ValueError: if ``images`` is not (n, H, W, 3) uint8.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f'expected (n, H, W, 3) uint8 images, got {images.shape} {images.dtype}')
  scores = []
  for image in images:
    if min(image.shape[:2]) < min_side:
      scale = min_side / min(image.shape[:2])
      size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
      image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    scores.append(max((d.score for d in detector.detect(image)), default=0.0))
  return np.asarray(scores, np.float32)


def rate(scores: np.ndarray, min_score: float = 0.5) -> float:
  """Fraction of images with a face scored at least ``min_score``."""
  return float((np.asarray(scores) >= min_score).mean()) if np.size(scores) else float('nan')


def ground_truth_images(root: str | pathlib.Path, resolution: int, identities: Sequence[int], yaws_deg) -> np.ndarray:
  """The dataset's neutral images of ``identities`` at pitch 0 and ``yaws_deg``, on white: (i·k, H, W, 3) uint8.

  Raises:
    FileNotFoundError: naming the first missing image (a dataset without a neutral expression
      or those identities).
    ValueError: if a yaw is not one of the dataset's (multiples of 15°).
  """
  import imageio.v3 as iio

  from head360_jax.data import layout

  images = []
  for identity in identities:
    for yaw in yaws_deg:
      view = dataset_view(yaw)
      relpath = layout.image_relpath(resolution, layout.identity_name(identity), 'neutral', view)
      path = pathlib.Path(root) / layout.IMAGES / relpath
      if not path.is_file():
        raise FileNotFoundError(f'{path} not found (the back-view protocol reads neutral images at pitch 0)')
      image = np.asarray(iio.imread(path))
      if image.shape[-1] == 4:  # composite on white, as the renders are
        alpha = image[..., 3:].astype(np.float32) / 255.0
        image = np.rint(image[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
      images.append(image[..., :3])
  return np.stack(images)


def dataset_view(yaw_deg: float) -> int:
  """The dataset view (0..71) at pitch 0 and ``yaw_deg`` (``geometry.camera.dataset_cameras``).

  Raises:
    ValueError: if the yaw is not on the dataset's 15° grid.
  """
  from head360_jax.geometry import camera

  steps = (yaw_deg % 360.0) / camera.DATASET_YAW_STEP_DEG
  if abs(steps - round(steps)) > 1e-6:
    raise ValueError(f'yaw {yaw_deg} is not a dataset yaw (multiples of {camera.DATASET_YAW_STEP_DEG} deg)')
  yaw_index = (round(steps) + camera.FRONTAL_VIEW % camera.DATASET_NUM_YAWS) % camera.DATASET_NUM_YAWS
  return (camera.FRONTAL_VIEW // camera.DATASET_NUM_YAWS) * camera.DATASET_NUM_YAWS + yaw_index


def evaluate_back_view(renderer, identities: Sequence[int], *, min_score: float = 0.5, detector=None) -> dict:
  """Back- and front-view face rates of a run's renders and of its dataset (module docstring).

  Renders each training identity (neutral expression, EMA generator) from the dataset's
  cameras at pitch 0 and ``BACK_YAWS_DEG`` / ``FRONT_YAWS_DEG``; the dataset's images from
  those cameras are scored with the same detector and threshold.

  Returns:
    ``{'render/back_rate', 'render/front_rate', 'truth/back_rate', 'truth/front_rate',
    'back_excess', 'count', 'scores': {...}}``; rates in [0, 1]; ``back_excess`` is the render's
    back rate minus the ground truth's (the artifact; > 0 means faces where the data has none).

  Raises:
    FileNotFoundError: as ``ground_truth_images``.
  """
  from head360_jax import inference
  from head360_jax.fitting import landmarks
  from head360_jax.geometry import camera

  detector = detector or landmarks.FaceLandmarker()
  config = renderer.config
  result = {'count': len(identities) * len(BACK_YAWS_DEG), 'scores': {}}
  for name, yaws in (('back', BACK_YAWS_DEG), ('front', FRONT_YAWS_DEG)):
    labels = camera.dataset_cameras()[[dataset_view(yaw) for yaw in yaws]]  # the ground truth's own cameras
    renders = [
      inference.to_uint8(renderer.render(*renderer.identity(i), np.zeros(52, np.float32), labels)) for i in identities
    ]
    render_scores = face_scores(np.concatenate(renders), detector)
    truth = ground_truth_images(config.data.root, config.data.resolution, identities, yaws)
    truth_scores = face_scores(truth, detector)
    result[f'render/{name}_rate'] = rate(render_scores, min_score)
    result[f'truth/{name}_rate'] = rate(truth_scores, min_score)
    result['scores'][name] = {'render': render_scores.tolist(), 'truth': truth_scores.tolist()}
  result['back_excess'] = result['render/back_rate'] - result['truth/back_rate']
  return result
