"""Bilinear (Tucker) identity x expression mesh model, paper Eq. 1.

Legend: ``n`` build identities, ``r`` shape-code rank, ``e`` = 53 expression slots
(slot 0 = neutral mesh, slots 1..52 = ARKit blendshape deltas), ``k`` = 52 ARKit
weights, ``v`` vertices, ``b`` batch (any leading dims).

Paper Eq. 1: ``V(s, b) = C x_2 s x_3 [1, b]``. We stack the build meshes into
``T[i, e] (n, 53, v, 3)`` with ``T[i, 0]`` the neutral mesh of identity ``i`` and
``T[i, k]`` the offset of blendshape ``k`` at weight 1, and take a single-mode Tucker
decomposition on the identity axis (ARCHITECTURE D2, reference-spec §2). A single-mode
Tucker is the PCA (without centring, like the reference's factors whose first column is
~1/sqrt(n)) of the identity unfolding ``X = T.reshape(n, -1)``: ``U`` = the top-``r``
eigenvectors of ``X X^T`` and ``C = U^T X``. It equals tensorly's ``partial_tucker`` on
mode 0 (checked in tests) and takes well under a second, where tensorly's iterative
solver takes ~13 s at the paper's size (stack-notes §2e). The rows of ``U`` are the build
identities' shape codes ``s``; a Gaussian fitted to them is the shape prior.

With ``r = n`` every build mesh is reproduced exactly (up to float32 rounding) by
``s = identity_codes[i]`` and a one-hot (or zero) ``b``; with ``r < n`` it is the best
rank-``r`` approximation.
"""

import dataclasses
import io
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from head360_jax import assets
from head360_jax.geometry import arkit
from head360_jax.geometry.rig import Rig

NUM_SLOTS = arkit.NUM_BLENDSHAPES + 1
_ARRAY_FIELDS = ('core', 'identity_codes', 'prior_mean', 'prior_cov', 'faces', 'uvs', 'face_uvs', 'landmark_vertices')


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BilinearModel:
  """The bilinear mesh model (a pytree: pass it to jitted functions as an argument).

  Attributes:
    core: (r, 53, v, 3) float32 Tucker core ``C`` in mesh units per unit of ``s``.
    identity_codes: (n, r) float32 shape codes of the build identities (rows of ``U``).
    prior_mean: (r,) float32 mean of the shape prior.
    prior_cov: (r, r) float32 covariance of the shape prior (ridge 1e-6 added).
    faces: (f, 3) int32 triangles of the template.
    uvs: (t, 2) float32 UV coordinates; face_uvs: (f, 3) int32 per-corner UV indices.
    landmark_vertices: (l,) int32 landmark vertex indices.
    rig: name of the rig the model was built from (static).
    mm_per_unit: millimetres per mesh unit (static), for reporting errors.
  """

  core: np.ndarray
  identity_codes: np.ndarray
  prior_mean: np.ndarray
  prior_cov: np.ndarray
  faces: np.ndarray
  uvs: np.ndarray
  face_uvs: np.ndarray
  landmark_vertices: np.ndarray
  rig: str = dataclasses.field(metadata=dict(static=True), default='')
  mm_per_unit: float = dataclasses.field(metadata=dict(static=True), default=1.0)

  @property
  def rank(self) -> int:
    return self.core.shape[0]

  @property
  def num_vertices(self) -> int:
    return self.core.shape[2]


def build(
  meshes: np.ndarray,
  *,
  rank: int = 50,
  faces: np.ndarray,
  uvs: np.ndarray,
  face_uvs: np.ndarray,
  landmark_vertices: np.ndarray,
  rig: str = '',
  mm_per_unit: float = 1.0,
) -> BilinearModel:
  """Builds the model from stacked meshes (ARCHITECTURE D2).

  Args:
    meshes: (n, 53, v, 3) array: ``[i, 0]`` the neutral mesh of identity ``i``, ``[i, k]``
      (k = 1..52) its mesh under ARKit blendshape ``k-1`` at weight 1 (not the offset).
    rank: shape-code size; clipped to ``n`` (a larger rank has no data to span).
    faces, uvs, face_uvs, landmark_vertices: template topology, stored with the model.
    rig: rig name; mm_per_unit: millimetres per mesh unit (both metadata).

  Returns:
    The model, with ``identity_codes`` ordered like ``meshes``.

  Raises:
    ValueError: if ``meshes`` is not (n, 53, v, 3) or ``rank`` < 1.
  """
  meshes = np.asarray(meshes, np.float64)
  if meshes.ndim != 4 or meshes.shape[1] != NUM_SLOTS or meshes.shape[3] != 3:
    raise ValueError(f'meshes must be (n, {NUM_SLOTS}, v, 3), got {meshes.shape}')
  if rank < 1:
    raise ValueError(f'rank must be >= 1, got {rank}')
  n = meshes.shape[0]
  rank = min(rank, n)
  tensor = meshes.copy()
  tensor[:, 1:] -= meshes[:, :1]  # slots 1..52 become blendshape offsets
  unfolding = tensor.reshape(n, -1)
  eigenvalues, eigenvectors = np.linalg.eigh(unfolding @ unfolding.T)
  factors = eigenvectors[:, ::-1][:, :rank]
  # eigh's signs are arbitrary: fix them so that each column sums to >= 0 (deterministic codes).
  factors = factors * np.where(factors.sum(0) < 0, -1.0, 1.0)
  core = (factors.T @ unfolding).reshape(rank, *tensor.shape[1:])
  prior_cov = np.cov(factors, rowvar=False, bias=True).reshape(rank, rank) + 1e-6 * np.eye(rank)
  return BilinearModel(
    core=core.astype(np.float32),
    identity_codes=factors.astype(np.float32),
    prior_mean=factors.mean(0).astype(np.float32),
    prior_cov=prior_cov.astype(np.float32),
    faces=np.asarray(faces, np.int32),
    uvs=np.asarray(uvs, np.float32),
    face_uvs=np.asarray(face_uvs, np.int32),
    landmark_vertices=np.asarray(landmark_vertices, np.int32),
    rig=rig,
    mm_per_unit=float(mm_per_unit),
  )


def rig_meshes(rig: Rig, identities: list[np.ndarray]) -> np.ndarray:
  """Stacks (n, 53, v, 3) build meshes: each identity's neutral mesh and its 52 blendshape meshes."""
  return np.stack(
    [
      identity[None] + np.concatenate([np.zeros_like(rig.expression_deltas[:1]), rig.expression_deltas])
      for identity in identities
    ]
  )


def build_from_rig(rig: Rig, num_identities: int, rank: int = 50, seed: int = 0) -> BilinearModel:
  """Samples ``num_identities`` identities from ``rig`` and builds the model from them.

  Identity ``i`` is the ``i``-th ``rig.sample_identity`` draw from
  ``np.random.default_rng(seed)``, so the dataset builder and this model agree.

  Raises:
    ValueError: if ``num_identities`` < 1.
  """
  if num_identities < 1:
    raise ValueError(f'num_identities must be >= 1, got {num_identities}')
  rng = np.random.default_rng(seed)
  identities = [rig.sample_identity(rng) for _ in range(num_identities)]
  return build(
    rig_meshes(rig, identities),
    rank=rank,
    faces=rig.faces,
    uvs=rig.uvs,
    face_uvs=rig.face_uvs,
    landmark_vertices=rig.landmark_vertices,
    rig=rig.name,
    mm_per_unit=rig.mm_per_unit,
  )


def vertices(model: BilinearModel, s: Float[Array, 'b r'], b: Float[Array, 'b k']) -> Float[Array, 'b v 3']:
  """Mesh vertices ``V(s, b) = C x_2 s x_3 [1, b]`` (paper Eq. 1).

  Args:
    model: the bilinear model (pass as a jit argument, not a closure, to avoid
      embedding the core as a constant).
    s: (..., r) shape codes; ``model.identity_codes[i]`` gives build identity ``i``.
    b: (..., 52) ARKit blendshape weights in ``arkit.ARKIT_NAMES`` order, nominally
      [0, 1]; 0 is the neutral face. Leading dims broadcast against ``s``'s.

  Returns:
    (..., v, 3) float32 vertices in mesh units. Linear in ``s`` for fixed ``b`` and in
    ``b`` for fixed ``s``; differentiable in both.

  Raises:
    ValueError: if the trailing sizes of ``s`` or ``b`` are wrong.
  """
  s, b = jnp.asarray(s, jnp.float32), jnp.asarray(b, jnp.float32)
  if s.shape[-1] != model.rank:
    raise ValueError(f'shape code must have {model.rank} entries, got shape {s.shape}')
  if b.shape[-1] != arkit.NUM_BLENDSHAPES:
    raise ValueError(f'blendshape weights must have {arkit.NUM_BLENDSHAPES} entries, got shape {b.shape}')
  weights = jnp.concatenate([jnp.ones_like(b[..., :1]), b], axis=-1)
  per_identity = jnp.einsum('...r,revc->...evc', s, model.core)
  return jnp.einsum('...e,...evc->...vc', weights, per_identity)


def fit_shape_code(
  model: BilinearModel, target: np.ndarray, b: np.ndarray | None = None, prior_weight: float = 0.0
) -> np.ndarray:
  """Least-squares shape code for target vertices under fixed blendshape weights.

  Solves ``min_s |V(s, b) - target|^2 + prior_weight * (s - mu)^T Sigma^-1 (s - mu)`` in
  closed form (``V`` is linear in ``s``), in float64.

  Args:
    target: (v, 3) vertices in mesh units.
    b: (52,) ARKit weights (default zeros: the neutral face).
    prior_weight: weight of the Gaussian shape prior (0 = plain least squares).

  Returns:
    (r,) float32 shape code.

  Raises:
    ValueError: if ``target`` has the wrong vertex count.
  """
  target = np.asarray(target, np.float64)
  if target.shape != (model.num_vertices, 3):
    raise ValueError(f'target must be ({model.num_vertices}, 3), got {target.shape}')
  b = np.zeros(arkit.NUM_BLENDSHAPES) if b is None else np.asarray(b, np.float64)
  weights = np.concatenate([[1.0], b])
  basis = np.einsum('e,revc->rvc', weights, np.asarray(model.core, np.float64)).reshape(model.rank, -1)
  lhs = basis @ basis.T
  rhs = basis @ target.ravel()
  if prior_weight:
    precision = np.linalg.inv(np.asarray(model.prior_cov, np.float64))
    lhs = lhs + prior_weight * precision
    rhs = rhs + prior_weight * precision @ np.asarray(model.prior_mean, np.float64)
  return np.linalg.solve(lhs, rhs).astype(np.float32)


def sample_shape_codes(model: BilinearModel, key: jax.Array, num: int) -> Float[Array, 'n r']:
  """Draws ``num`` shape codes from the Gaussian shape prior, (num, r) float32."""
  return jax.random.multivariate_normal(key, model.prior_mean, model.prior_cov, (num,), dtype=jnp.float32)


def save(model: BilinearModel, path: str | pathlib.Path) -> None:
  """Saves the model as a plain ``.npz`` (arrays and strings only, no pickles), atomically.

  The archive's entries carry a fixed timestamp, so equal models give identical bytes.
  """
  arrays = {name: np.asarray(getattr(model, name)) for name in _ARRAY_FIELDS}
  arrays.update(
    rig=np.str_(model.rig), mm_per_unit=np.float64(model.mm_per_unit), arkit_names=np.array(arkit.ARKIT_NAMES)
  )
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as archive:
    for name, array in arrays.items():
      with archive.open(zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0)), 'w', force_zip64=True) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)
  assets.atomic_write_bytes(pathlib.Path(path), buffer.getvalue())


def load(path: str | pathlib.Path) -> BilinearModel:
  """Loads a model written by ``save`` (never unpickles).

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: naming the file, if it is not a bilinear model file or its blendshape
      names differ from ``arkit.ARKIT_NAMES``.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'bilinear model {path} not found')
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {name: data[name] for name in _ARRAY_FIELDS}
      names, rig, mm = tuple(str(x) for x in data['arkit_names']), str(data['rig']), float(data['mm_per_unit'])
  except (KeyError, ValueError, OSError) as e:
    raise ValueError(f'{path}: not a bilinear model file ({e})') from None
  if names != arkit.ARKIT_NAMES:
    raise ValueError(f'{path}: blendshape names differ from the 52 ARKit names in ARKit order')
  return BilinearModel(**arrays, rig=rig, mm_per_unit=mm)
