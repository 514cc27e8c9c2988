"""Face landmarks and person masks from MediaPipe's TFLite models (ARCHITECTURE D9).

Legend: ``h w`` image rows/columns, ``a`` detector anchors (896), ``d`` detections,
``k`` = 6 detector keypoints, ``l`` = 468 face-mesh landmarks.

Three models from the ``mediapipe==0.10.21`` wheel (Apache-2.0; fetched with
``assets.fetch_wheel``, never installed) run under ``ai_edge_litert``; the pre- and
post-processing reproduces MediaPipe's graphs (``modules/face_detection/face_detection.pbtxt``
with the ``face_detection_short_range.pbtxt`` options, ``modules/face_landmark/
face_detection_front_detection_to_roi.pbtxt``, ``face_landmark_cpu.pbtxt``,
``modules/selfie_segmentation``):

* Face detection (BlazeFace short range): the image is letterboxed into a 128² tensor
  (the longest side fits, zero border, values in [-1, 1]). 896 SSD anchors of unit size
  (4 layers, strides 8, 16, 16, 16, two anchors per cell and layer, centres at cell
  centres) decode the regressors ``(x, y, w, h, 6 × (x, y))`` scaled by 1/128; the score is
  the sigmoid of the logit clipped to ±100; detections above ``min_detection_score`` are
  merged by MediaPipe's weighted non-max suppression (IoU > 0.3 with the best remaining
  detection: box and keypoints averaged with score weights, the best score kept).
* Face mesh: the region of interest is the detector box, centred on the box, rotated so
  that the line from keypoint 0 (the subject's right eye) to keypoint 1 (left eye) is
  horizontal, made square on its longer side and scaled by 1.5. It is cropped to 192²
  with ``cv2.warpAffine`` (bilinear, replicated border, values in [0, 1]); the model's
  468 ``(x, y, z)`` in crop pixels are mapped back by the inverse rotation and scale; the
  presence score is the sigmoid of the second output.
* Selfie segmentation: the image is resized (not letterboxed) to 256², the model gives a
  person probability per pixel, which is resized back bilinearly.

Image coordinates follow docs/conventions.md: ``x`` = column, ``y`` = row, pixel
``(col, row)`` spans ``[col, col+1) × [row, row+1)``, so its centre is at ``+0.5``.
"Left"/"right" in names are the subject's (a frontal photo shows the subject's left on
the image right, as MediaPipe's ``LEFT_EYE`` and our mesh frame's +x do).
"""

import dataclasses
import functools
import os
import pathlib

import cv2
import numpy as np
from PIL import Image, ImageOps

from head360_jax import assets

MEDIAPIPE_VERSION = '0.10.21'

# Smallest accepted image side. The detector sees the image letterboxed into 128² and
# the mesh a 192² crop of 1.5x the face box: at 64 px both already upsample the image at
# least 2x, so smaller inputs hold less detail than the models were trained to see (and
# a 16 px image would be upsampled 8x into a blur that still sometimes "detects").
MIN_IMAGE_SIDE = 64

# --- Indices into the 468-point face mesh (MediaPipe's canonical topology). ---
# The closed face silhouette, clockwise in the image starting at the forehead top (10).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
FOREHEAD_TOP = 10  # top of the face oval, on the midline
CHIN = 152  # bottom of the face oval, on the midline
NOSE_TIP = 1
# Eye corners as (outer, inner) of each eye; subject's right eye = image left in a frontal photo.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
# Mouth corners (subject's right, subject's left).
MOUTH_CORNERS = (61, 291)
# Eyebrow upper edges, from the outer end to the inner end.
RIGHT_EYEBROW = (70, 63, 105, 66, 107)
LEFT_EYEBROW = (300, 293, 334, 296, 336)

# --- Detector keypoint order (MediaPipe's FaceKeyPoint), subject's sides. ---
DETECTOR_KEYPOINTS = ('right_eye', 'left_eye', 'nose_tip', 'mouth_center', 'right_ear_tragion', 'left_ear_tragion')

# --- Hair and skin rules (hair_mask, skin_distance). ---
SKIN_PATCHES = (50, 280, 197)  # right cheek, left cheek, nose bridge: the skin colour reference
SKIN_PATCH_RADIUS = 0.08  # in eye distances
SKIN_MIN_SPREAD = np.array([5.0, 2.5, 2.5], np.float32)  # CIELAB L, a, b
SKIN_THRESHOLD = 3.0  # robust standard deviations (skin_distance) below which a pixel is skin
FOREHEAD_BAND = 0.2  # forehead skin above the face oval, in face heights (man.jpg: hairline at 0.14)
HAIR_CLOSING = 0.06  # radius of the closing that fills highlights in the hair, in face heights

_DETECTOR_SIZE = 128
_MESH_SIZE = 192
_SEGMENTER_SIZE = 256
_NMS_IOU = 0.3
_ROI_SCALE = 1.5


class ImageError(ValueError):
  """An input that is not a usable image: unreadable, not an image file, wrong array, too small."""


class NoFaceError(ValueError):
  """No face was found in the image (detector or mesh presence score below threshold)."""


@dataclasses.dataclass(frozen=True)
class Detection:
  """One face from the detector, in image pixels.

  Attributes:
    score: detector confidence in [0, 1].
    box: (4,) float32 ``x0, y0, x1, y1``.
    keypoints: (6, 2) float32 ``(x, y)`` in ``DETECTOR_KEYPOINTS`` order.
  """

  score: float
  box: np.ndarray
  keypoints: np.ndarray


@dataclasses.dataclass(frozen=True)
class FaceLandmarks:
  """The 468 face-mesh landmarks of one face.

  Attributes:
    points: (468, 3) float32; ``x`` = column and ``y`` = row in image pixels (pixel
      centres at +0.5), ``z`` = MediaPipe's relative depth in the same pixel scale
      (smaller = closer to the camera; zero near the face's centre plane).
    score: face presence score of the mesh model in [0, 1].
    box: (4,) float32 detector box ``x0, y0, x1, y1`` in pixels.
    keypoints: (6, 2) float32 detector keypoints in pixels, in ``DETECTOR_KEYPOINTS``
      order (right eye, left eye, nose tip, mouth centre, right ear tragion, left ear
      tragion; the subject's sides).
  """

  points: np.ndarray
  score: float
  box: np.ndarray
  keypoints: np.ndarray


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an image file as (H, W, 3) uint8 RGB with its EXIF orientation applied (Pillow).

  Raises:
    ImageError: naming ``path``, if it is missing, not an image, truncated or corrupt, or
      a side is below ``MIN_IMAGE_SIDE``.
  """
  path = pathlib.Path(path)
  try:
    with Image.open(path) as image:
      image.load()  # decode now: a truncated file fails here, not later
      image = ImageOps.exif_transpose(image).convert('RGB')
  except (OSError, SyntaxError, ValueError) as e:  # PIL raises these for unreadable/corrupt files
    raise ImageError(f'{path}: cannot read as an image ({e})') from None
  array = np.asarray(image, np.uint8)
  try:
    check_image(array)
  except ImageError as e:
    raise ImageError(f'{path}: {e}') from None
  return array


def check_image(image: np.ndarray) -> np.ndarray:
  """Validates an (H, W, 3) uint8 RGB array with both sides >= ``MIN_IMAGE_SIDE``.

  Returns:
    The image as a contiguous uint8 array.

  Raises:
    ImageError: for another shape or dtype, or a side below ``MIN_IMAGE_SIDE``.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ImageError(f'expected an (H, W, 3) uint8 RGB image, got shape {image.shape} and dtype {image.dtype}')
  if min(image.shape[:2]) < MIN_IMAGE_SIDE:
    raise ImageError(f'image {image.shape[1]}x{image.shape[0]} is smaller than {MIN_IMAGE_SIDE} px on a side')
  return np.ascontiguousarray(image)


@functools.cache
def _model_path(module: str, name: str) -> str:
  return str(assets.fetch_wheel('mediapipe', MEDIAPIPE_VERSION) / 'mediapipe' / 'modules' / module / f'{name}.tflite')


def _interpreter(module: str, name: str):
  from ai_edge_litert.interpreter import Interpreter  # imported here: only fitting needs it

  interpreter = Interpreter(model_path=_model_path(module, name))
  interpreter.allocate_tensors()
  return interpreter


def _run(interpreter, tensor: np.ndarray) -> list[np.ndarray]:
  """Runs a single-input model on a (1, h, w, 3) float32 tensor; returns its outputs in order."""
  interpreter.set_tensor(interpreter.get_input_details()[0]['index'], tensor)
  interpreter.invoke()
  return [interpreter.get_tensor(d['index']) for d in interpreter.get_output_details()]


def _crop(image: np.ndarray, centre, side: float, angle: float, size: int, border: int) -> tuple[np.ndarray, ...]:
  """Samples the square ``side`` px wide, rotated by ``angle``, around ``centre`` into ``size``².

  Returns:
    ``(crop (size, size, 3) float32 in [0, 1], affine (2, 3))`` where ``affine`` maps a
    continuous crop position ``(u, v)`` (pixel centres at +0.5) to image pixels.
  """
  cos, sin = np.cos(angle), np.sin(angle)
  linear = side / size * np.array([[cos, -sin], [sin, cos]])
  offset = np.asarray(centre, np.float64) - linear @ np.array([size / 2, size / 2])
  affine = np.concatenate([linear, offset[:, None]], axis=1)
  # cv2 indexes pixel centres at integers: shift both sides by half a pixel.
  cv_affine = affine.copy()
  cv_affine[:, 2] += linear @ np.array([0.5, 0.5]) - 0.5
  crop = cv2.warpAffine(
    image, cv_affine, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0
  )
  return crop.astype(np.float32) / 255.0, affine


@functools.cache
def ssd_anchors() -> np.ndarray:
  """BlazeFace short-range anchor centres (896, 2) float32 ``(x, y)`` in [0, 1] of the 128² input.

  MediaPipe's ``SsdAnchorsCalculator`` with 4 layers, strides (8, 16, 16, 16), one aspect
  ratio plus the interpolated one, fixed unit anchor size: layers of equal stride share a
  grid, so a 16² grid has 2 anchors per cell and an 8² grid has 6, cell by cell in row order.
  """
  anchors = []
  for stride, per_cell in ((8, 2), (16, 6)):
    cells = _DETECTOR_SIZE // stride
    ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing='ij')
    grid = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    anchors.append(np.repeat(grid, per_cell, axis=0))
  return np.concatenate(anchors).astype(np.float32)


def decode_detections(regressors: np.ndarray, logits: np.ndarray, min_score: float) -> list[Detection]:
  """Decodes raw BlazeFace outputs into detections in unit input coordinates, after weighted NMS.

  Args:
    regressors: (896, 16) raw box and keypoint offsets in input pixels.
    logits: (896,) raw scores.
    min_score: keep detections with sigmoid score >= this.

  Returns:
    Detections sorted by descending score, box and keypoints in [0, 1] input units.
  """
  scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
  anchors = ssd_anchors().astype(np.float64)
  raw = regressors.astype(np.float64) / _DETECTOR_SIZE
  centre, size = anchors + raw[:, :2], raw[:, 2:4]
  boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
  keypoints = anchors[:, None, :] + raw[:, 4:].reshape(-1, 6, 2)
  keep = np.flatnonzero(scores >= min_score)
  return weighted_nms(scores[keep], boxes[keep], keypoints[keep])


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
  return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray) -> list[Detection]:
  """MediaPipe's weighted non-max suppression (``NonMaxSuppressionCalculator``, WEIGHTED, IoU).

  Repeatedly takes the best remaining detection and every remaining one that overlaps it
  with IoU > 0.3; their boxes and keypoints are averaged with score weights, and the
  merged detection keeps the best score.

  Args:
    scores: (d,) scores; boxes: (d, 4) ``x0, y0, x1, y1``; keypoints: (d, k, 2).

  Returns:
    Merged detections, best first.
  """
  order = np.argsort(-scores, kind='stable')
  out = []
  while len(order):
    best = order[0]
    overlap = _iou(boxes[best], boxes[order]) > _NMS_IOU
    overlap[0] = True
    group, order = order[overlap], order[~overlap]
    weights = scores[group] / scores[group].sum()
    out.append(
      Detection(
        float(scores[best]),
        np.einsum('d,dc->c', weights, boxes[group]).astype(np.float32),
        np.einsum('d,dkc->kc', weights, keypoints[group]).astype(np.float32),
      )
    )
  return out


class FaceLandmarker:
  """MediaPipe face detection + 468-point face mesh on one image (module doc).

  Models load on first use; an instance is not thread-safe (one TFLite interpreter each).

  Args:
    min_detection_score: detector score threshold in [0, 1] (MediaPipe's default 0.5).
    min_presence_score: face-mesh presence threshold in [0, 1] (MediaPipe's default 0.5).

  Raises:
    ValueError: if a threshold is outside [0, 1].
  """

  def __init__(self, *, min_detection_score: float = 0.5, min_presence_score: float = 0.5):
    for name, value in (('min_detection_score', min_detection_score), ('min_presence_score', min_presence_score)):
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'{name} must be in [0, 1], got {value}')
    self.min_detection_score = float(min_detection_score)
    self.min_presence_score = float(min_presence_score)

  @functools.cached_property
  def _detector(self):
    return _interpreter('face_detection', 'face_detection_short_range')

  @functools.cached_property
  def _mesh(self):
    return _interpreter('face_landmark', 'face_landmark')

  def detect(self, image: np.ndarray) -> list[Detection]:
    """All faces the detector finds, best first, in image pixels.

    Args:
      image: (H, W, 3) uint8 RGB.

    Raises:
      ImageError: for an invalid or too small image.
    """
    image = check_image(image)
    height, width = image.shape[:2]
    side = float(max(height, width))  # letterbox: the longer side fits the 128² input
    centre = (width / 2, height / 2)
    crop, affine = _crop(image, centre, side, 0.0, _DETECTOR_SIZE, cv2.BORDER_CONSTANT)
    regressors, logits = _run(self._detector, (crop * 2 - 1)[None])
    detections = decode_detections(regressors[0], logits[0, :, 0], self.min_detection_score)
    to_image = lambda unit: unit * _DETECTOR_SIZE @ affine[:, :2].T + affine[:, 2]
    return [
      Detection(
        d.score,
        to_image(d.box.reshape(2, 2)).reshape(4).astype(np.float32),
        to_image(d.keypoints).astype(np.float32),
      )
      for d in detections
    ]

  def mesh(self, image: np.ndarray, detection: Detection) -> FaceLandmarks:
    """The 468 landmarks in the region of interest built from ``detection`` (module doc).

    Raises:
      ImageError: for an invalid or too small image.
    """
    image = check_image(image)
    (x0, y0, x1, y1), eyes = detection.box, detection.keypoints[:2].astype(np.float64)
    dx, dy = eyes[1] - eyes[0]
    angle = np.arctan2(dy, dx)  # rotate the crop so the right-to-left eye line is horizontal
    side = _ROI_SCALE * max(x1 - x0, y1 - y0)
    crop, affine = _crop(image, ((x0 + x1) / 2, (y0 + y1) / 2), side, angle, _MESH_SIZE, cv2.BORDER_REPLICATE)
    raw, presence = _run(self._mesh, crop[None])
    local = raw.reshape(468, 3).astype(np.float64)
    points = np.empty_like(local)
    points[:, :2] = local[:, :2] @ affine[:, :2].T + affine[:, 2]
    points[:, 2] = local[:, 2] * side / _MESH_SIZE
    score = float(1.0 / (1.0 + np.exp(-np.clip(float(presence.ravel()[0]), -100, 100))))
    return FaceLandmarks(points.astype(np.float32), score, detection.box.copy(), detection.keypoints.copy())

  def __call__(self, image: np.ndarray) -> FaceLandmarks:
    """Landmarks of the most confident face whose mesh presence passes ``min_presence_score``.

    Args:
      image: (H, W, 3) uint8 RGB (e.g. from ``load_image``).

    Returns:
      ``FaceLandmarks`` in image pixels.

    Raises:
      ImageError: for an invalid or too small image.
      NoFaceError: if no detection scores ``min_detection_score`` or none of their meshes
        passes ``min_presence_score``.
    """
    detections = self.detect(image)
    best = None
    for detection in detections:
      landmarks = self.mesh(image, detection)
      if landmarks.score >= self.min_presence_score:
        return landmarks
      best = landmarks if best is None or landmarks.score > best.score else best
    if best is None:
      raise NoFaceError(f'no face detected (detector score threshold {self.min_detection_score})')
    raise NoFaceError(f'face presence score {best.score:.2f} is below {self.min_presence_score}')


class SelfieSegmenter:
  """MediaPipe selfie segmentation (general 256² model): person probability per pixel."""

  @functools.cached_property
  def _model(self):
    return _interpreter('selfie_segmentation', 'selfie_segmentation')

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """Person probability map.

    Args:
      image: (H, W, 3) uint8 RGB.

    Returns:
      (H, W) float32 in [0, 1].

    Raises:
      ImageError: for an invalid or too small image.
    """
    image = check_image(image)
    height, width = image.shape[:2]
    tensor = cv2.resize(image, (_SEGMENTER_SIZE, _SEGMENTER_SIZE), interpolation=cv2.INTER_AREA)
    (probability,) = _run(self._model, (tensor.astype(np.float32) / 255.0)[None])
    probability = cv2.resize(probability[0, :, :, 0], (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(probability, 0.0, 1.0).astype(np.float32)


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """(H, W) bool mask of the pixels whose centres lie inside the polygon ``points`` (n, 2) ``(x, y)``."""
  mask = np.zeros(shape, np.uint8)
  # cv2 places pixel centres at integers; 4 fractional bits keep sub-pixel vertices.
  vertices = np.round((np.asarray(points, np.float64) - 0.5) * 16).astype(np.int32)
  cv2.fillPoly(mask, [vertices], 1, lineType=cv2.LINE_8, shift=4)
  return mask.astype(bool)


def face_mask(landmarks: FaceLandmarks, shape: tuple[int, int]) -> np.ndarray:
  """(H, W) bool mask of the face-oval polygon (``FACE_OVAL``) of ``landmarks``."""
  return polygon_mask(landmarks.points[list(FACE_OVAL), :2], shape)


def skin_distance(image: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
  """Per-pixel colour distance to the face's skin, in robust standard deviations.

  The reference is skin that hair, beards and glasses rarely cover: discs of radius
  ``SKIN_PATCH_RADIUS`` eye distances (outer corner to outer corner) around the cheek
  and nose-bridge landmarks ``SKIN_PATCHES``. Each CIELAB channel is centred on its
  median there and divided by its scaled median absolute deviation (at least
  ``SKIN_MIN_SPREAD``, so that evenly lit skin does not make every other pixel far); the
  distance is the Euclidean norm of the three.

  Args:
    image: (H, W, 3) uint8 RGB.
    landmarks: the face's landmarks in ``image``.

  Returns:
    (H, W) float32 >= 0 (about 0-2 on lit skin, larger on hair, eyes, background).

  Raises:
    ImageError: for an invalid image.
  """
  image = check_image(image)
  lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
  points = landmarks.points[:, :2].astype(np.float64)
  eye_distance = float(np.linalg.norm(points[RIGHT_EYE_CORNERS[0]] - points[LEFT_EYE_CORNERS[0]]))
  radius = max(SKIN_PATCH_RADIUS * eye_distance, 1.0)
  rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
  centres = np.stack([cols + 0.5, rows + 0.5], axis=-1)
  patches = np.zeros(image.shape[:2], bool)
  for index in SKIN_PATCHES:
    patches |= np.linalg.norm(centres - points[index], axis=-1) <= radius
  reference = lab[patches] if patches.any() else lab.reshape(-1, 3)
  median = np.median(reference, axis=0)
  spread = np.maximum(1.4826 * np.median(np.abs(reference - median), axis=0), SKIN_MIN_SPREAD)
  return np.linalg.norm((lab - median) / spread, axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _FaceFrame:
  chin: np.ndarray  # (2,) chin landmark, image pixels
  up: np.ndarray  # (2,) unit image vector from the chin to the forehead top
  across: np.ndarray  # (2,) unit image vector along the face's width
  face_height: float  # chin to forehead-top distance, pixels
  height: np.ndarray  # (H, W) each pixel centre's coordinate along ``up`` from the chin
  width: np.ndarray  # (H, W) each pixel centre's coordinate along ``across`` from the chin


def _face_frame(landmarks: FaceLandmarks, shape: tuple[int, int]) -> _FaceFrame:
  points = landmarks.points[:, :2].astype(np.float64)
  chin, top = points[CHIN], points[FOREHEAD_TOP]
  face_height = max(float(np.linalg.norm(top - chin)), 1e-9)
  up = (top - chin) / face_height
  across = np.array([-up[1], up[0]])
  rows, cols = np.mgrid[: shape[0], : shape[1]]
  offset = np.stack([cols + 0.5, rows + 0.5], axis=-1) - chin
  return _FaceFrame(chin, up, across, face_height, offset @ up, offset @ across)


def hair_mask(
  person: np.ndarray, landmarks: FaceLandmarks, *, image: np.ndarray | None = None, threshold: float = 0.5
) -> np.ndarray:
  """Pixels of the person's hair (and anything else on the head that is not face skin).

  Rule, in the face's own frame (``up`` = unit vector from the chin landmark to the
  forehead-top landmark, ``face height`` = their distance, so tilted heads work):

  1. candidates: ``person >= threshold`` and above the chin, ``(p - chin) . up > 0``
     (neck, shoulders and clothes are below);
  2. face skin, never hair: the face oval (``face_mask``) below the top of the brows;
  3. forehead band, skin unless told otherwise: MediaPipe's oval stops short of the
     hairline, so the oval swept ``FOREHEAD_BAND`` face heights upwards, outside the oval,
     above the brow tops and between the outer brow ends;
  4. without ``image``: hair = candidates outside the oval and the forehead band;
  5. with ``image`` (the hairline by colour): hair = the candidates above the brow tops
     outside the oval and the band (top of the head), plus every other candidate outside
     step 2 whose ``skin_distance`` is at least ``SKIN_THRESHOLD`` (bangs over the
     forehead and the oval, hair at the sides; skin-coloured ears, temples, a bald
     forehead and the neck beside the jaw stay out), then a morphological closing of
     radius ``HAIR_CLOSING`` face heights fills highlights inside the hair.

  Ears count as hair without ``image``; a bald scalp counts as hair above the band; hair
  below the chin is missed by both rules.

  Args:
    person: (H, W) person probability in [0, 1] (``SelfieSegmenter``).
    landmarks: the face's landmarks in the same image.
    image: optional (H, W, 3) uint8 RGB photo for the colour rule.
    threshold: probability above which a pixel is the person.

  Returns:
    (H, W) bool.

  Raises:
    ValueError: if ``person`` is not 2-D or ``image`` does not match its shape.
  """
  person = np.asarray(person)
  if person.ndim != 2:
    raise ValueError(f'person must be an (H, W) probability map, got shape {person.shape}')
  if image is not None and np.shape(image)[:2] != person.shape:
    raise ValueError(f'image {np.shape(image)} does not match the person map {person.shape}')
  shape = person.shape
  frame = _face_frame(landmarks, shape)
  points = landmarks.points[:, :2].astype(np.float64)
  brows = points[list(RIGHT_EYEBROW + LEFT_EYEBROW)]
  above_brows = frame.height > float(((brows - frame.chin) @ frame.up).max())
  face = face_mask(landmarks, shape)
  oval = points[list(FACE_OVAL)]
  sweep = FOREHEAD_BAND * frame.face_height * frame.up
  swept = cv2.convexHull(np.concatenate([oval, oval + sweep]).astype(np.float32))[:, 0]
  brow_width = (brows - frame.chin) @ frame.across
  forehead = (
    polygon_mask(swept, shape)
    & ~face
    & above_brows
    & (frame.width >= brow_width.min())
    & (frame.width <= brow_width.max())
  )
  candidates = (person >= threshold) & (frame.height > 0)
  if image is None:
    return candidates & ~face & ~forehead
  top = candidates & ~face & ~forehead & above_brows
  allowed = candidates & (~face | above_brows)
  hair = top | (allowed & (skin_distance(image, landmarks) >= SKIN_THRESHOLD))
  # Fill highlights on the hair (close to skin in colour) that hair surrounds.
  size = 2 * max(1, round(HAIR_CLOSING * frame.face_height)) + 1
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
  return cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool) & allowed
