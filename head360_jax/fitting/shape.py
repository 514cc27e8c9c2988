"""Shape fit: shape code ``s``, head pose and ARKit weights ``b`` from 2D landmarks (paper §3.4).

Legend: ``r`` shape rank, ``k`` = 52 ARKit weights, ``l`` landmarks (MediaPipe's 468),
``v`` mesh vertices, ``S`` side of the canonical crop in pixels.

The paper obtains "a relatively faithful shape code s by minimising the projection error of
facial landmarks" (reference-spec §6: absent from the released code). Here the landmark
points of the mesh are fixed barycentric combinations of its vertices
(``fitting.correspondence``), so under the bilinear model (Eq. 1) they are themselves
bilinear in ``(s, b)``: ``landmark_model`` restricts the Tucker core to them once, and a fit
step costs O(r · 53 · l) instead of O(r · 53 · v).

Model of the crop (the canonical frame of the dataset's frontal camera, ``camera.FRONTAL_VIEW``):

    x_px = scale · project(R · world(s, b)) + translation

with ``R`` a head rotation about the world origin (axis-angle), and a 2D similarity
(``scale``, ``translation`` in pixels) that absorbs the residual misalignment of the crop;
``fitting.align`` folds that similarity back into the crop and ``R`` into the camera label, so
the final crop is rendered by ``(s, b)`` under ``rotated_label(R)``.

Objective (all terms dimensionless):

    sum_i w_i · rho(|x_i - y_i| / iod) / sum_i w_i  +  prior_weight · |z|^2 / r
    + expression_weight · sum(b)

where ``iod`` is the detected inter-ocular distance, ``rho`` the pseudo-Huber function with
knee ``huber_delta`` (outliers cost linearly, not quadratically), ``s = mean + L z`` with
``L L^T`` the prior covariance (so ``|z|^2`` is the squared Mahalanobis distance of the
shape prior), and ``b = sigmoid(beta)`` in (0, 1) (the L1 term keeps unexplained weights
near 0). The problem is small and smooth but badly conditioned (under a near-orthographic
camera, rotation about the origin trades off against translation and face depth), so it is
solved with L-BFGS and a zoom line search (optax), which also makes the loss decrease
monotonically.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from head360_jax.geometry import arkit, bilinear, camera


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LandmarkModel:
  """The bilinear model restricted to the landmark points (a pytree).

  Attributes:
    core: (r, 53, l, 3) float32 Tucker core of the landmark points, mesh units.
    prior_mean: (r,) float32 shape-prior mean.
    prior_chol: (r, r) float32 lower Cholesky factor of the shape-prior covariance.
  """

  core: np.ndarray
  prior_mean: np.ndarray
  prior_chol: np.ndarray

  @property
  def rank(self) -> int:
    return self.core.shape[0]

  @property
  def num_landmarks(self) -> int:
    return self.core.shape[2]


def landmark_model(model: bilinear.BilinearModel, faces: np.ndarray, barycentrics: np.ndarray) -> LandmarkModel:
  """Restricts ``model`` to surface points given as triangles + barycentric coordinates.

  Args:
    model: the bilinear model (paper Eq. 1).
    faces: (l,) triangle indices into ``model.faces``.
    barycentrics: (l, 3) barycentric coordinates (rows sum to 1).

  Returns:
    ``LandmarkModel`` whose ``core`` gives exactly the barycentric points of
    ``bilinear.vertices(model, s, b)`` (the model is linear in the vertices).

  Raises:
    ValueError: for shapes that do not match or out-of-range triangles.
  """
  faces = np.asarray(faces)
  barycentrics = np.asarray(barycentrics, np.float64)
  if faces.ndim != 1 or barycentrics.shape != (len(faces), 3):
    raise ValueError(f'faces (l,) and barycentrics (l, 3) expected, got {faces.shape} and {barycentrics.shape}')
  if faces.size and (faces.min() < 0 or faces.max() >= len(model.faces)):
    raise ValueError(f'triangle indices must be in [0, {len(model.faces)})')
  corners = np.asarray(model.faces)[faces]  # (l, 3)
  core = np.asarray(model.core, np.float64)[:, :, corners]  # (r, 53, l, 3 corners, 3 xyz)
  core = np.einsum('relcx,lc->relx', core, barycentrics)
  chol = np.linalg.cholesky(np.asarray(model.prior_cov, np.float64))
  return LandmarkModel(
    core=core.astype(np.float32),
    prior_mean=np.asarray(model.prior_mean, np.float32),
    prior_chol=chol.astype(np.float32),
  )


def landmark_positions(
  model: LandmarkModel, s: Float[Array, '... r'], b: Float[Array, '... k']
) -> Float[Array, '... l 3']:
  """Landmark points (mesh units) of shape code ``s`` and ARKit weights ``b`` (Eq. 1)."""
  weights = jnp.concatenate([jnp.ones_like(b[..., :1]), b], axis=-1)
  return jnp.einsum('...e,...r,relx->...lx', weights, s, model.core)


def rotation_matrix(axis_angle: Float[Array, '... 3']) -> Float[Array, '... 3 3']:
  """Rodrigues' formula, smooth at zero (the first-order series is used below 1e-4 rad)."""
  theta2 = jnp.sum(axis_angle**2, axis=-1)[..., None, None]
  small = theta2 < 1e-8
  theta2_safe = jnp.where(small, 1.0, theta2)
  theta = jnp.sqrt(theta2_safe)
  a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
  b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / theta2_safe)
  x, y, z = axis_angle[..., 0], axis_angle[..., 1], axis_angle[..., 2]
  zero = jnp.zeros_like(x)
  k = jnp.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*axis_angle.shape[:-1], 3, 3)
  eye = jnp.eye(3, dtype=axis_angle.dtype)
  return eye + a * k + b * (k @ k)


def rotated_label(label: Float[Array, '25'], rotation: Float[Array, '3 3']) -> Float[Array, '25']:
  """Camera label that sees the unrotated head as ``label`` sees the head rotated by ``rotation``.

  A head rotated about the world origin, ``X' = R X``, seen from ``cam2world`` looks like the
  unrotated head seen from ``R^T · cam2world`` (docs/conventions.md).
  """
  cam2world, intrinsics = camera.unpack_label(jnp.asarray(label, jnp.float32))
  rigid = jnp.eye(4, dtype=jnp.float32).at[:3, :3].set(jnp.asarray(rotation, jnp.float32).T)
  return camera.pack_label(rigid @ cam2world, intrinsics)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Pose:
  """Head pose in the canonical crop: rotation about the world origin + a 2D similarity.

  Attributes:
    axis_angle: (3,) head rotation, radians (axis-angle, world frame).
    log_scale: () log of the 2D scale about the crop centre.
    translation: (2,) 2D translation in crop pixels (col, row).
  """

  axis_angle: Array
  log_scale: Array
  translation: Array


def identity_pose() -> Pose:
  """No rotation, unit scale, no shift."""
  return Pose(jnp.zeros(3, jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros(2, jnp.float32))


def project_points(
  points: Float[Array, 'l 3'], pose: Pose, label: Float[Array, '25'], size: int
) -> Float[Array, 'l 3']:
  """Crop pixels of mesh-unit ``points`` under ``pose`` and camera ``label``.

  Returns:
    (l, 3): column and row in the ``size``² crop, and the depth relative to the world origin
    in the same pixel scale (pixels per world unit at the origin's depth; larger = farther),
    the convention of MediaPipe's ``z`` up to its unknown offset.
  """
  world = camera.WORLD_PER_MESH * points @ rotation_matrix(pose.axis_angle).T
  cam2world, intrinsics = camera.unpack_label(label)
  pixels, depth = camera.project(world[None], cam2world[None], intrinsics[None], size)
  origin_depth = -(cam2world[:3, 3] @ cam2world[:3, 2])
  scale = jnp.exp(pose.log_scale)
  centre = size / 2.0
  xy = scale * (pixels[0] - centre) + centre + pose.translation
  z = scale * (depth[0] - origin_depth) * intrinsics[0, 0] * size / origin_depth
  return jnp.concatenate([xy, z[:, None]], axis=-1)


@dataclasses.dataclass(frozen=True)
class ShapeFitOptions:
  """Hyper-parameters of ``fit_shape`` (defaults chosen on the synthetic and photo tests).

  Attributes:
    pose_steps: L-BFGS iterations on the pose alone (shape at the prior mean).
    steps: L-BFGS iterations on pose, shape and (if ``fit_expression``) expression.
    prior_weight: weight of the squared Mahalanobis distance of ``s`` per shape dimension.
    expression_weight: L1 weight on ``b``.
    huber_delta: knee of the robust loss, as a fraction of the inter-ocular distance.
    depth_weight: weight of the depth term (targets with a third, MediaPipe-z column): the
      centred depths, compared like the 2D positions. Near-orthographic 2D landmarks leave
      head rotation and the depth of the face ambiguous; the detector's relative depth
      resolves most of it.
    fit_expression: also fit the 52 ARKit weights.
    fit_scale: also fit the 2D scale of the crop. Off by default: the crop already
      normalises the face size (``fitting.align``), and a free scale trades off against the
      size directions of the shape code (from one photo only their ratio is observable).
  """

  pose_steps: int = 30
  steps: int = 300
  prior_weight: float = 1e-4
  expression_weight: float = 1e-5
  huber_delta: float = 0.02
  depth_weight: float = 0.3
  fit_expression: bool = True
  fit_scale: bool = False


@dataclasses.dataclass(frozen=True)
class ShapeFit:
  """Result of ``fit_shape`` (numpy arrays).

  Attributes:
    s: (r,) shape code.
    b: (52,) ARKit weights in [0, 1].
    pose: the fitted ``Pose`` (numpy leaves).
    projected: (l, 3) reprojected landmarks in crop pixels (col, row, relative depth).
    rms_px: RMS distance between the target and reprojected landmarks (weight > 0), pixels.
    rms_iod: ``rms_px`` / inter-ocular distance.
    losses: (pose_steps + steps,) objective per L-BFGS iteration.
  """

  s: np.ndarray
  b: np.ndarray
  pose: Pose
  projected: np.ndarray
  rms_px: float
  rms_iod: float
  losses: np.ndarray


def _robust(distance, delta):
  return delta**2 * (jnp.sqrt(1.0 + (distance / delta) ** 2) - 1.0)


_B_LOGIT_INIT = -4.0  # b = sigmoid(-4) = 0.018 at the start: small but with a usable gradient


def _unpack(model: LandmarkModel, params: dict) -> tuple[Array, Array, Pose]:
  s = model.prior_mean + model.prior_chol @ params['z']
  b = jax.nn.sigmoid(params['b_logit'])
  return s, b, Pose(params['axis_angle'], params['log_scale'], params['translation'])


def _objective(params, model, target, weights, label, size, iod, options: dict):
  """The fit's loss; ``options`` holds ``ShapeFitOptions``' loss weights as (traced) scalars."""
  s, b, pose = _unpack(model, params)
  projected = project_points(landmark_positions(model, s, b), pose, label, size)
  norm = jnp.sum(weights)
  distance = jnp.sqrt(jnp.sum((projected[:, :2] - target[:, :2]) ** 2, axis=-1) + 1e-12) / iod
  data = jnp.sum(weights * _robust(distance, options['huber_delta'])) / norm
  if target.shape[-1] == 3:
    centred = lambda z: z - jnp.sum(weights * z) / norm
    depth = jnp.abs(centred(projected[:, 2]) - centred(target[:, 2])) / iod
    data = data + options['depth_weight'] * jnp.sum(weights * _robust(depth, options['huber_delta'])) / norm
  prior = options['prior_weight'] * jnp.sum(params['z'] ** 2) / model.rank
  expression = options['expression_weight'] * jnp.sum(b)
  return data + prior + expression


_LOSS_WEIGHTS = ('huber_delta', 'depth_weight', 'prior_weight', 'expression_weight')


@functools.partial(jax.jit, static_argnames=('size', 'steps', 'trainable'))
def _run(params, model, target, weights, label, iod, options, *, size, steps, trainable):
  """``steps`` L-BFGS iterations (zoom line search) over the ``trainable`` entries of ``params``.

  ``options``: the loss weights as arguments, so fits that differ only in them share one program.
  """
  fixed = {k: v for k, v in params.items() if k not in trainable}
  loss_fn = lambda train: _objective({**fixed, **train}, model, target, weights, label, size, iod, options)
  optimizer = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def step(carry, _):
    train, opt_state = carry
    loss, grads = value_and_grad(train, state=opt_state)
    updates, opt_state = optimizer.update(grads, opt_state, train, value=loss, grad=grads, value_fn=loss_fn)
    return (optax.apply_updates(train, updates), opt_state), loss

  train = {k: params[k] for k in trainable}
  (train, _), losses = jax.lax.scan(step, (train, optimizer.init(train)), None, length=steps)
  return {**fixed, **train}, losses


def fit_shape(
  model: LandmarkModel,
  target: np.ndarray,
  weights: np.ndarray,
  *,
  label: np.ndarray,
  size: int,
  iod: float,
  options: ShapeFitOptions = ShapeFitOptions(),
) -> ShapeFit:
  """Fits ``s``, the head pose and (optionally) ``b`` to detected 2D landmarks.

  Args:
    model: ``landmark_model`` of the bilinear model and the rig's correspondence table.
    target: (l, 2) detected landmarks in crop pixels (col, row), or (l, 3) with the detector's
      relative depth in the same pixel scale (smaller = closer, any offset).
    weights: (l,) non-negative per-landmark weights (0 = unused, e.g. invalid correspondences).
    label: (25,) camera label of the crop (the dataset's frontal camera).
    size: crop side in pixels.
    iod: inter-ocular distance of the detection in crop pixels (> 0).
    options: ``ShapeFitOptions``.

  Returns:
    ``ShapeFit``.

  Raises:
    ValueError: for mismatched shapes, non-finite targets, no positive weight or ``iod <= 0``.
  """
  target = np.asarray(target, np.float32)
  weights = np.asarray(weights, np.float32)
  if target.shape not in ((model.num_landmarks, 2), (model.num_landmarks, 3)) or weights.shape != (
    model.num_landmarks,
  ):
    raise ValueError(
      f'target ({model.num_landmarks}, 2|3) and weights ({model.num_landmarks},) expected, '
      f'got {target.shape} and {weights.shape}'
    )
  if not np.all(np.isfinite(target)) or not np.any(weights > 0) or np.any(weights < 0):
    raise ValueError('targets must be finite and weights non-negative with at least one positive')
  if not iod > 0:
    raise ValueError(f'inter-ocular distance must be positive, got {iod}')
  pose = identity_pose()
  params = {
    'z': jnp.zeros(model.rank, jnp.float32),
    'b_logit': jnp.full(arkit.NUM_BLENDSHAPES, -30.0 if not options.fit_expression else _B_LOGIT_INIT, jnp.float32),
    'axis_angle': pose.axis_angle,
    'translation': pose.translation,
    'log_scale': pose.log_scale,
  }
  label = jnp.asarray(label, jnp.float32)
  loss_weights = {name: jnp.float32(getattr(options, name)) for name in _LOSS_WEIGHTS}
  args = (model, jnp.asarray(target), jnp.asarray(weights), label, jnp.float32(iod), loss_weights)
  static = dict(size=size)
  rigid = ('axis_angle', 'translation') + (('log_scale',) if options.fit_scale else ())
  everything = rigid + ('z',) + (('b_logit',) if options.fit_expression else ())
  params, losses_pose = _run(params, *args, **static, steps=options.pose_steps, trainable=rigid)
  params, losses = _run(params, *args, **static, steps=options.steps, trainable=everything)
  s, b, pose = _unpack(model, params)
  projected = project_points(landmark_positions(model, s, b), pose, label, size)
  used = weights > 0
  rms = float(np.sqrt(np.mean(np.sum((np.asarray(projected)[:, :2] - target[:, :2]) ** 2, axis=-1)[used])))
  return ShapeFit(
    s=np.asarray(s),
    b=np.asarray(b),
    pose=jax.tree.map(np.asarray, pose),
    projected=np.asarray(projected),
    rms_px=rms,
    rms_iod=rms / float(iod),
    losses=np.concatenate([np.asarray(losses_pose), np.asarray(losses)]),
  )
