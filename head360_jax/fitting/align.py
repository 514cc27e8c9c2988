"""Alignment: a photo's landmarks -> the canonical crop of the dataset's frontal camera.

Legend: ``l`` landmarks (MediaPipe's 468), ``S`` crop side in pixels, ``H W`` photo size.

The model renders heads in the frame of the dataset's frontal camera (``camera.FRONTAL_VIEW``;
reference-spec §1.4: "frontal view" for snapshots and fitting). A photo is brought into it by a
2D similarity (rotation, uniform scale, translation) that maps the detected landmarks onto
the landmarks of the mean head projected by that camera (``template``), estimated robustly
with OpenCV (least median of squares, ``cv2.estimateAffinePartial2D``). The shape fit then
refines the head pose; ``refine`` folds its residual 2D shift (and scale) back into the crop,
so the final crop is rendered by the fitted head under ``shape.rotated_label``.
"""

import cv2
import jax.numpy as jnp
import numpy as np

from head360_jax.fitting import landmarks as landmarks_lib
from head360_jax.fitting import shape
from head360_jax.geometry import arkit, camera


def frontal_label() -> np.ndarray:
  """The 25-d label of the dataset's frontal camera (view 30), float32."""
  return camera.dataset_cameras()[camera.FRONTAL_VIEW]


def template(model: shape.LandmarkModel, size: int) -> np.ndarray:
  """(l, 3) landmarks of the mean head (prior mean, neutral) in the ``size``² canonical crop."""
  points = shape.landmark_positions(model, jnp.asarray(model.prior_mean), jnp.zeros(arkit.NUM_BLENDSHAPES))
  return np.asarray(shape.project_points(points, shape.identity_pose(), jnp.asarray(frontal_label()), size))


def inter_ocular(points: np.ndarray) -> float:
  """Distance between the two eye centres (mean of each eye's corners), in the points' pixels."""
  right = points[list(landmarks_lib.RIGHT_EYE_CORNERS), :2].mean(0)
  left = points[list(landmarks_lib.LEFT_EYE_CORNERS), :2].mean(0)
  return float(np.linalg.norm(left - right))


def similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """(2, 3) similarity mapping ``source`` (l, 2) onto ``target`` (l, 2) over points with weight > 0.

  Raises:
    ValueError: if OpenCV finds no transform (degenerate points).
  """
  used = np.asarray(weights) > 0
  matrix, _ = cv2.estimateAffinePartial2D(
    np.asarray(source, np.float32)[used, :2], np.asarray(target, np.float32)[used, :2], method=cv2.LMEDS
  )
  if matrix is None:
    raise ValueError('could not estimate the alignment of the face landmarks')
  return matrix.astype(np.float64)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Applies a (2, 3) similarity to (l, 2|3) points; a third (depth) column is scaled with it."""
  points = np.asarray(points, np.float64)
  out = points.copy()
  out[:, :2] = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
  if points.shape[1] == 3:
    out[:, 2] = points[:, 2] * np.sqrt(abs(np.linalg.det(matrix[:, :2])))
  return out


def refine(matrix: np.ndarray, pose: shape.Pose, size: int) -> np.ndarray:
  """Folds the shape fit's 2D similarity into the crop: returns the final photo -> crop matrix.

  The fit models crop pixels as ``scale · (p - c) + c + translation`` of the head's own
  projection ``p`` (``c`` the crop centre); the final crop inverts that, so the head's
  projection lands where the photo's face is.
  """
  scale = float(np.exp(pose.log_scale))
  centre = size / 2.0
  undo = np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]], np.float64)
  undo[:, 2] = centre - (centre + np.asarray(pose.translation, np.float64)) / scale
  return np.concatenate([undo[:, :2] @ matrix[:, :2], (undo[:, :2] @ matrix[:, 2] + undo[:, 2])[:, None]], axis=1)


def warp(
  image: np.ndarray, matrix: np.ndarray, size: int, *, border: float | tuple = 0, supersample: int = 4
) -> np.ndarray:
  """Resamples ``image`` (H, W[, C]) into the ``size``² crop of ``matrix`` (photo -> crop pixels).

  Warps at ``supersample`` × the size and area-averages down, so a photo much larger than the
  crop is low-pass filtered rather than aliased. Pixel centres are at +0.5 (as in
  ``camera.project``).
  """
  big = size * supersample
  # Crop pixel p (corner-based) -> supersampled pixel supersample * p; OpenCV maps centres at integers.
  up = supersample * np.asarray(matrix, np.float64)
  up[:, 2] += up[:, :2].sum(axis=1) / 2 - 0.5
  out = cv2.warpAffine(
    image.astype(np.float32), up, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border
  )
  out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
  if image.dtype == np.uint8:
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
  return out.astype(image.dtype)
