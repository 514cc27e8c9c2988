"""``fit_image``: one photo -> a fitted head that ``render.py`` can orbit and animate (paper §3.4).

Legend: ``S`` side of the canonical crop used for alignment, shape fit and the overlay
(``FitOptions.crop_size``), ``R`` generator output resolution, ``l`` = 468 landmarks.

Stages (ARCHITECTURE D9; one function each, times in ``FitResult.timings``):

1. ``detect``: MediaPipe face detection + 468-point face mesh and selfie segmentation
   (``fitting.landmarks``); a bad file, a tiny image or no face stops here, before any output;
2. ``align_and_fit_shape``: the photo is brought into the dataset's frontal frame
   (``fitting.align``), then ``s``, the head pose and ARKit ``b`` are fitted to the
   landmarks (``fitting.shape``) through the rig's correspondence table
   (``fitting.correspondence``); the crop is refined with the fitted pose;
3. ``start_identity``: the photo's hair mask in the crop is classified among the dataset's
   hairstyles (``fitting.hairstyle``); the fit starts from the codes of a training identity
   with that hairstyle (the reference starts from a dataset identity's texture, spec §6);
4. targets (``multiview_targets``): the photo, and its projection through the fitted mesh into
   other views blended into the start head's renders (``fitting.multiview``);
5. appearance (``fit_renderer`` + ``appearance.fit_appearance``): neural texture, then
   texture + hair style, against all views;
6. pivotal tuning (``fitting.tuning``): generator weights around the fitted pivot, with PTI's
   locality regulariser;
7. outputs (written to a temporary folder and moved into place at the end, so a failed fit
   leaves nothing behind): ``fitted.npz`` (``fitting.fitted``, with the tuned weights),
   ``aligned.png``, ``targets.png`` (the face targets of all views), ``overlay.png`` (fitted
   mesh and landmarks over the crop: detected green, reprojected red), ``before_after.png``
   (photo | start | fit at the crop's resolution), ``orbit.png``/``orbit.gif``,
   ``fit_log.csv`` (loss per step and its smoothed curve) and ``metrics.json``.
"""

import csv
import dataclasses
import io
import json
import pathlib
import shutil
import tempfile
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from skimage import metrics as sk_metrics

from head360_jax import inference
from head360_jax.data import layout
from head360_jax.fitting import align, appearance, correspondence, fitted, hairstyle, shape, tuning
from head360_jax.fitting import landmarks as landmarks_lib
from head360_jax.fitting import multiview as multiview_lib
from head360_jax.geometry import bilinear, camera
from head360_jax.geometry import rig as rig_lib
from head360_jax.metrics import face_id
from head360_jax.metrics import lpips as lpips_lib
from head360_jax.rendering import gl

STAGES = ('detect', 'shape_fit', 'hairstyle', 'targets', 'appearance_fit', 'tuning', 'write')
# keys of FitResult.timings (seconds) above; re-projected pixels below MIN_VISIBILITY are not blended into a target
MIN_VISIBILITY = 0.25


@dataclasses.dataclass(frozen=True)
class FitOptions:
  """Options of ``fit_image``.

  Attributes:
    crop_size: side of the canonical crop for alignment, the shape fit and the overlay.
    shape_identities, shape_rank, shape_seed: the shape model of the fit,
      ``bilinear.build_from_rig`` of the run's rig (the run's own dataset model has as many
      shape dimensions as training identities, 4 in the demo, too few to fit a face).
    face_contour_weight: weight of the face-oval landmarks (they slide along the silhouette).
    hairstyle_identities_per_style: rendered heads per hairstyle of the hairstyle classifier's
      training set (None: ``hairstyle.TRAINING_IDENTITIES_PER_STYLE``; rendered once, cached).
    shape_options: ``shape.ShapeFitOptions``; appearance_options: ``appearance.AppearanceOptions``.
    multiview: fit re-projected views of the photo too (``fitting.multiview``, paper §3.4).
    view_yaws_deg, view_pitches_deg: their cameras on the dataset orbit.
    tuning_options: ``tuning.TuningOptions`` of pivotal tuning (``steps=0`` turns it off).
    orbit_views: views of the written orbit.
  """

  crop_size: int = 512
  shape_identities: int = 50
  shape_rank: int = 50
  shape_seed: int = 0
  face_contour_weight: float = 0.5
  hairstyle_identities_per_style: int | None = None
  shape_options: shape.ShapeFitOptions = shape.ShapeFitOptions()
  appearance_options: appearance.AppearanceOptions = appearance.AppearanceOptions()
  multiview: bool = True
  view_yaws_deg: tuple[float, ...] = multiview_lib.VIEW_YAWS_DEG
  view_pitches_deg: tuple[float, ...] = multiview_lib.VIEW_PITCHES_DEG
  tuning_options: tuning.TuningOptions = tuning.TuningOptions()
  orbit_views: int = 24


@dataclasses.dataclass(frozen=True)
class FitResult:
  """What ``fit_image`` measured (also in ``metrics.json``).

  Attributes:
    head: the ``fitted.FittedHead`` written to ``fitted.npz``.
    rms_px, rms_iod: landmark RMS in crop pixels and as a fraction of the inter-ocular distance.
    hairstyle, hairstyle_probability: the classifier's prediction and its probability.
    start_identity: the training identity whose codes the fit started from.
    psnr_face, ssim_face, lpips_face: PSNR (dB), mean SSIM and LPIPS-Alex (``face_metrics``) of
      the fitted render in the photo's view vs the aligned photo at the generator's resolution,
      over the face region (face oval minus hair); ``*_start``: the starting render;
      ``*_pivot``: after the appearance passes, before pivotal tuning.
    views: target views (the photo's and the re-projected ones); tuning_steps: pivotal tuning steps.
    identity: ``identity_scores`` of the fitted renders in the photo's view and at yaw ±30 deg
      (``'photo_view'``, ``'yaw-30'``, ``'yaw+30'``): CSIM and dlib distance to the photo (same
      person below ``face_id.SAME_PERSON_DISTANCE`` = 0.6).
    smoothed_monotone: whether the smoothed loss of the (face, hair) pass never increases.
    timings: seconds per stage (``STAGES``), ``appearance_per_100_steps``, ``tuning_per_100_steps``.
  """

  head: fitted.FittedHead
  rms_px: float
  rms_iod: float
  hairstyle: str
  hairstyle_probability: float
  start_identity: int
  psnr_face: float
  ssim_face: float
  lpips_face: float
  psnr_face_start: float
  ssim_face_start: float
  psnr_face_pivot: float
  lpips_face_pivot: float
  views: int
  tuning_steps: int
  identity: dict[str, dict[str, float]]
  smoothed_monotone: tuple[bool, bool]
  timings: dict[str, float]


def _to_unit(image: np.ndarray) -> np.ndarray:
  return image.astype(np.float32) / 127.5 - 1.0


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[0] == size:
    return image
  interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
  return cv2.resize(image, (size, size), interpolation=interpolation)


def face_metrics(
  render: np.ndarray, photo: np.ndarray, mask: np.ndarray, lpips_params: lpips_lib.LpipsParams | None = None
) -> tuple[float, float, float]:
  """PSNR (dB), mean SSIM and LPIPS of uint8 (R, R, 3) images over the ``mask`` (R, R) region.

  LPIPS (nan without ``lpips_params``) compares the photo with the render pasted into it
  inside ``mask``, so only the region differs.
  """
  diff = render.astype(np.float64) - photo.astype(np.float64)
  mse = float(np.mean(diff[mask] ** 2))
  psnr = float('inf') if mse == 0 else 10 * np.log10(255.0**2 / mse)
  _, ssim_map = sk_metrics.structural_similarity(render, photo, channel_axis=-1, data_range=255, full=True)
  lpips = float('nan')
  if lpips_params is not None:
    pasted = np.where(mask[..., None], render, photo)
    lpips = float(lpips_lib.lpips(lpips_params, _to_unit(pasted)[None], _to_unit(photo)[None])[0])
  return psnr, float(ssim_map.mean(-1)[mask].mean()), lpips


def identity_scores(
  photo: np.ndarray, renders: dict[str, np.ndarray], upscale_to: int = 512, landmarker=None
) -> dict[str, dict]:
  """CSIM and dlib distance (``metrics.face_id``) between the photo's face and each render's.

  Args:
    photo: (H, W, 3) uint8 photo.
    renders: ``{name: (R, R, 3) uint8}``; each is upscaled (Lanczos) to ``upscale_to`` first, so
      MediaPipe and dlib's chip see a face of the size they were made for.
    upscale_to: side the renders are upscaled to.
    landmarker: a ``landmarks.FaceLandmarker`` to reuse (a new one if None).

  Returns:
    ``{name: {'csim', 'dlib_distance'}}``, nan where no face is found in the render.

  Raises:
    landmarks.NoFaceError: if the photo has no face.
  """
  params = face_id.load_face_id()
  landmarker = landmarks_lib.FaceLandmarker() if landmarker is None else landmarker
  reference = face_id.face_embedding(photo, params, landmarker)
  out = {}
  for name, render in renders.items():
    big = cv2.resize(render, (upscale_to, upscale_to), interpolation=cv2.INTER_LANCZOS4)
    try:
      embedding = face_id.face_embedding(big, params, landmarker)
    except landmarks_lib.NoFaceError:
      out[name] = {'csim': float('nan'), 'dlib_distance': float('nan')}
      continue
    out[name] = {
      'csim': float(face_id.csim(reference, embedding)),
      'dlib_distance': float(face_id.dlib_distance(reference, embedding)),
    }
  return out


def _monotone(curve: np.ndarray) -> bool:
  return bool(np.all(np.diff(curve) <= 1e-6 * np.abs(curve[:-1])))


def _overlay(crop: np.ndarray, vertices: np.ndarray, faces: np.ndarray, label: np.ndarray, detected, reprojected):
  """The fitted mesh (shaded, 50 %) over the crop, detected landmarks green, reprojected red."""
  cam2world, intrinsics = (np.asarray(x) for x in camera.unpack_label(jnp.asarray(label)))
  size = crop.shape[0]
  mesh = gl.render_mesh(camera.WORLD_PER_MESH * vertices, faces, cam2world, intrinsics, size)
  alpha = 0.5 * mesh['rgba'][..., 3:]
  out = (crop.astype(np.float32) * (1 - alpha) + 255 * mesh['rgba'][..., :3] * alpha).astype(np.uint8)
  radius = max(1, size // 256)
  for points, colour in ((detected, (0, 255, 0)), (reprojected, (255, 0, 0))):
    for x, y in points[:, :2]:
      cv2.circle(out, (int(round(x - 0.5)), int(round(y - 0.5))), radius, colour, -1, lineType=cv2.LINE_AA)
  return out


@dataclasses.dataclass(frozen=True)
class Photo:
  """A photo and what the MediaPipe models found in it (stage 1).

  Attributes:
    image: (H, W, 3) uint8 RGB.
    landmarks: the face's 468 landmarks (``landmarks.FaceLandmarks``).
    person: (H, W) float32 person probability.
    hair: (H, W) bool hair mask.
  """

  image: np.ndarray
  landmarks: landmarks_lib.FaceLandmarks
  person: np.ndarray
  hair: np.ndarray


def detect(image_path: str | pathlib.Path) -> Photo:
  """Loads a photo and runs face detection, the face mesh and selfie segmentation.

  Raises:
    landmarks.ImageError: unreadable, non-image or too small file.
    landmarks.NoFaceError: no face in the photo.
  """
  image = landmarks_lib.load_image(image_path)
  found = landmarks_lib.FaceLandmarker()(image)
  person = landmarks_lib.SelfieSegmenter()(image)
  return Photo(image, found, person, landmarks_lib.hair_mask(person, found, image=image))


@dataclasses.dataclass(frozen=True)
class Alignment:
  """The photo in the canonical frame and the fitted shape (stage 2).

  Attributes:
    model: the fit's bilinear model; fit: the ``shape.ShapeFit``.
    matrix: (2, 3) photo -> crop similarity (the fit's shift folded in).
    label: (25,) camera label of the crop (frontal camera rotated by the head pose).
    crop, person, hair: the photo (uint8 RGB, white outside), person probability and hair
      mask warped into the ``S``² crop.
    detected, reprojected: (l, 3) detected and reprojected landmarks in crop pixels.
    vertices: (v, 3) fitted mesh (mesh units).
    iod: inter-ocular distance in crop pixels.
  """

  model: bilinear.BilinearModel
  fit: shape.ShapeFit
  matrix: np.ndarray
  label: np.ndarray
  crop: np.ndarray
  person: np.ndarray
  hair: np.ndarray
  detected: np.ndarray
  reprojected: np.ndarray
  vertices: np.ndarray
  iod: float


def align_and_fit_shape(photo: Photo, rig_name: str, options: FitOptions) -> Alignment:
  """Aligns the photo to the frontal frame and fits ``s``, pose and ``b`` to its landmarks (stage 2)."""
  model = bilinear.build_from_rig(
    rig_lib.load_rig(rig_name), options.shape_identities, rank=options.shape_rank, seed=options.shape_seed
  )
  table = correspondence.load_correspondence(rig_name)
  lm_model = shape.landmark_model(model, table.faces, table.barycentrics)
  weights = table.valid.astype(np.float32)
  weights[list(landmarks_lib.FACE_OVAL)] *= options.face_contour_weight
  size, label0 = options.crop_size, align.frontal_label()
  matrix0 = align.similarity(photo.landmarks.points, align.template(lm_model, size), weights)
  target = align.transform_points(matrix0, photo.landmarks.points)
  iod = align.inter_ocular(target)
  fit = shape.fit_shape(lm_model, target, weights, label=label0, size=size, iod=iod, options=options.shape_options)
  matrix = align.refine(matrix0, fit.pose, size)
  rotation = shape.rotation_matrix(jnp.asarray(fit.pose.axis_angle))
  head_pose = shape.Pose(fit.pose.axis_angle, np.zeros((), np.float32), np.zeros(2, np.float32))
  points = shape.landmark_positions(lm_model, fit.s, fit.b)
  return Alignment(
    model=model,
    fit=fit,
    matrix=matrix,
    label=np.asarray(shape.rotated_label(label0, rotation)),
    crop=align.warp(photo.image, matrix, size, border=(255, 255, 255)),
    person=align.warp(photo.person, matrix, size),
    hair=align.warp(photo.hair.astype(np.float32), matrix, size) > 0.5,
    detected=align.transform_points(matrix, photo.landmarks.points),
    reprojected=np.asarray(shape.project_points(points, head_pose, jnp.asarray(label0), size)),
    vertices=np.asarray(bilinear.vertices(model, fit.s, fit.b)),
    iod=iod,
  )


def start_identity(
  dataset_root: str | pathlib.Path, hair: np.ndarray, identities_per_style: int | None = None
) -> tuple[int, str, float]:
  """Training identity to start from: one with the hairstyle the classifier predicts (stage 3).

  The classifier trains on ``identities_per_style`` rendered heads of every builder hairstyle
  (``hairstyle.train_classifier``; None: its default). When the run has no identity with the
  predicted style, the start is the run's most probable style (``hairstyle.training_identity``).

  Returns:
    ``(identity index, predicted hairstyle, its probability)``.
  """
  classifier = hairstyle.train_classifier(dataset_root, identities_per_style=identities_per_style)
  style, probabilities = hairstyle.predict(classifier, hair)
  name = hairstyle.training_identity(classifier, probabilities)
  return layout.identity_index(name), style, float(probabilities.max())


def fit_renderer(renderer: inference.HeadRenderer, ws: dict, vertices: np.ndarray):
  """``(render_fn, frozen)`` for ``appearance.fit_appearance`` and ``tuning.tune``: the generator's views of the mesh.

  ``render_fn(frozen, texture (T, T, c), w_hair (w,), labels (n, 25)) -> (n, R, R, 3)`` in
  [-1, 1] renders the fitted mesh with the given texture and hair style from ``labels``
  (deterministic: constant noise, unjittered samples, the fixed super-resolution style), with the
  generator weights at ``frozen['params']``.
  """
  graphdef, params, rest = nnx.split(renderer.generator, nnx.Param, ...)
  frozen = {'params': params, 'rest': rest, 'ws_sr': ws['sr'], 'vertices': jnp.asarray(vertices)[None]}

  def render_fn(frozen, texture, w_hair, labels):
    generator = nnx.merge(graphdef, frozen['params'], frozen['rest'])
    n = labels.shape[0]
    styles = {
      'texture': jnp.zeros((n, *frozen['ws_sr'].shape[1:])),
      'hair': jnp.broadcast_to(w_hair, (n, *w_hair.shape)),
      'sr': jnp.broadcast_to(frozen['ws_sr'], (n, *frozen['ws_sr'].shape[1:])),
    }
    vertices = jnp.broadcast_to(frozen['vertices'], (n, *frozen['vertices'].shape[1:]))
    texture = jnp.broadcast_to(texture, (n, *texture.shape))
    hair = jnp.ones((n,), jnp.float32)  # the photo's head with its hair (needed by stage-2 runs)
    return generator(styles, labels, vertices, key=None, noise_mode='const', texture=texture, hair=hair)['image']

  return render_fn, frozen


def fit_image(
  image_path: str | pathlib.Path,
  renderer: inference.HeadRenderer,
  out_dir: str | pathlib.Path,
  options: FitOptions = FitOptions(),
  *,
  progress: bool = True,
  log=print,
) -> FitResult:
  """Fits the run's model to one photo and writes the outputs (module docstring).

  Args:
    image_path: a photo (any format Pillow reads) with one face.
    renderer: the trained run (``inference.HeadRenderer(workdir)``).
    out_dir: output folder; replaced as a whole when the fit succeeds.
    options: ``FitOptions``.
    progress: show progress bars.
    log: where stage summaries go.

  Returns:
    ``FitResult``.

  Raises:
    landmarks.ImageError: unreadable, non-image or too small file.
    landmarks.NoFaceError: no face in the photo.
    FileNotFoundError: missing dataset files of the run (hairstyle classifier).
  """
  timings = {}
  clock = time.perf_counter()

  def lap(name):
    nonlocal clock
    timings[name] = time.perf_counter() - clock
    clock = time.perf_counter()

  photo = detect(image_path)
  lap('detect')

  aligned = align_and_fit_shape(photo, renderer.model.rig, options)
  fit, size = aligned.fit, options.crop_size
  overlay = _overlay(
    aligned.crop, aligned.vertices, aligned.model.faces, aligned.label, aligned.detected, aligned.reprojected
  )
  lap('shape_fit')
  angle = np.degrees(np.linalg.norm(fit.pose.axis_angle))
  log(
    f'shape fit: landmark RMS {fit.rms_px:.2f} px in the {size}² crop = {100 * fit.rms_iod:.2f} % of the '
    f'inter-ocular distance ({aligned.iod:.1f} px); head rotation {angle:.1f} deg'
  )

  identity, style, probability = start_identity(
    renderer.config.data.root, aligned.hair, options.hairstyle_identities_per_style
  )
  _, t0, h0 = renderer.identity(identity)
  lap('hairstyle')
  log(f'hairstyle: {style} (p = {probability:.2f}); starting from training identity {identity}')

  resolution = renderer.generator.config.image_resolution
  ws = renderer.styles(t0, h0)
  render_fn, frozen = fit_renderer(renderer, ws, aligned.vertices)
  render = jax.jit(render_fn)
  texture0 = np.asarray(renderer.generator.neural_texture(ws, noise_mode='const'))[0]
  w_hair0 = np.asarray(ws['hair'][0])
  photo_label = jnp.asarray(aligned.label)[None]
  render_start = inference.to_uint8(np.asarray(render(frozen, texture0, w_hair0, photo_label)))[0]
  photo_r = _resize(aligned.crop, resolution)
  person_r = _resize(aligned.person, resolution)[..., None]
  target_full = (photo_r.astype(np.float32) * person_r + 255.0 * (1 - person_r)).astype(np.uint8)
  face_crop = landmarks_lib.polygon_mask(aligned.detected[list(landmarks_lib.FACE_OVAL), :2], (size, size))
  face_crop &= ~aligned.hair
  face = _resize(face_crop.astype(np.uint8), resolution) > 0
  gains = appearance.colour_gains(photo_r, render_start, face)
  target_face = appearance.blend_face(photo_r, appearance.recolour_around(render_start, face, gains), face)
  targets = appearance.single_view_targets(aligned.label, _to_unit(target_face), _to_unit(target_full))
  if options.multiview:
    targets = multiview_targets(
      render,
      frozen,
      texture0,
      w_hair0,
      aligned,
      face_crop,
      targets,
      gains,
      options.view_yaws_deg,
      options.view_pitches_deg,
    )
  lap('targets')
  log(f'targets: the photo and {targets.num_views - 1} re-projected views')
  lpips_params = lpips_lib.load_lpips()
  result = appearance.fit_appearance(
    render_fn, frozen, texture0, w_hair0, targets, lpips_params, options.appearance_options, progress=progress
  )
  lap('appearance_fit')
  if len(result.seconds) > 2:  # the first step of each pass compiles (or re-dispatches) the program
    steady = np.concatenate([result.seconds[result.passes == p][1:] for p in (0, 1)])
    timings['appearance_per_100_steps'] = float(100 * np.median(steady))

  render_pivot = inference.to_uint8(np.asarray(render(frozen, result.texture, result.w_hair, photo_label)))[0]
  tuned_frozen, tuned, tuning_losses = frozen, {}, np.zeros(0, np.float32)
  if options.tuning_options.steps:
    locality = None
    if options.tuning_options.locality_weight:

      def random_heads(seed):
        _, t, h = renderer.random_head(seed)
        ws_r = renderer.styles(t, h)
        return np.asarray(renderer.generator.neural_texture(ws_r, noise_mode='const'))[0], np.asarray(ws_r['hair'][0])

      locality = tuning.locality_samples(
        render_fn, frozen, result.texture, result.w_hair, random_heads, options.tuning_options
      )
    tuning_result = tuning.tune(
      render_fn,
      frozen,
      result.texture,
      result.w_hair,
      targets,
      locality,
      lpips_params,
      options.tuning_options,
      multiview_weight=options.appearance_options.multiview_weight,
      lpips_resolution=options.appearance_options.lpips_resolution,
      progress=progress,
    )
    tuned, tuning_losses = tuning_result.tuned, tuning_result.losses
    tuned_frozen = {**frozen, 'params': tuning.apply_tuned(frozen['params'], tuned)}
    if len(tuning_result.seconds) > 2:
      timings['tuning_per_100_steps'] = float(100 * np.median(tuning_result.seconds[1:]))
  render_fit = inference.to_uint8(np.asarray(render(tuned_frozen, result.texture, result.w_hair, photo_label)))[0]
  lap('tuning')
  lpips_alex = lpips_lib.load_lpips('alex')
  scores = {
    name: face_metrics(image, photo_r, face, lpips_alex)
    for name, image in (('start', render_start), ('pivot', render_pivot), ('fit', render_fit))
  }
  side_labels = jnp.asarray(multiview_lib.view_labels((-30.0, 30.0), (0.0, 0.0)))
  sides = inference.to_uint8(np.asarray(render(tuned_frozen, result.texture, result.w_hair, side_labels)))
  similarity = identity_scores(photo.image, {'photo_view': render_fit, 'yaw-30': sides[0], 'yaw+30': sides[1]})
  log(
    'identity (dlib, photo vs fitted render): '
    + ', '.join(f'{k} CSIM {v["csim"]:.3f} distance {v["dlib_distance"]:.3f}' for k, v in similarity.items())
  )
  monotone = tuple(_monotone(result.smoothed[result.passes == p]) for p in (0, 1))
  log(
    'face region PSNR / SSIM / LPIPS-Alex: '
    + '; '.join(f'{name} {psnr:.2f} dB / {ssim:.3f} / {lp:.3f}' for name, (psnr, ssim, lp) in scores.items())
    + f'; smoothed loss monotone (face, hair pass): {monotone}'
  )

  head = fitted.FittedHead(
    s=fit.s,
    b=fit.b,
    texture=result.texture,
    w_hair=result.w_hair,
    h=np.asarray(h0),
    label=aligned.label,
    shape_rig=renderer.model.rig,
    shape_identities=options.shape_identities,
    shape_rank=options.shape_rank,
    shape_seed=options.shape_seed,
    step=int(renderer.step),
    tuned=tuned,
  )
  report = FitResult(
    head=head,
    rms_px=fit.rms_px,
    rms_iod=fit.rms_iod,
    hairstyle=style,
    hairstyle_probability=probability,
    start_identity=identity,
    psnr_face=scores['fit'][0],
    ssim_face=scores['fit'][1],
    lpips_face=scores['fit'][2],
    psnr_face_start=scores['start'][0],
    ssim_face_start=scores['start'][1],
    psnr_face_pivot=scores['pivot'][0],
    lpips_face_pivot=scores['pivot'][2],
    views=targets.num_views,
    tuning_steps=options.tuning_options.steps,
    identity=similarity,
    smoothed_monotone=monotone,
    timings=timings,
  )
  orbit = inference.to_uint8(
    renderer.render_styles(
      {**ws, 'hair': jnp.asarray(result.w_hair)[None]},
      aligned.vertices,
      inference.orbit_labels(options.orbit_views),
      result.texture,
      params=tuned_frozen['params'],
    )
  )
  white = np.full_like(aligned.crop, 255)
  person = aligned.person[..., None]
  photo_white = (aligned.crop * person + white * (1 - person)).astype(np.uint8)
  target_views = inference.to_uint8(np.asarray(targets.face))
  images = {
    'aligned.png': aligned.crop,
    'overlay.png': overlay,
    'before_after.png': np.concatenate([photo_white, *(_resize(x, size) for x in (render_start, render_fit))], 1),
    'targets.png': inference.image_grid(target_views, columns=min(8, len(target_views))),
    'orbit.png': inference.image_grid(orbit, columns=min(8, len(orbit))),
  }
  metrics = {k: v for k, v in dataclasses.asdict(report).items() if k != 'head'}
  metrics.update(image=str(image_path), inter_ocular_px=aligned.iod, crop_size=size, resolution=resolution)
  _write_outputs(pathlib.Path(out_dir), head, images, orbit, fit.losses, result, tuning_losses, metrics)
  lap('write')
  return report


def multiview_targets(
  render, frozen, texture0, w_hair0, aligned: Alignment, face_crop: np.ndarray, photo_targets, gains, yaws, pitches
) -> appearance.Targets:
  """The photo's targets plus its re-projections into the views ``(yaws, pitches)`` (``fitting.multiview``).

  Each re-projected view's face target is the projected photo Poisson-blended into the start
  head's render of that view (recoloured around the face by the photo view's ``gains``,
  ``appearance.recolour_around``), over the pixels with visibility > ``MIN_VISIBILITY``; its pixel
  weights are the visibilities there and 1 elsewhere (face pass) or 0 elsewhere (hair pass).
  """
  resolution = photo_targets.face.shape[1]
  labels = multiview_lib.view_labels(tuple(yaws), tuple(pitches))
  colours, weights = jax.jit(multiview_lib.project_photo, static_argnames=('resolution',))(
    jnp.asarray(aligned.vertices),
    jnp.asarray(aligned.model.faces),
    jnp.asarray(aligned.crop, jnp.float32),
    jnp.asarray(face_crop, jnp.float32),
    jnp.asarray(aligned.label),
    jnp.asarray(labels),
    resolution=resolution,
  )
  colours, weights = np.asarray(colours), np.asarray(weights)
  starts = inference.to_uint8(np.asarray(render(frozen, texture0, w_hair0, jnp.asarray(labels))))
  faces, face_weights, full_weights = [], [], []
  for colour, weight, start in zip(colours, weights, starts, strict=True):
    region = cv2.erode((weight > MIN_VISIBILITY).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    projected = np.clip(colour, 0, 255).astype(np.uint8)
    faces.append(_to_unit(appearance.blend_face(projected, appearance.recolour_around(start, region, gains), region)))
    face_weights.append(np.where(region, weight, 1.0))
    full_weights.append(np.where(region, weight, 0.0))
  faces = np.stack(faces).astype(np.float32)
  cat = lambda a, b: jnp.concatenate([a, jnp.asarray(b, jnp.float32)])
  return appearance.Targets(
    labels=cat(photo_targets.labels, labels),
    face=cat(photo_targets.face, faces),
    full=cat(photo_targets.full, faces),
    face_weight=cat(photo_targets.face_weight, np.stack(face_weights)),
    full_weight=cat(photo_targets.full_weight, np.stack(full_weights)),
  )


def _write_outputs(out_dir, head, images, orbit, shape_losses, result, tuning_losses, metrics) -> None:
  """Writes everything into a temporary folder beside ``out_dir``, then moves it into place."""
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f'.{out_dir.name}-') as tmp:
    tmp = pathlib.Path(tmp)
    fitted.save(head, tmp / 'fitted.npz')
    for name, image in images.items():
      inference.write_image(tmp / name, image)
    inference.write_video(tmp / 'orbit.gif', orbit)
    _write_log(tmp / 'fit_log.csv', shape_losses, result, tuning_losses)
    (tmp / 'metrics.json').write_text(json.dumps(metrics, indent=1, default=float) + '\n')
    if out_dir.exists():
      shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    tmp.mkdir()  # TemporaryDirectory removes its (now moved) folder on exit


def _resize_height(image: np.ndarray, height: int) -> np.ndarray:
  if image.shape[0] >= height:
    return image
  width = image.shape[1] * height // image.shape[0]
  return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


def _write_log(
  path: pathlib.Path, shape_losses: np.ndarray, result: appearance.AppearanceFit, tuning_losses: np.ndarray
) -> None:
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(['stage', 'step', 'loss', 'smoothed'])
  for i, loss in enumerate(shape_losses):
    writer.writerow(['shape', i, f'{loss:.6g}', ''])
  names = ('face', 'hair')
  for i, (loss, smoothed, index) in enumerate(zip(result.losses, result.smoothed, result.passes, strict=True)):
    writer.writerow([names[index], i, f'{loss:.6g}', f'{smoothed:.6g}'])
  for i, loss in enumerate(tuning_losses):
    writer.writerow(['tuning', i, f'{loss:.6g}', ''])
  path.write_text(buffer.getvalue())
