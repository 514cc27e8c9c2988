"""Appearance fit: neural texture and hair style against an aligned photo (paper §3.4).

Legend: ``R`` output resolution of the generator, ``T`` texture side, ``c`` texture
channels, ``w`` style size, ``V`` target views, ``n`` views rendered per step.

With the shape code, expression and camera fixed (``fitting.shape``), the frozen generator
renders the frontal view from two free variables: the neural texture (T, T, c) itself (the
reference's fitting loop optimises the texture tensor, reference-spec §6) and the hair
branch's style ``w_hair`` (w,) (the paper's "latent code for hair"; the reference leaves it
out of its optimiser, §8.1 item 10). Two passes, each Adam on
the visibility-weighted loss of ``weighted_image_loss``,

    Σ_v λ_v [mean(w_v · |render_v - target_v|) + lpips_weight · LPIPS-VGG(render_v, target_v)]

(images in [-1, 1]; LPIPS-VGG from ``metrics.lpips``) over the views of ``Targets``: view 0 is
the photo's own camera (``λ = 1``), views 1.. the paper's multi-view targets
(``fitting.multiview``, ``λ = multiview_weight``), one of which is rendered per step:

1. face pass (the paper's bald-head fit): texture only, against ``Targets.face``: the photo's
   face (skin region, hair removed by segmentation), and its projections through the fitted
   mesh into the other views, Poisson-blended into the initial renders (``blend_face``), so the
   hair and background of the targets are the model's own;
2. hair pass: texture and ``w_hair`` against ``Targets.full``: in the photo's view the photo
   with its background replaced by the dataset's white; in the other views only the projected
   face counts (weight 0 elsewhere, the hair is free there).
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jaxtyping import Array, Float

from head360_jax.metrics import lpips as lpips_lib


@dataclasses.dataclass(frozen=True)
class AppearanceOptions:
  """Hyper-parameters of ``fit_appearance``.

  Attributes:
    face_steps: Adam steps of the face (bald) pass.
    hair_steps: Adam steps of the hair pass. With 120 + 80 instead of 60 + 40, man.jpg's pivot
      reached 14.8 dB face PSNR instead of 10.4, and the tuned fit 22.8 dB instead of 21.8
      (500 tuning steps, docs/fitting.md).
    texture_learning_rate: Adam step size of the texture, relative to the RMS of the starting
      texture (a trained model's neural textures have no fixed scale: RMS ~10 in
      ``configs/small.py`` runs, where an absolute 0.02 moved the texture by 2 % in 100 steps).
    style_learning_rate: Adam step size of ``w_hair``.
    warmup_steps: linear learning-rate warm-up at the start of each pass (Adam's first,
      unnormalised steps otherwise overshoot and the loss curve starts with a bump).
    lpips_weight: weight of the perceptual term.
    lpips_resolution: LPIPS runs on images area-resized to at most this side (VGG on 512²
      costs 4× that on 256²; LPIPS was calibrated on 64² patches).
    smoothing: EMA factor of the smoothed loss curve in the log.
    multiview_weight: weight of a re-projected view against the photo's own (1), ``Targets``;
      also pivotal tuning's. 0.25: face PSNR 22.77 -> 23.92 dB (man.jpg) and 21.07 -> 22.71 dB
      (000134.jpg) against 0.5, docs/fitting.md.
  """

  face_steps: int = 120
  hair_steps: int = 80
  texture_learning_rate: float = 0.02
  style_learning_rate: float = 0.01
  warmup_steps: int = 10
  lpips_weight: float = 1.0
  lpips_resolution: int = 256
  smoothing: float = 0.9
  multiview_weight: float = 0.25


@dataclasses.dataclass(frozen=True)
class AppearanceFit:
  """Result of ``fit_appearance``.

  Attributes:
    texture: (T, T, c) float32 fitted neural texture.
    w_hair: (w,) float32 fitted hair style.
    losses: (face_steps + hair_steps,) loss per step (before the step's update).
    smoothed: the losses' EMA, restarted at each pass.
    passes: (face_steps + hair_steps,) 0 for the face pass, 1 for the hair pass.
    seconds: (face_steps + hair_steps,) wall time of each step (the first includes compiling).
  """

  texture: np.ndarray
  w_hair: np.ndarray
  losses: np.ndarray
  smoothed: np.ndarray
  passes: np.ndarray
  seconds: np.ndarray


def smooth(losses: np.ndarray, factor: float) -> np.ndarray:
  """Bias-corrected exponential moving average of a loss curve."""
  out = np.empty(len(losses))
  average = 0.0
  for i, loss in enumerate(losses):
    average = factor * average + (1 - factor) * loss
    out[i] = average / (1 - factor ** (i + 1))
  return out


def _resize(images: Array, side: int) -> Array:
  if images.shape[1] <= side:
    return images
  return jax.image.resize(images, (images.shape[0], side, side, images.shape[-1]), 'linear', antialias=True)


def colour_gains(photo: np.ndarray, render: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per-channel gains that bring the render's mean colour over ``mask`` to the photo's.

  Args:
    photo, render: (R, R, 3) uint8 images in the same frame.
    mask: (R, R) bool region compared.

  Returns:
    (3,) float32 gains, clipped to [0.25, 4]; ones when the mask has fewer than 16 pixels.
  """
  mask = np.asarray(mask, bool)
  if mask.sum() < 16:
    return np.ones(3, np.float32)
  photo_mean = photo[mask].astype(np.float64).mean(0)
  render_mean = np.maximum(render[mask].astype(np.float64).mean(0), 1.0)
  return np.clip(photo_mean / render_mean, 0.25, 4.0).astype(np.float32)


def recolour_around(render: np.ndarray, mask: np.ndarray, gains: np.ndarray, margin: float = 0.08) -> np.ndarray:
  """The render with its colours scaled by ``gains`` over ``mask`` and a feathered band around it.

  Poisson blending (``blend_face``) keeps the colour of the render at the mask's border, so a
  start head whose skin is darker than the photo's would give a target face of the start head's
  tone; recolouring the render around the face first gives the target the photo's skin tone.

  Args:
    render: (R, R, 3) uint8.
    mask: (R, R) bool face region.
    gains: (3,) per-channel gains (``colour_gains``).
    margin: width of the band, as a fraction of R (the gain fades out across a second band).

  Returns:
    (R, R, 3) uint8.
  """
  side = render.shape[0]
  radius = max(1, int(round(margin * side)))
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
  grown = cv2.dilate(np.asarray(mask, np.uint8), kernel).astype(np.float32)
  weight = np.clip(cv2.GaussianBlur(grown, (0, 0), radius / 2), 0, 1)[..., None]
  scaled = render.astype(np.float32) * (1 + weight * (np.asarray(gains, np.float32) - 1))
  return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def blend_face(photo: np.ndarray, render: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Poisson-blends the photo's masked face into a render (OpenCV seamless cloning).

  Args:
    photo: (R, R, 3) uint8 aligned photo.
    render: (R, R, 3) uint8 render in the same frame.
    mask: (R, R) bool face region (kept 2 pixels off the border, as cloning requires).

  Returns:
    (R, R, 3) uint8: the render with the photo's face gradients inside ``mask``.
  """
  mask = np.asarray(mask, bool).copy()
  mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = False, False, False, False
  if mask.sum() < 16:
    return render.copy()
  rows, cols = np.nonzero(mask)
  # seamlessClone puts the mask's bounding-box centre at ``center``: keep the face in place.
  centre = (int((cols.min() + cols.max() + 1) // 2), int((rows.min() + rows.max() + 1) // 2))
  return cv2.seamlessClone(photo, render, (mask * 255).astype(np.uint8), centre, cv2.NORMAL_CLONE)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Targets:
  """What the appearance passes fit: view 0 is the photo's own view, views 1.. its re-projections (``multiview``).

  Attributes:
    labels: (V, 25) camera labels of the views.
    face: (V, R, R, 3) face-pass targets in [-1, 1].
    full: (V, R, R, 3) hair-pass targets in [-1, 1].
    face_weight: (V, R, R) per-pixel weights of the face pass, >= 0 (pixels with weight 0 are
      ignored by L1 and shown to LPIPS as the target's own).
    full_weight: (V, R, R) the same for the hair pass.
  """

  labels: Array
  face: Array
  full: Array
  face_weight: Array
  full_weight: Array

  @property
  def num_views(self) -> int:
    return self.labels.shape[0]


def single_view_targets(label: np.ndarray, target_face: np.ndarray, target_full: np.ndarray) -> Targets:
  """``Targets`` of the photo's view alone (label (25,), images (R, R, 3) in [-1, 1]), every pixel weight 1.

  Raises:
    ValueError: if the two targets differ in shape or are not (R, R, 3).
  """
  if np.shape(target_face) != np.shape(target_full) or np.ndim(target_face) != 3 or np.shape(target_face)[-1] != 3:
    shapes = f'{np.shape(target_face)}, {np.shape(target_full)}'
    raise ValueError(f'target_face and target_full must be (R, R, 3), got {shapes}')
  ones = np.ones((1, *np.shape(target_face)[:2]), np.float32)
  return Targets(
    labels=jnp.asarray(label, jnp.float32)[None],
    face=jnp.asarray(target_face, jnp.float32)[None],
    full=jnp.asarray(target_full, jnp.float32)[None],
    face_weight=jnp.asarray(ones),
    full_weight=jnp.asarray(ones),
  )


def lpips_target_features(
  lpips_params: lpips_lib.LpipsParams, targets: Float[Array, 'n R R 3'], lpips_resolution: int
) -> list[Array]:
  """The targets' LPIPS features as ``weighted_image_loss`` compares them.

  Args:
    targets: (n, R, R, 3) images in [-1, 1], area-resized to at most ``lpips_resolution`` first.

  Returns:
    ``lpips_lib.reference_features`` of the resized targets (5 arrays with leading n).
  """
  return lpips_lib.reference_features(lpips_params, _resize(targets, lpips_resolution))


def weighted_image_loss(
  lpips_params: lpips_lib.LpipsParams,
  images: Float[Array, 'n R R 3'],
  targets: Float[Array, 'n R R 3'],
  pixel_weights: Float[Array, 'n R R'],
  view_weights: Float[Array, ' n'],
  *,
  lpips_weight: float,
  lpips_resolution: int,
  target_features: list[Array] | None = None,
) -> Float[Array, '']:
  """``Σ_v λ_v [mean(w_v · |x_v - y_v|) + lpips_weight · LPIPS(x_v', y_v)] / Σ_v λ_v`` (images in [-1, 1]).

  ``w_v`` are the per-pixel weights (the L1 mean runs over all pixels, so a view whose face the
  photo barely saw weighs little), ``x_v'`` is the render with the target's pixels wherever
  ``w_v = 0`` (LPIPS only sees the weighted region) and ``λ_v`` the view weights.
  ``target_features``: ``lpips_lib.reference_features`` of the targets at ``lpips_resolution``,
  when the caller keeps them across steps (fixed targets); None computes them here.
  """
  l1 = jnp.mean(pixel_weights[..., None] * jnp.abs(images - targets), axis=(1, 2, 3))
  total = l1
  if lpips_weight:
    shown = jnp.where(pixel_weights[..., None] > 0, images, targets)
    if target_features is None:
      target_features = lpips_target_features(lpips_params, targets, lpips_resolution)
    total = total + lpips_weight * lpips_lib.lpips_to_features(
      lpips_params, _resize(shown, lpips_resolution), target_features
    )
  return jnp.sum(view_weights * total) / jnp.sum(view_weights)


def step_views(step: int, num_views: int) -> np.ndarray:
  """Views rendered at a step: the photo's view 0 and one re-projected view, cycling (just 0 for one view)."""
  return np.array([0]) if num_views == 1 else np.array([0, 1 + step % (num_views - 1)])


def _adam_step(optimizer: optax.GradientTransformation, loss_fn: Callable) -> Callable:
  @jax.jit  # LPIPS weights are an argument, not constants baked into the program (compile time)
  def step(params, opt_state, frozen, targets, views, hair_on, lpips_params):
    loss, grads = jax.value_and_grad(loss_fn)(params, frozen, targets, views, hair_on, lpips_params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    updates = {**updates, 'w_hair': hair_on * updates['w_hair']}
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def fit_appearance(
  render_fn: Callable[[Any, Array, Array, Array], Array],
  frozen: Any,
  texture: np.ndarray,
  w_hair: np.ndarray,
  targets: Targets,
  lpips_params: lpips_lib.LpipsParams,
  options: AppearanceOptions = AppearanceOptions(),
  *,
  progress: bool = True,
) -> AppearanceFit:
  """Optimises the neural texture and hair style of a frozen generator (module docstring).

  Each step renders the photo's view and, when ``targets`` has more views, one re-projected
  view (``step_views``), weighted ``1 : options.multiview_weight``.

  Args:
    render_fn: ``(frozen, texture (T, T, c), w_hair (w,), labels (n, 25)) -> images (n, R, R, 3)``
      in [-1, 1]: the frozen generator's renders of the fitted mesh (pure, jit-able).
    frozen: pytree of the fixed inputs of ``render_fn`` (generator weights, mesh), passed as a
      jit argument so large weights are not baked into the program.
    texture: (T, T, c) initial neural texture.
    w_hair: (w,) initial hair style.
    targets: ``Targets`` (``single_view_targets`` for the photo alone).
    lpips_params: ``lpips_lib.load_lpips()``.
    options: ``AppearanceOptions``.
    progress: show a progress bar.

  Returns:
    ``AppearanceFit``.

  Raises:
    ValueError: if the targets do not match the render's shape.
  """
  params = {'texture': jnp.asarray(texture, jnp.float32), 'w_hair': jnp.asarray(w_hair, jnp.float32)}
  shape = jax.eval_shape(render_fn, frozen, params['texture'], params['w_hair'], targets.labels[:1]).shape[1:]
  for name in ('face', 'full'):
    if getattr(targets, name).shape[1:] != shape:
      raise ValueError(f'{name} targets must have the render shape {shape}, got {getattr(targets, name).shape[1:]}')
  view_weights = np.where(np.arange(targets.num_views) == 0, 1.0, options.multiview_weight).astype(np.float32)

  def loss_fn(params, frozen, targets, views, hair_on, lpips_params):
    images = render_fn(frozen, params['texture'], params['w_hair'], targets.labels[views])
    goal = jnp.where(hair_on > 0, targets.full[views], targets.face[views])
    weight = jnp.where(hair_on > 0, targets.full_weight[views], targets.face_weight[views])
    return weighted_image_loss(
      lpips_params,
      images,
      goal,
      weight,
      jnp.asarray(view_weights)[views],
      lpips_weight=options.lpips_weight,
      lpips_resolution=options.lpips_resolution,
    )

  losses, passes, seconds = [], [], []
  bar = tqdm.tqdm(total=options.face_steps + options.hair_steps, desc='appearance fit', disable=not progress)
  warmup = lambda rate: optax.linear_schedule(0.0, rate, max(options.warmup_steps, 1))
  texture_scale = float(np.sqrt(np.mean(np.square(texture)))) or 1.0
  optimizer = optax.multi_transform(
    {
      'texture': optax.adam(warmup(options.texture_learning_rate * texture_scale)),
      'w_hair': optax.adam(warmup(options.style_learning_rate)),
    },
    {'texture': 'texture', 'w_hair': 'w_hair'},
  )
  step = _adam_step(optimizer, loss_fn)  # one program for both passes: the hair pass only flips hair_on
  for index, steps in ((0, options.face_steps), (1, options.hair_steps)):
    opt_state = optimizer.init(params)
    for i in range(steps):
      tic = time.perf_counter()
      views = jnp.asarray(step_views(i, targets.num_views))
      params, opt_state, loss = step(params, opt_state, frozen, targets, views, jnp.float32(index), lpips_params)
      losses.append(float(loss))
      seconds.append(time.perf_counter() - tic)
      passes.append(index)
      bar.update(1)
      bar.set_postfix(loss=f'{losses[-1]:.4f}', refresh=False)
  bar.close()
  losses, passes = np.asarray(losses, np.float32), np.asarray(passes, np.int32)
  smoothed = np.concatenate([smooth(losses[passes == p], options.smoothing) for p in (0, 1)]).astype(np.float32)
  return AppearanceFit(
    texture=np.asarray(params['texture']),
    w_hair=np.asarray(params['w_hair']),
    losses=losses,
    smoothed=smoothed,
    passes=passes,
    seconds=np.asarray(seconds, np.float32),
  )
