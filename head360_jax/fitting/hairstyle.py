"""Hairstyle classifier of the photo fit (paper §3.4): a hair mask in the frontal crop -> a hairstyle.

Legend: ``n`` masks, ``H W`` mask rows/columns (any size), ``s`` = ``HAIR_FEATURE_SIDE``,
``d`` = s² features, ``k`` hairstyle classes.

The paper fits a photo with "the predicted hairstyle from a classifier trained on the
dataset's hairstyles" (reference-spec §6: the classifier is not in the released code). Ours
is a multinomial logistic regression on the hair mask of the photo's canonical crop (the
framing of the dataset's frontal camera, ``camera.FRONTAL_VIEW``), area-resized to s × s
cells, each cell the fraction of its pixels that are hair:

    p(class | mask) = softmax(features(mask) @ weights + bias)

Training masks come from renders of the dataset builder (``data.build_dataset`` renders every
view with and without hair): a pixel is hair where the haired and bald renders differ by more than
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

Two training sets (``train_classifier(root, source=...)``):

* ``'rendered'`` (the fit's default): ``rendered_hair_masks`` builds, with the dataset builder
  itself (``build_dataset.build(..., views=NEAR_FRONTAL_VIEWS)``), ``identities_per_style``
  random identities (shape, appearance, hair strands) for every style of ``hair.STYLES``, in a
  few expressions, at a small resolution, and caches their masks under ``assets.cache_dir()``.
  A run's own dataset has as few styles as identities (the demo: 4 identities, 4 styles), and
  a classifier that only knows those calls any photo one of them (a short-haired man
  "ponytail", p 0.97). The run still supplies the starting identity: ``identities_by_class``
  lists the *run's* identities per class, empty for styles the run lacks, and
  ``training_identity`` falls back to the most probable style the run has
  (``nearest_training_style``).
* ``'dataset'``: the run's own renders (``dataset_hair_masks``), as before.

``cross_validate`` measures the classifier on identities it has not seen (a confusion matrix);
``bench/hairstyle_report.py`` prints it and the answers on photos (docs/fitting.md).
"""

import dataclasses
import functools
import hashlib
import io
import json
import pathlib
import shutil
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from head360_jax import assets
from head360_jax.data import build_dataset, hair, layout

HAIR_FEATURE_SIDE = 16
HAIR_DIFFERENCE_THRESHOLD = 0.05  # max |premultiplied RGBA difference| in [0, 1] (module doc)
# Pitch index * 24 + yaw index, yaw = (index - 6) * 15°: yaw -15°, 0°, 15° at pitch 0°, -20°, 20°.
NEAR_FRONTAL_VIEWS = (29, 30, 31, 5, 6, 7, 53, 54, 55)

# The rendered training set (``rendered_hair_masks``): every style of ``hair.STYLES`` on this many
# random identities, in these expressions, at this resolution (16 × 16 features need little).
# Read at call time where an argument is None, so a test may patch them to a tiny set.
TRAINING_IDENTITIES_PER_STYLE = 6
TRAINING_EXPRESSIONS = ('jawOpen', 'neutral')
TRAINING_RESOLUTION = 64
# Part of the cache key of the rendered set: bump it when the builder's renders change.
RENDERED_SET_VERSION = 1
SOURCES = ('rendered', 'dataset')  # train_classifier's training sets (module doc)


@dataclasses.dataclass(frozen=True, eq=False)
class HairstyleClassifier:
  """A trained classifier.

  Attributes:
    weights: (d, k) float32, d = ``HAIR_FEATURE_SIDE``².
    bias: (k,) float32.
    classes: the k hairstyle names (``data.hair.STYLES`` members), sorted.
    identities_by_class: for each class, the training identities that have it, sorted: the
      run's identities with ``train_classifier`` (for ``source='rendered'``, empty for a style
      the run's dataset lacks), the given identities with ``fit_classifier``.
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


@dataclasses.dataclass(frozen=True)
class _Build:
  rig: str
  resolution: int
  expressions: list[str]
  per_identity: list[tuple[str, str]]  # (identity, hairstyle)


def _read_build(root: pathlib.Path) -> _Build:
  """The fields of a dataset's ``build.json`` the classifier needs; raises as ``dataset_hair_masks``."""
  build_json = root / 'build.json'
  if not build_json.is_file():
    raise FileNotFoundError(f'{build_json} not found: not a dataset written by data.build_dataset')
  try:
    build = json.loads(build_json.read_text())
    return _Build(
      str(build.get('rig', 'anny')),
      int(build['resolution']),
      list(build['expressions']),
      [(str(row['identity']), str(row['hairstyle'])) for row in build['per_identity']],
    )
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{build_json}: missing resolution, expressions or per_identity ({e!r})') from None


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
  build = _read_build(root)
  build_json, resolution, built = root / 'build.json', build.resolution, build.expressions
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
  for identity, style in build.per_identity:
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


def _rendered_arguments(identities_per_style, expressions, resolution) -> tuple[int, list[str], int]:
  """Fills ``None`` with ``TRAINING_*``; expressions validated and sorted (``build_dataset.parse_expressions``)."""
  identities_per_style = TRAINING_IDENTITIES_PER_STYLE if identities_per_style is None else int(identities_per_style)
  expressions = build_dataset.parse_expressions(list(TRAINING_EXPRESSIONS if expressions is None else expressions))
  return identities_per_style, expressions, TRAINING_RESOLUTION if resolution is None else int(resolution)


def rendered_set_dir(
  *,
  rig: str = 'anny',
  identities_per_style: int | None = None,
  expressions: list[str] | tuple[str, ...] | None = None,
  resolution: int | None = None,
  seed: int = 0,
  views: tuple[int, ...] = NEAR_FRONTAL_VIEWS,
) -> pathlib.Path:
  """Cache folder of one rendered training set: ``assets.cache_dir()/hairstyle_masks/<readable key>-<hash>``.

  Arguments as ``rendered_hair_masks``; the hash covers them, ``hair.STYLES`` and ``RENDERED_SET_VERSION``.
  """
  identities_per_style, expressions, resolution = _rendered_arguments(identities_per_style, expressions, resolution)
  arguments = {
    'rig': rig,
    'identities_per_style': int(identities_per_style),
    'expressions': expressions,
    'resolution': int(resolution),
    'seed': int(seed),
    'views': [int(v) for v in views],
    'styles': list(hair.STYLES),
    'version': RENDERED_SET_VERSION,
  }
  digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:12]
  name = f'{rig}-{identities_per_style}x{len(hair.STYLES)}-{len(expressions)}expr-r{resolution}-s{seed}-{digest}'
  return assets.cache_dir() / 'hairstyle_masks' / name


def rendered_hair_masks(
  *,
  rig: str = 'anny',
  identities_per_style: int | None = None,
  expressions: list[str] | tuple[str, ...] | None = None,
  resolution: int | None = None,
  seed: int = 0,
  views: tuple[int, ...] = NEAR_FRONTAL_VIEWS,
  progress: bool = False,
  log=None,
) -> tuple[np.ndarray, list[str], list[str]]:
  """Hair masks of every style in ``hair.STYLES``, rendered by the dataset builder; cached.

  ``build_dataset.build`` makes ``identities_per_style · len(hair.STYLES)`` identities with
  ``seed`` (it deals the styles round-robin from a seed-shuffled ``hair.STYLES``, so every
  style gets exactly ``identities_per_style`` identities, each with its own shape draw from the
  rig, skin, eyes, hair colour and strands), rendering only ``views`` with and without hair:
  the very renders a dataset of that seed and size would hold for those views. The masks
  stay in ``rendered_set_dir(...)/masks.npz`` (~0.1 MB); the builder's folder (renders,
  meshes and a ~150 MB ``bilinear.npz``) is deleted once they are written. A later call with
  the same arguments only loads ``masks.npz`` (~0.03 s); a killed build resumes (the builder
  skips finished images). The defaults (54 identities, 2 expressions, 9 views, 64²: 1944 images)
  took 120-134 s on 2 CPU cores shared with other jobs (docs/fitting.md).

  Args:
    rig: rig name (``geometry.rig.load_rig``), normally the run's (its ``build.json`` ``rig``).
    identities_per_style: identities per style, >= 1 (``None``: ``TRAINING_IDENTITIES_PER_STYLE``).
    expressions: expression folders, ARKit names or ``neutral`` (``None``: ``TRAINING_EXPRESSIONS``).
    resolution: render side in pixels, >= 8 (``None``: ``TRAINING_RESOLUTION``).
    seed: the builder's seed (identities, appearance, hair, style order).
    views: camera indices in [0, 72).
    progress: show the builder's progress bar.
    log: optional ``log(str)`` told when rendering starts and how long it took.

  Returns:
    ``(masks, hairstyles, identities)`` as ``dataset_hair_masks``: (n, r, r) bool, n =
    identities_per_style · len(hair.STYLES) · len(expressions) · len(views), identity-major.

  Raises:
    ValueError: for ``identities_per_style < 1`` and as ``build_dataset.build``.
  """
  identities_per_style, names, resolution = _rendered_arguments(identities_per_style, expressions, resolution)
  if identities_per_style < 1:
    raise ValueError(f'identities_per_style must be >= 1, got {identities_per_style}')
  folder = rendered_set_dir(
    rig=rig, identities_per_style=identities_per_style, expressions=names, resolution=resolution, seed=seed, views=views
  )
  cached = folder / 'masks.npz'
  if cached.is_file():
    with np.load(cached, allow_pickle=False) as data:
      return data['masks'], [str(h) for h in data['hairstyles']], [str(i) for i in data['identities']]
  start = time.perf_counter()
  if log:
    log(f'hairstyle: rendering the classifier training set into {folder} (once; ~2 min on 2 cores)')
  build_dataset.build(
    folder / 'renders',
    rig=rig,
    num_identities=identities_per_style * len(hair.STYLES),
    expressions=names,
    resolution=resolution,
    seed=seed,
    views=views,
    progress=progress,
  )
  masks, hairstyles, identities = dataset_hair_masks(folder / 'renders', views=views)
  buffer = io.BytesIO()
  np.savez_compressed(
    buffer,
    masks=masks,
    hairstyles=np.array(hairstyles, np.str_),
    identities=np.array(identities, np.str_),
    seconds=np.float64(time.perf_counter() - start),
  )
  assets.atomic_write_bytes(cached, buffer.getvalue())
  shutil.rmtree(folder / 'renders', ignore_errors=True)
  if log:
    log(f'hairstyle: {len(masks)} training masks in {time.perf_counter() - start:.0f} s')
  return masks, hairstyles, identities


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
  source: str = 'rendered',
  views: tuple[int, ...] = NEAR_FRONTAL_VIEWS,
  expressions: list[str] | tuple[str, ...] | None = None,
  identities_per_style: int | None = None,
  resolution: int | None = None,
  render_seed: int = 0,
  steps: int = 300,
  learning_rate: float = 0.05,
  l2: float = 1e-3,
  mirror: bool = True,
  seed: int = 0,
  log=None,
) -> HairstyleClassifier:
  """The classifier of a run whose dataset is ``root``: ``fit_classifier`` on one of two training sets.

  Args:
    root: the run's dataset (``data.build_dataset`` output); its ``build.json`` gives the rig
      and the identities the fit can start from.
    source: ``'rendered'`` (default): ``rendered_hair_masks`` of every style in
      ``hair.STYLES`` for the run's rig (rendered once, then cached), and
      ``identities_by_class`` = the run's identities per class (empty where the run lacks the
      style; ``training_identity`` falls back); ``'dataset'``: the run's own renders
      (``dataset_hair_masks``), so only the run's styles are classes.
    views: camera indices of the masks, both sources.
    expressions: ``'dataset'``: expression folders of ``root`` (``None`` = all);
      ``'rendered'``: the rendered expressions (``None`` = ``TRAINING_EXPRESSIONS``).
    identities_per_style, resolution, render_seed: ``'rendered'`` only, as
      ``rendered_hair_masks``' ``identities_per_style``, ``resolution``, ``seed`` (``None``: ``TRAINING_*``).
    steps, learning_rate, l2, mirror, seed: as ``fit_classifier``.
    log: ``'rendered'``: told when the set is rendered (not when it is cached).

  Raises:
    ValueError: for an unknown ``source``, and as ``dataset_hair_masks``,
      ``rendered_hair_masks`` and ``fit_classifier``.
    FileNotFoundError: as ``dataset_hair_masks`` (both sources need ``build.json``).
  """
  if source not in SOURCES:
    raise ValueError(f'source must be one of {SOURCES}, got {source!r}')
  options = {'steps': steps, 'learning_rate': learning_rate, 'l2': l2, 'mirror': mirror, 'seed': seed}
  if source == 'dataset':
    masks, hairstyles, identities = dataset_hair_masks(root, views=views, expressions=expressions)
    return fit_classifier(masks, hairstyles, identities, **options)
  build = _read_build(pathlib.Path(root))
  masks, hairstyles, identities = rendered_hair_masks(
    rig=build.rig,
    identities_per_style=identities_per_style,
    expressions=expressions,
    resolution=resolution,
    seed=render_seed,
    views=views,
    log=log,
  )
  classifier = fit_classifier(masks, hairstyles, identities, **options)
  run_identities = tuple(tuple(sorted(i for i, h in build.per_identity if h == c)) for c in classifier.classes)
  return dataclasses.replace(classifier, identities_by_class=run_identities)


@dataclasses.dataclass(frozen=True)
class HeldOutEvaluation:
  """``cross_validate``'s result.

  Attributes:
    classes: the k class names, sorted (rows and columns of ``confusion``).
    confusion: (k, k) int64 mask counts, rows the true class, columns the predicted one.
    accuracy: trace / total, in [0, 1].
    folds: how many classifiers were trained.
  """

  classes: tuple[str, ...]
  confusion: np.ndarray
  accuracy: float
  folds: int

  def format(self) -> str:
    """The matrix as aligned text, with each row's recall and the accuracy."""
    width = max(8, *(len(c) + 1 for c in self.classes))
    lines = ['true \\ predicted'.ljust(width) + ''.join(c.rjust(width) for c in self.classes) + '  recall']
    for name, row in zip(self.classes, self.confusion, strict=True):
      recall = row[self.classes.index(name)] / max(1, row.sum())
      lines.append(name.ljust(width) + ''.join(str(v).rjust(width) for v in row) + f'  {recall:6.1%}')
    total = int(self.confusion.sum())
    lines.append(
      f'accuracy {self.accuracy:.1%} ({int(np.trace(self.confusion))}/{total}), chance {1 / len(self.classes):.1%}'
    )
    return '\n'.join(lines)


def cross_validate(
  masks: np.ndarray,
  hairstyles: list[str],
  identities: list[str],
  *,
  folds: int = 4,
  **fit_options,
) -> HeldOutEvaluation:
  """Held-out confusion matrix: every mask is classified by a classifier that never saw its identity.

  Within each class, the identities (sorted) are dealt round-robin to ``folds`` folds; fold
  ``f``'s masks are predicted by ``fit_classifier`` trained on all the other folds (all
  classes), and the counts of the folds are summed. An identity's masks (all its views and
  expressions, whose hair is the same strands) are therefore never split between training
  and test.

  Args:
    masks, hairstyles, identities: as ``fit_classifier`` (e.g. ``rendered_hair_masks``).
    folds: >= 2, and every class needs at least ``folds`` identities.
    fit_options: passed to ``fit_classifier`` (``steps``, ``l2``, ...).

  Raises:
    ValueError: if the lengths differ, ``folds < 2`` or a class has fewer identities than folds.
  """
  masks = np.asarray(masks)
  if not len(masks) == len(hairstyles) == len(identities):
    raise ValueError(
      f'need one hairstyle and identity per mask, got {len(masks)}, {len(hairstyles)}, {len(identities)}'
    )
  classes = tuple(sorted(set(hairstyles)))
  fold_of = {}
  for c in classes:
    members = sorted({i for i, h in zip(identities, hairstyles, strict=True) if h == c})
    if folds < 2 or len(members) < folds:
      raise ValueError(f'need folds >= 2 and >= folds identities per class, got {folds} folds, {c!r}: {members}')
    fold_of.update({(c, i): j % folds for j, i in enumerate(members)})
  fold = np.array([fold_of[h, i] for h, i in zip(hairstyles, identities, strict=True)])
  truth = np.array([classes.index(h) for h in hairstyles])
  confusion = np.zeros((len(classes), len(classes)), np.int64)
  for f in range(folds):
    train = np.flatnonzero(fold != f)
    classifier = fit_classifier(
      masks[train], [hairstyles[i] for i in train], [identities[i] for i in train], **fit_options
    )
    test = np.flatnonzero(fold == f)
    predicted = predict_batch(classifier, masks[test]).argmax(axis=1)
    np.add.at(confusion, (truth[test], predicted), 1)
  return HeldOutEvaluation(classes, confusion, float(np.trace(confusion) / confusion.sum()), folds)


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


def nearest_training_style(
  predicted_style: str,
  probabilities: np.ndarray,
  available_styles,
  classes: tuple[str, ...],
) -> str:
  """The style the fit starts from: the predicted one if the run has it, else the run's most probable one.

  The rendered classifier knows every style of ``hair.STYLES`` but the fit can only start
  from an identity of the run's dataset, which may lack the predicted style (the demo has 4
  of 9). The fallback is the available style with the highest probability under the same
  prediction (ties: the first in ``classes``), i.e. the run's style that the photo's hair
  mask looks most like.

  Args:
    predicted_style: ``predict``'s style (a member of ``classes``).
    probabilities: (k,) ``predict``'s probabilities, in the order of ``classes``.
    available_styles: styles the run has (any iterable; names outside ``classes`` are ignored).
    classes: the classifier's k classes.

  Raises:
    ValueError: if the lengths differ, ``predicted_style`` is not a class or no available
      style is a class.
  """
  probabilities = np.asarray(probabilities)
  available = set(available_styles)
  if probabilities.shape != (len(classes),) or predicted_style not in classes:
    raise ValueError(
      f'need (k,) probabilities and a style of {classes}, got {probabilities.shape}, {predicted_style!r}'
    )
  if predicted_style in available:
    return predicted_style
  candidates = [j for j, c in enumerate(classes) if c in available]
  if not candidates:
    raise ValueError(f'none of the available styles {sorted(available)} is a class of {classes}')
  return classes[max(candidates, key=lambda j: (probabilities[j], -j))]


def training_identity(classifier: HairstyleClassifier, probabilities: np.ndarray) -> str:
  """The run's identity the fit starts from, for ``predict``'s probabilities.

  The first identity (sorted) of ``nearest_training_style`` among the classes that have run
  identities in ``classifier.identities_by_class``.

  Raises:
    ValueError: if no class has an identity, or as ``nearest_training_style``.
  """
  probabilities = np.asarray(probabilities)
  if probabilities.shape != (len(classifier.classes),):
    raise ValueError(f'need ({len(classifier.classes)},) probabilities, got shape {probabilities.shape}')
  available = [c for c, ids in zip(classifier.classes, classifier.identities_by_class, strict=True) if ids]
  predicted = classifier.classes[int(np.argmax(probabilities))]
  style = nearest_training_style(predicted, probabilities, available, classifier.classes)
  return classifier.identities_by_class[classifier.classes.index(style)][0]


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
