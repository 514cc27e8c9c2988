"""Pivotal tuning of the generator around a fitted head (PTI, Roich et al. 2022), and tuned-weight I/O.

Legend: ``R`` output resolution, ``T`` texture side, ``c`` texture channels, ``w`` style size,
``V`` target views, ``n`` views rendered per step, ``m`` locality samples.

After the appearance passes (``fitting.appearance``) the fitted neural texture and hair style
are the *pivot*. Pivotal tuning keeps the pivot fixed and fine-tunes some of the generator's
weights (``TuningOptions.parts``: the decoder, super-resolution, static (hair) planes and the
StyleUNets by default; the texture synthesis and mappings are not on the fitted head's path)
so that the pivot's renders reach the targets: Adam (learning rate 2e-2; PTI's 3e-4 barely
moved our small networks in 100 steps) on ``L1 + LPIPS`` against the targets (the hair pass's
``Targets.full`` and weights, the photo's view plus one re-projected view per step,
``appearance.step_views``), plus PTI's locality regulariser: heads near the pivot must keep
their renders,

    0.1 · MSE(G_tuned(x_r), G(x_r)) + 0.1 · LPIPS(G_tuned(x_r), G(x_r)),

one ``x_r`` per step from a bank of ``m`` samples made before tuning: the pivot's texture and
hair style moved ``locality_fraction`` of the way towards those of a random head
(``HeadRenderer.random_head``), rendered on the fitted mesh from a random camera (yaw within
±``locality_yaw_deg``). PTI moves ``w`` a fixed distance (α = 30) towards a random ``w``, most of
the way between two StyleGAN2 faces; our raw neural textures have no such common scale, so
we move a fraction of the way instead.

The tuned weights are stored with the fitted head as plain arrays keyed by their path in the
generator's parameter tree (``flatten_parts`` / ``apply_tuned``), so ``render.py --fitted``
renders with them.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from head360_jax.fitting import appearance, multiview
from head360_jax.metrics import lpips as lpips_lib

TUNABLE_PARTS = ('decoder', 'superres', 'static_synthesis', 'blending_unet', 'mouth_unet')


@dataclasses.dataclass(frozen=True)
class TuningOptions:
  """Hyper-parameters of ``tune``.

  Attributes:
    steps: Adam steps (0 turns tuning off). PTI uses 350 at 1024². Here, at step size 2e-2,
      man.jpg's face PSNR was 21.54 dB after 400 steps, 21.83 after 500 and 21.84 after 650; the
      whole fit with 500 takes about 7.5 min on 2 cores (docs/fitting.md).
    learning_rate: Adam step size (PTI: 3e-4; our small decoder and SR need more: man.jpg's face PSNR
      after 400 steps was 19.97 dB at 1e-2, 21.54 at 2e-2 and 20.04 at 4e-2, docs/fitting.md).
    parts: top-level generator modules to tune (members of ``TUNABLE_PARTS``; absent ones are
      skipped, e.g. the StyleUNets of a model built without them).
    lpips_weight: weight of LPIPS-VGG beside L1 against the targets (PTI: 1).
    locality_weight: weight of the locality regulariser's MSE and of its LPIPS (PTI: 0.1 each).
    locality_lpips: include the LPIPS half of the locality regulariser (PTI: yes).
    locality_samples: ``m``, locality samples made before tuning (one used per step, cycling).
    locality_fraction: how far towards a random head a locality sample moves, in [0, 1].
    locality_yaw_deg, locality_pitch_deg: range of the locality samples' random cameras.
    warmup_steps: linear learning-rate warm-up.
    decay: after the warm-up, ``'none'`` keeps ``learning_rate``; ``'cosine'`` anneals it to
      ``final_fraction × learning_rate`` at the last step.
    final_fraction: the cosine decay's end value as a fraction of ``learning_rate``, in [0, 1].
    seed: random heads and cameras of the locality samples.
  """

  steps: int = 500
  learning_rate: float = 2e-2
  parts: tuple[str, ...] = TUNABLE_PARTS
  lpips_weight: float = 1.0
  locality_weight: float = 0.1
  locality_lpips: bool = True
  locality_samples: int = 8
  locality_fraction: float = 0.5
  locality_yaw_deg: float = 60.0
  locality_pitch_deg: float = 15.0
  warmup_steps: int = 10
  decay: str = 'none'
  final_fraction: float = 0.0
  seed: int = 0


def learning_rate_schedule(options: TuningOptions) -> optax.Schedule:
  """Tuning's step size per step: linear warm-up from 0, then constant or cosine (``options.decay``).

  Raises:
    ValueError: for an unknown ``decay`` or a ``final_fraction`` outside [0, 1].
  """
  warmup = max(options.warmup_steps, 1)
  if options.decay == 'none':
    return optax.linear_schedule(0.0, options.learning_rate, warmup)
  if options.decay != 'cosine':
    raise ValueError(f"tuning decay must be 'none' or 'cosine', got {options.decay!r}")
  if not 0.0 <= options.final_fraction <= 1.0:
    raise ValueError(f'final_fraction must lie in [0, 1], got {options.final_fraction}')
  return optax.warmup_cosine_decay_schedule(
    0.0,
    options.learning_rate,
    warmup,
    max(options.steps, warmup + 1),
    end_value=options.final_fraction * options.learning_rate,
  )


@dataclasses.dataclass(frozen=True)
class LocalitySamples:
  """Heads near the pivot and their renders by the untuned generator (m samples).

  Attributes:
    texture: (m, T, T, c); w_hair: (m, w); labels: (m, 25); images: (m, R, R, 3) in [-1, 1].
  """

  texture: np.ndarray
  w_hair: np.ndarray
  labels: np.ndarray
  images: np.ndarray


@dataclasses.dataclass(frozen=True)
class TuningResult:
  """Result of ``tune``.

  Attributes:
    tuned: the tuned weights, ``{path: array}`` (``flatten_parts``).
    losses: (steps,) total loss per step (before the update); data_losses: its target term;
    locality_losses: its regulariser term (unweighted MSE + LPIPS).
    seconds: (steps,) wall time per step (the first includes compiling).
  """

  tuned: dict[str, np.ndarray]
  losses: np.ndarray
  data_losses: np.ndarray
  locality_losses: np.ndarray
  seconds: np.ndarray


def _leaf_paths(params: Any) -> tuple[list[str], list[Any], Any]:
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  return [jax.tree_util.keystr(path) for path, _ in leaves], [leaf for _, leaf in leaves], treedef


def _part_of(path: str) -> str:
  return path.split("'")[1] if path.startswith("['") else ''


def flatten_parts(params: Any, parts: tuple[str, ...]) -> dict[str, Any]:
  """``{path: array}`` of the leaves of a generator's parameter tree under the top-level modules ``parts``.

  Raises:
    ValueError: if a part is not in ``TUNABLE_PARTS``.
  """
  unknown = sorted(set(parts) - set(TUNABLE_PARTS))
  if unknown:
    raise ValueError(f'cannot tune {unknown}: choose among {TUNABLE_PARTS}')
  paths, leaves, _ = _leaf_paths(params)
  return {path: leaf for path, leaf in zip(paths, leaves, strict=True) if _part_of(path) in parts}


def apply_tuned(params: Any, tuned: dict[str, Any]) -> Any:
  """The parameter tree with the leaves named in ``tuned`` replaced (the same tree structure).

  Raises:
    ValueError: if ``tuned`` names a path the tree lacks or has an array of another shape
      (weights tuned on another run).
  """
  paths, leaves, treedef = _leaf_paths(params)
  index = {path: i for i, path in enumerate(paths)}
  missing = [path for path in tuned if path not in index]
  if missing:
    raise ValueError(f'tuned weights {missing[:3]}... are not in this generator: fitted with another run?')
  leaves = list(leaves)
  for path, value in tuned.items():
    old = leaves[index[path]]
    if np.shape(value) != np.shape(old):
      raise ValueError(f'tuned weight {path} has shape {np.shape(value)}, the generator {np.shape(old)}')
    leaves[index[path]] = jnp.asarray(value, old.dtype)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def locality_samples(
  render_fn: Callable,
  frozen: Any,
  texture: np.ndarray,
  w_hair: np.ndarray,
  random_heads: Callable[[int], tuple[np.ndarray, np.ndarray]],
  options: TuningOptions,
) -> LocalitySamples:
  """Makes the locality bank (module docstring) with the untuned generator.

  Args:
    render_fn, frozen: as in ``tune``.
    texture: (T, T, c) pivot texture; w_hair: (w,) pivot hair style.
    random_heads: ``seed -> (texture (T, T, c), w_hair (w,))`` of a random head.
    options: ``TuningOptions``.
  """
  rng = np.random.default_rng(options.seed)
  textures, styles, labels, images = [], [], [], []
  for i in range(options.locality_samples):
    t_r, w_r = random_heads(options.seed * 1000 + i)
    textures.append(texture + options.locality_fraction * (t_r - texture))
    styles.append(w_hair + options.locality_fraction * (w_r - w_hair))
    yaw = rng.uniform(-options.locality_yaw_deg, options.locality_yaw_deg)
    pitch = rng.uniform(-options.locality_pitch_deg, options.locality_pitch_deg)
    labels.append(multiview.view_labels((yaw,), (pitch,))[0])
  render = jax.jit(render_fn)
  for t_r, w_r, label in zip(textures, styles, labels, strict=True):
    images.append(np.asarray(render(frozen, jnp.asarray(t_r), jnp.asarray(w_r), jnp.asarray(label)[None]))[0])
  return LocalitySamples(
    np.stack(textures).astype(np.float32),
    np.stack(styles).astype(np.float32),
    np.stack(labels).astype(np.float32),
    np.stack(images).astype(np.float32),
  )


def tune(
  render_fn: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array],
  frozen: dict,
  texture: np.ndarray,
  w_hair: np.ndarray,
  targets: appearance.Targets,
  locality: LocalitySamples | None,
  lpips_params: lpips_lib.LpipsParams,
  options: TuningOptions = TuningOptions(),
  *,
  multiview_weight: float = 0.5,
  lpips_resolution: int = 256,
  progress: bool = True,
) -> TuningResult:
  """Fine-tunes ``options.parts`` of the generator with the pivot fixed (module docstring).

  Args:
    render_fn: ``(frozen, texture, w_hair, labels (n, 25)) -> (n, R, R, 3)`` in [-1, 1], as for
      ``appearance.fit_appearance``; it must read the generator's weights from ``frozen['params']``.
    frozen: its fixed inputs, with the generator's parameter tree at ``'params'``.
    texture: (T, T, c) pivot texture; w_hair: (w,) pivot hair style.
    targets: ``appearance.Targets`` (the hair pass's ``full`` images and weights are used).
    locality: ``locality_samples(...)``, or None for no locality regulariser.
    lpips_params: ``lpips_lib.load_lpips()``.
    options: ``TuningOptions``.
    multiview_weight: weight of a re-projected view against the photo's (``AppearanceOptions``).
    lpips_resolution: side LPIPS runs at.
    progress: show a progress bar.

  Returns:
    ``TuningResult`` (``tuned`` empty when ``options.steps`` is 0).

  Raises:
    ValueError: for unknown parts, or parts that select no weights.
  """
  trainable = flatten_parts(frozen['params'], options.parts)
  if options.steps and not trainable:
    raise ValueError(f'parts {options.parts} select no weights of this generator')
  if not options.steps:
    empty = np.zeros(0, np.float32)
    return TuningResult({}, empty, empty, empty, empty)
  view_weights = np.where(np.arange(targets.num_views) == 0, 1.0, multiview_weight).astype(np.float32)
  pivot = (jnp.asarray(texture, jnp.float32), jnp.asarray(w_hair, jnp.float32))

  # The targets and the locality images are fixed: their LPIPS features are computed once, not per step.
  target_features = locality_features = None
  if options.lpips_weight:
    target_features = jax.jit(appearance.lpips_target_features, static_argnums=2)(
      lpips_params, targets.full, lpips_resolution
    )
  if locality is not None and options.locality_lpips:
    locality_features = jax.jit(lpips_lib.reference_features)(lpips_params, jnp.asarray(locality.images))

  def loss_fn(weights, frozen, pivot, targets, views, sample, lpips_params, target_features):
    frozen = {**frozen, 'params': apply_tuned(frozen['params'], weights)}
    images = render_fn(frozen, *pivot, targets.labels[views])
    data = appearance.weighted_image_loss(
      lpips_params,
      images,
      targets.full[views],
      targets.full_weight[views],
      jnp.asarray(view_weights)[views],
      lpips_weight=options.lpips_weight,
      lpips_resolution=lpips_resolution,
      target_features=None if target_features is None else [f[views] for f in target_features],
    )
    if sample is None:
      return data, (data, jnp.float32(0))
    image = render_fn(frozen, sample['texture'], sample['w_hair'], sample['label'][None])
    goal = sample['image'][None]
    local = jnp.mean((image - goal) ** 2)
    if options.locality_lpips:
      local = local + jnp.mean(lpips_lib.lpips_to_features(lpips_params, image, sample['features']))
    return data + options.locality_weight * local, (data, local)

  schedule = learning_rate_schedule(options)
  optimizer = optax.adam(schedule)

  @jax.jit  # the pivot and LPIPS weights are arguments, not constants baked into the program
  def step(weights, opt_state, frozen, pivot, targets, views, sample, lpips_params, target_features):
    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      weights, frozen, pivot, targets, views, sample, lpips_params, target_features
    )
    updates, opt_state = optimizer.update(grads, opt_state, weights)
    return optax.apply_updates(weights, updates), opt_state, loss, parts

  weights = {k: jnp.asarray(v) for k, v in trainable.items()}
  opt_state = optimizer.init(weights)
  losses, data_losses, local_losses, seconds = [], [], [], []
  bar = tqdm.tqdm(total=options.steps, desc='pivotal tuning', disable=not progress)
  for i in range(options.steps):
    tic = time.perf_counter()
    views = jnp.asarray(appearance.step_views(i, targets.num_views))
    sample = None
    if locality is not None:
      j = i % len(locality.labels)
      sample = {
        'texture': jnp.asarray(locality.texture[j]),
        'w_hair': jnp.asarray(locality.w_hair[j]),
        'label': jnp.asarray(locality.labels[j]),
        'image': jnp.asarray(locality.images[j]),
      }
      if locality_features is not None:
        sample['features'] = [f[j : j + 1] for f in locality_features]
    weights, opt_state, loss, (data, local) = step(
      weights, opt_state, frozen, pivot, targets, views, sample, lpips_params, target_features
    )
    losses.append(float(loss))
    data_losses.append(float(data))
    local_losses.append(float(local))
    seconds.append(time.perf_counter() - tic)
    bar.update(1)
    bar.set_postfix(loss=f'{losses[-1]:.4f}', refresh=False)
  bar.close()
  return TuningResult(
    tuned={k: np.asarray(v) for k, v in weights.items()},
    losses=np.asarray(losses, np.float32),
    data_losses=np.asarray(data_losses, np.float32),
    locality_losses=np.asarray(local_losses, np.float32),
    seconds=np.asarray(seconds, np.float32),
  )
