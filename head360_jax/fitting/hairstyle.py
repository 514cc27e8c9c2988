"""Hairstyle classifier of the photo fit (paper §3.4): a hair mask in the frontal crop -> a dataset hairstyle.

Legend: ``n`` masks, ``H W`` mask rows/columns (any size), ``s`` = ``HAIR_FEATURE_SIDE``,
``d`` = s² features, ``k`` hairstyle classes.

The paper fits a photo with "the predicted hairstyle from a classifier trained on the
dataset's hairstyles" (reference-spec §6: the classifier is not in the released code). Ours
is a multinomial logistic regression on the hair mask of the photo's canonical crop (the
framing of the dataset's frontal camera, ``camera.FRONTAL_VIEW``), area-resized to s × s
cells, each cell the fraction of its pixels that are hair:

    p(class | mask) = softmax(features(mask) @ weights + bias)

Training masks come from the dataset itself (``data.build_dataset`` renders every view with
and without hair): a pixel is hair where the haired and bald renders differ by more than
``HAIR_DIFFERENCE_THRESHOLD``. The renderer has no shadows and is deterministic, so the two
renders agree exactly wherever no hair touches a pixel, and the difference of a pixel is its
hair coverage times the contrast of the hair with what it covers (skin or background). The
threshold is low because that contrast can be low: on runs/demo/anny_small (views 6 and 30),
red strands over dark skin, with per-strand brightness jitter, differ by < 0.09 on 10 % of
the fully covered pixels that change and by < 0.06 on 5 %; at 0.05, 96-99 % of the changed
pixels count as hair (at 0.2, only 55-95 %), while an edge pixel needs ~10 % hair coverage
(at a contrast of 0.5) to count.

Views default to the nine near-frontal cameras (yaw 0, ±15° at pitches -20°, 0°, 20°), so the
classifier tolerates a crop whose head pose is only roughly frontal; masks are also mirrored
(a parting on the other side is the same style). Known gap: ``landmarks.hair_mask`` misses
hair below the chin, which the dataset masks include (long hair on the shoulders).
"""

import dataclasses
import functools
import json
import pathlib

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from head360_jax.data import layout

HAIR_FEATURE_SIDE = 16
HAIR_DIFFERENCE_THRESHOLD = 0.05  # max |premultiplied RGBA difference| in [0, 1] (module doc)
# Pitch index * 24 + yaw index, yaw = (index - 6) * 15°: yaw -15°, 0°, 15° at pitch 0°, -20°, 20°.
NEAR_FRONTAL_VIEWS = (29, 30, 31, 5, 6, 7, 53, 54, 55)


@dataclasses.dataclass(frozen=True, eq=False)
class HairstyleClassifier:
  """A trained classifier.

  Attributes:
    weights: (d, k) float32, d = ``HAIR_FEATURE_SIDE``².
    bias: (k,) float32.
    classes: the k hairstyle names (``data.hair.STYLES`` members), sorted.
    identities_by_class: for each class, the training identities that have it.
  """

  weights: np.ndarray
  bias: np.ndarray
  classes: tuple[str, ...]
  identities_by_class: tuple[tuple[str, ...], ...]


def _read_rgba(path: pathlib.Path) -> np.ndarray:
  if not path.is_file():
    raise FileNotFoundError(f'image {path} not found')
  with Image.open(path) as image:
    rgba = np.asarray(image.convert('RGBA'), np.float32) / 255
  return np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)  # premultiplied


def hair_from_renders(haired: np.ndarray, bald: np.ndarray) -> np.ndarray:
  """Hair pixels of a view from its renders with and without hair.

  Args:
    haired: (..., H, W, 4) premultiplied RGBA in [0, 1].
    bald: the same shape, the same camera without hair.

  Returns:
    (..., H, W) bool: max over channels of |haired - bald| > ``HAIR_DIFFERENCE_THRESHOLD``.

  Raises:
    ValueError: if the shapes differ or the last axis is not 4.
  """
  if haired.shape != bald.shape or haired.shape[-1] != 4:
    raise ValueError(f'need two (..., H, W, 4) renders of one shape, got {haired.shape} and {bald.shape}')
  return np.abs(haired - bald).max(axis=-1) > HAIR_DIFFERENCE_THRESHOLD


def dataset_hair_masks(
  root: str | pathlib.Path,
  *,
  views: tuple[int, ...] = NEAR_FRONTAL_VIEWS,
  expressions: list[str] | tuple[str, ...] | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
  """Hair masks of a built dataset (``data.build_dataset``): one per identity, expression and view.

  Args:
    root: dataset folder with ``build.json`` and ``images/split_<r>`` and ``split_<r>_bald``.
    views: camera indices in [0, 72) (``camera.dataset_cameras`` order).
    expressions: expression folders; ``None`` = all of ``build.json``.

  Returns:
    ``(masks, hairstyles, identities)``: (n, r, r) bool masks (``hair_from_renders``) and,
    per mask, its identity's hairstyle and identity name; identity-major, then expression,
    then view in the given order.

  Raises:
    FileNotFoundError: naming ``build.json``, the bald image folder or an image if missing.
    ValueError: for a view outside [0, 72), an expression not in the dataset, no views or no
      expressions, or a ``build.json`` without ``resolution``/``expressions``/``per_identity``.
  """
  root = pathlib.Path(root)
  build_json = root / 'build.json'
  if not build_json.is_file():
    raise FileNotFoundError(f'{build_json} not found: not a dataset written by data.build_dataset')
  try:
    build = json.loads(build_json.read_text())
    resolution, built = int(build['resolution']), list(build['expressions'])
    per_identity = [(str(row['identity']), str(row['hairstyle'])) for row in build['per_identity']]
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{build_json}: missing resolution, expressions or per_identity ({e!r})') from None
  expressions = built if expressions is None else list(expressions)
  if unknown := sorted(set(expressions) - set(built)):
    raise ValueError(f'expressions {unknown} are not in {build_json} ({built})')
  if not views or not expressions or any(not 0 <= v < layout.NUM_VIEWS for v in views):
    raise ValueError(f'need views in [0, {layout.NUM_VIEWS}) and expressions, got {views}, {expressions}')
  images = root / layout.IMAGES
  for bald in (False, True):
    if not (images / layout.split_name(resolution, bald)).is_dir():
      what = 'bald renders (needed to find the hair)' if bald else 'renders'
      raise FileNotFoundError(f'{images / layout.split_name(resolution, bald)} not found: no {what}')
  masks, hairstyles, identities = [], [], []
  for identity, style in per_identity:
    for expression in expressions:
      for view in views:
        renders = [
          _read_rgba(images / layout.image_relpath(resolution, identity, expression, view, bald))
          for bald in (False, True)
        ]
        masks.append(hair_from_renders(*renders))
        hairstyles.append(style)
        identities.append(identity)
  return np.stack(masks), hairstyles, identities


def hair_features(masks: np.ndarray) -> np.ndarray:
  """Hair fraction per cell of an s × s grid: (n, H, W) bool or float in [0, 1] -> (n, d) float32.

  Area resize (``cv2.INTER_AREA``), so any mask side works and cell values stay in [0, 1].

  Raises:
    ValueError: if ``masks`` is not 3-D or is empty.
  """
  masks = np.asarray(masks)
  if masks.ndim != 3 or 0 in masks.shape:
    raise ValueError(f'masks must be a non-empty (n, H, W) array, got shape {masks.shape}')
  side = HAIR_FEATURE_SIDE
  resized = [cv2.resize(m.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA) for m in masks]
  return np.stack(resized).reshape(len(masks), side * side)


def log_probabilities(weights: jax.Array, bias: jax.Array, features: jax.Array) -> jax.Array:
  """(d, k), (k,), (n, d) -> (n, k) class log-probabilities (log-softmax of the logits)."""
  return jax.nn.log_softmax(features @ weights + bias, axis=-1)


@functools.partial(jax.jit, static_argnames=('steps',))
def _fit(features, targets, sample_weights, l2, learning_rate, key, *, steps):
  """Full-batch Adam on the weighted cross-entropy + l2 · |weights|²; returns params and the loss per step."""
  params = {
    'weights': 0.01 * jax.random.normal(key, (features.shape[1], targets.shape[1])),
    'bias': jnp.zeros(targets.shape[1]),
  }
  optimizer = optax.adam(learning_rate)

  def loss_fn(params):
    log_p = log_probabilities(params['weights'], params['bias'], features)
    return -jnp.sum(sample_weights * jnp.sum(targets * log_p, axis=-1)) + l2 * jnp.sum(params['weights'] ** 2)

  def step(carry, _):
    params, state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = optimizer.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), loss

  (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
  return params, losses


def fit_classifier(
  masks: np.ndarray,
  hairstyles: list[str],
  identities: list[str],
  *,
  steps: int = 300,
  learning_rate: float = 0.05,
  l2: float = 1e-3,
  mirror: bool = True,
  seed: int = 0,
) -> HairstyleClassifier:
  """Trains the classifier on labelled hair masks (``dataset_hair_masks``' outputs).

  Each class weighs the same in the loss (mean over classes of the mean cross-entropy of
  its masks), so styles shared by more identities do not dominate the prior. With
  ``mirror``, every mask is also used flipped left-right. With one class the classifier
  predicts it with probability 1.

  Args:
    masks: (n, H, W) bool or float in [0, 1].
    hairstyles, identities: per mask.
    steps: full-batch Adam steps (one jitted ``lax.scan``).
    learning_rate: Adam step size.
    l2: weight of |weights|² (the bias is not penalised).
    mirror: add the left-right flipped masks.
    seed: seeds the (small random) initial weights.

  Raises:
    ValueError: if the lengths differ, ``steps < 1`` or the masks are not (n, H, W).
  """
  masks = np.asarray(masks)
  if not len(masks) == len(hairstyles) == len(identities) or steps < 1:
    raise ValueError(
      f'need one hairstyle and identity per mask and steps >= 1, got {len(masks)} masks, '
      f'{len(hairstyles)} hairstyles, {len(identities)} identities, {steps} steps'
    )
  features = hair_features(masks)
  classes = tuple(sorted(set(hairstyles)))
  labels = np.array([classes.index(h) for h in hairstyles])
  if mirror:
    features = np.concatenate([features, hair_features(masks[:, :, ::-1])])
    labels = np.concatenate([labels, labels])
  counts = np.bincount(labels, minlength=len(classes))
  sample_weights = 1 / (len(classes) * counts[labels])
  params, _ = _fit(
    jnp.asarray(features),
    jax.nn.one_hot(labels, len(classes)),
    jnp.asarray(sample_weights, jnp.float32),
    l2,
    learning_rate,
    jax.random.key(seed),
    steps=steps,
  )
  identities_by_class = tuple(
    tuple(sorted({i for i, h in zip(identities, hairstyles, strict=True) if h == c})) for c in classes
  )
  return HairstyleClassifier(
    np.asarray(params['weights'], np.float32), np.asarray(params['bias'], np.float32), classes, identities_by_class
  )


def train_classifier(
  root: str | pathlib.Path,
  *,
  views: tuple[int, ...] = NEAR_FRONTAL_VIEWS,
  expressions: list[str] | tuple[str, ...] | None = None,
  steps: int = 300,
  learning_rate: float = 0.05,
  l2: float = 1e-3,
  mirror: bool = True,
  seed: int = 0,
) -> HairstyleClassifier:
  """``fit_classifier`` on ``dataset_hair_masks(root, views=..., expressions=...)``; raises as both do."""
  masks, hairstyles, identities = dataset_hair_masks(root, views=views, expressions=expressions)
  return fit_classifier(
    masks, hairstyles, identities, steps=steps, learning_rate=learning_rate, l2=l2, mirror=mirror, seed=seed
  )


def predict_batch(classifier: HairstyleClassifier, masks: np.ndarray) -> np.ndarray:
  """(n, H, W) masks -> (n, k) float32 class probabilities (order of ``classifier.classes``)."""
  log_p = log_probabilities(jnp.asarray(classifier.weights), jnp.asarray(classifier.bias), hair_features(masks))
  return np.exp(np.asarray(log_p, np.float64)).astype(np.float32)


def predict(classifier: HairstyleClassifier, mask: np.ndarray) -> tuple[str, np.ndarray]:
  """The hairstyle of one hair mask of the canonical frontal crop.

  Args:
    classifier: from ``train_classifier``/``load_classifier``.
    mask: (H, W) bool (or float hair fraction in [0, 1]), any side; e.g. ``landmarks.hair_mask``
      of the aligned crop.

  Returns:
    The most probable class name and the (k,) float32 probabilities, summing to 1.

  Raises:
    ValueError: if ``mask`` is not 2-D.
  """
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f'mask must be a 2-D (H, W) array, got shape {mask.shape}')
  probabilities = predict_batch(classifier, mask[None])[0]
  return classifier.classes[int(np.argmax(probabilities))], probabilities


def save_classifier(classifier: HairstyleClassifier, path: str | pathlib.Path) -> None:
  """Writes ``classifier`` as a plain ``.npz`` (arrays and strings only, no pickles)."""
  owners = [(i, c) for c, ids in enumerate(classifier.identities_by_class) for i in ids]
  np.savez(
    path,
    weights=classifier.weights,
    bias=classifier.bias,
    classes=np.array(classifier.classes, dtype=np.str_),
    identities=np.array([i for i, _ in owners], dtype=np.str_),
    identity_class=np.array([c for _, c in owners], dtype=np.int64),
  )


def load_classifier(path: str | pathlib.Path) -> HairstyleClassifier:
  """Reads a ``save_classifier`` file.

  Raises:
    FileNotFoundError: if ``path`` is missing.
    ValueError: if the arrays do not fit together or ``HAIR_FEATURE_SIDE``.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'classifier file {path} not found')
  with np.load(path, allow_pickle=False) as data:
    weights, bias = data['weights'].astype(np.float32), data['bias'].astype(np.float32)
    classes = tuple(str(c) for c in data['classes'])
    identities, identity_class = [str(i) for i in data['identities']], data['identity_class']
  k = len(classes)
  if weights.shape != (HAIR_FEATURE_SIDE**2, k) or bias.shape != (k,) or len(identities) != len(identity_class):
    raise ValueError(
      f'{path}: weights {weights.shape}, bias {bias.shape} do not fit {k} classes and {HAIR_FEATURE_SIDE}² features'
    )
  by_class = tuple(tuple(i for i, c in zip(identities, identity_class, strict=True) if c == j) for j in range(k))
  return HairstyleClassifier(weights, bias, classes, by_class)
