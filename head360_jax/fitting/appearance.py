"""Appearance fit: neural texture and hair style against an aligned photo (paper §3.4).

Legend: ``R`` output resolution of the generator, ``T`` texture side, ``c`` texture
channels, ``w`` style size.

With the shape code, expression and camera fixed (``fitting.shape``), the frozen generator
renders the frontal view from two free variables: the neural texture (T, T, c) itself (the
reference's fitting loop optimises the texture tensor, reference-spec §6) and the hair
branch's style ``w_hair`` (w,) (the paper's "latent code for hair"; the reference leaves it
out of its optimiser, §8.1 item 10). Two passes, each Adam on

    L1(render, target) + lpips_weight · LPIPS-VGG(render, target)

(images in [-1, 1]; LPIPS-VGG from ``metrics.lpips``):

1. face pass (the paper's bald-head fit): texture only, against ``target_face``: the photo's
   face (skin region, hair removed by segmentation) Poisson-blended into the initial render
   (``blend_face``), so the hair and background of the target are the model's own;
2. hair pass: texture and ``w_hair`` against ``target_full``: the photo with its background
   replaced by the dataset's white.
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
    hair_steps: Adam steps of the hair pass.
    texture_learning_rate: Adam step size of the texture (values are O(1)).
    style_learning_rate: Adam step size of ``w_hair``.
    warmup_steps: linear learning-rate warm-up at the start of each pass (Adam's first,
      unnormalised steps otherwise overshoot and the loss curve starts with a bump).
    lpips_weight: weight of the perceptual term.
    lpips_resolution: LPIPS runs on images area-resized to at most this side (VGG on 512²
      costs 4× that on 256²; LPIPS was calibrated on 64² patches).
    smoothing: EMA factor of the smoothed loss curve in the log.
  """

  face_steps: int = 150
  hair_steps: int = 150
  texture_learning_rate: float = 0.02
  style_learning_rate: float = 0.01
  warmup_steps: int = 10
  lpips_weight: float = 1.0
  lpips_resolution: int = 256
  smoothing: float = 0.9


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


def image_loss(
  lpips_params: lpips_lib.LpipsParams,
  image: Float[Array, 'b R R 3'],
  target: Float[Array, 'b R R 3'],
  *,
  lpips_weight: float,
  lpips_resolution: int,
) -> Float[Array, '']:
  """Mean ``L1 + lpips_weight · LPIPS`` between images in [-1, 1]."""
  l1 = jnp.mean(jnp.abs(image - target))
  if not lpips_weight:
    return l1
  lp = lpips_lib.lpips(lpips_params, _resize(image, lpips_resolution), _resize(target, lpips_resolution))
  return l1 + lpips_weight * jnp.mean(lp)


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


def _adam_step(optimizer: optax.GradientTransformation, loss_fn: Callable) -> Callable:
  @jax.jit
  def step(params, opt_state, frozen, target, hair_on):
    loss, grads = jax.value_and_grad(loss_fn)(params, frozen, target)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    updates = {**updates, 'w_hair': hair_on * updates['w_hair']}
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def fit_appearance(
  render_fn: Callable[[Any, Array, Array], Array],
  frozen: Any,
  texture: np.ndarray,
  w_hair: np.ndarray,
  target_face: np.ndarray,
  target_full: np.ndarray,
  lpips_params: lpips_lib.LpipsParams,
  options: AppearanceOptions = AppearanceOptions(),
  *,
  progress: bool = True,
) -> AppearanceFit:
  """Optimises the neural texture and hair style of a frozen generator (module docstring).

  Args:
    render_fn: ``(frozen, texture (T, T, c), w_hair (w,)) -> image (R, R, 3)`` in [-1, 1]: the
      frozen generator's frontal render (pure, jit-able).
    frozen: pytree of the fixed inputs of ``render_fn`` (generator weights, mesh, camera),
      passed as a jit argument so large weights are not baked into the program.
    texture: (T, T, c) initial neural texture.
    w_hair: (w,) initial hair style.
    target_face: (R, R, 3) target of the face pass in [-1, 1].
    target_full: (R, R, 3) target of the hair pass in [-1, 1].
    lpips_params: ``lpips_lib.load_lpips()``.
    options: ``AppearanceOptions``.
    progress: show a progress bar.

  Returns:
    ``AppearanceFit``.

  Raises:
    ValueError: if the targets do not match the render's shape.
  """
  params = {'texture': jnp.asarray(texture, jnp.float32), 'w_hair': jnp.asarray(w_hair, jnp.float32)}
  shape = jax.eval_shape(render_fn, frozen, params['texture'], params['w_hair']).shape
  for name, target in (('target_face', target_face), ('target_full', target_full)):
    if np.shape(target) != shape:
      raise ValueError(f'{name} must have the render shape {shape}, got {np.shape(target)}')

  def loss_fn(params, frozen, target):
    image = render_fn(frozen, params['texture'], params['w_hair'])[None]
    return image_loss(
      lpips_params,
      image,
      target[None],
      lpips_weight=options.lpips_weight,
      lpips_resolution=options.lpips_resolution,
    )

  losses, passes, seconds = [], [], []
  schedule = (
    (0, options.face_steps, jnp.asarray(target_face, jnp.float32), False),
    (1, options.hair_steps, jnp.asarray(target_full, jnp.float32), True),
  )
  bar = tqdm.tqdm(total=options.face_steps + options.hair_steps, desc='appearance fit', disable=not progress)
  warmup = lambda rate: optax.linear_schedule(0.0, rate, max(options.warmup_steps, 1))
  optimizer = optax.multi_transform(
    {
      'texture': optax.adam(warmup(options.texture_learning_rate)),
      'w_hair': optax.adam(warmup(options.style_learning_rate)),
    },
    {'texture': 'texture', 'w_hair': 'w_hair'},
  )
  step = _adam_step(optimizer, loss_fn)  # one program for both passes: the hair pass only flips hair_on
  for index, steps, target, fit_hair in schedule:
    opt_state = optimizer.init(params)
    for _ in range(steps):
      tic = time.perf_counter()
      params, opt_state, loss = step(params, opt_state, frozen, target, jnp.float32(fit_hair))
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
