"""Tests of the bilinear (Tucker) mesh model against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import partial_tucker

from head360_jax.geometry import arkit, bilinear
from head360_jax.geometry.rig import Rig

NUM_VERTICES = 40


def _toy_rig(num_basis: int = 6) -> Rig:
  """A small random rig whose identities span ``num_basis`` linear directions."""
  rng = np.random.default_rng(0)
  template = rng.normal(size=(NUM_VERTICES, 3)).astype(np.float32) * 0.05
  faces = np.stack([np.arange(NUM_VERTICES - 2), np.arange(1, NUM_VERTICES - 1), np.arange(2, NUM_VERTICES)], 1)
  basis = rng.normal(size=(num_basis, NUM_VERTICES, 3)).astype(np.float32) * 0.01
  deltas = rng.normal(size=(52, NUM_VERTICES, 3)).astype(np.float32) * 0.005

  def sampler(r):
    return template + np.tensordot(r.normal(size=num_basis).astype(np.float32), basis, axes=1)

  groups = {g: np.zeros(NUM_VERTICES, bool) for g in ('skin', 'scalp', 'eyes', 'lips', 'mouth_interior', 'brows')}
  return Rig(
    name='toy',
    vertices=template,
    faces=faces.astype(np.int32),
    uvs=np.zeros((NUM_VERTICES, 2), np.float32),
    face_uvs=faces.astype(np.int32),
    expression_deltas=deltas,
    landmark_vertices=np.arange(12, dtype=np.int32),
    landmark_names=tuple(f'lm{i}' for i in range(12)),
    vertex_groups=groups,
    uv_regions={},
    missing_expressions=(),
    identity_sampler=sampler,
    scale=1.0,
    source_unit_mm=1000.0,
  )


@pytest.fixture(scope='module')
def rig():
  return _toy_rig()


def _build_meshes(rig, n, seed=0):
  r = np.random.default_rng(seed)
  return bilinear.rig_meshes(rig, [rig.sample_identity(r) for _ in range(n)])


def test_full_rank_reproduces_every_build_mesh(rig):
  meshes = _build_meshes(rig, 5)
  model = bilinear.build_from_rig(rig, 5, rank=50, seed=0)
  assert model.rank == 5  # clipped to the number of identities
  head_size = np.linalg.norm(np.ptp(rig.vertices, axis=0))
  for i in range(5):
    for k in [None, *range(52)]:
      b = np.zeros(52, np.float32) if k is None else np.eye(52, dtype=np.float32)[k]
      slot = 0 if k is None else k + 1
      got = np.asarray(bilinear.vertices(model, model.identity_codes[i], b))
      assert np.abs(got - meshes[i, slot]).max() < 1e-4 * head_size


def test_low_rank_equals_tensorly_partial_tucker(rig):
  meshes = _build_meshes(rig, 10)
  model = bilinear.build_from_rig(rig, 10, rank=4, seed=0)
  tensor = meshes.copy()
  tensor[:, 1:] -= meshes[:, :1]
  tensor = np.moveaxis(tensor.reshape(10, 53, -1), 0, 1)  # (53, n, 3v): identity is mode 1
  (_, factors), _ = partial_tucker(tl.tensor(tensor), rank=[4], modes=[1], init='svd', tol=1e-10)
  ours, theirs = np.asarray(model.identity_codes, np.float64), np.asarray(factors[0])
  # Same subspace: projectors agree (factor signs/rotations may differ).
  np.testing.assert_allclose(ours @ ours.T, theirs @ theirs.T, atol=1e-4)


def test_held_out_identity_in_span_is_recovered(rig):
  model = bilinear.build_from_rig(rig, 12, rank=12, seed=0)
  held_out = rig.sample_identity(np.random.default_rng(123))
  s = bilinear.fit_shape_code(model, held_out)
  recon = np.asarray(bilinear.vertices(model, s, np.zeros(52)))
  head_size = np.linalg.norm(np.ptp(rig.vertices, axis=0))
  # The toy identities span 6 directions plus the template, so 12 identities span them all.
  assert np.abs(recon - held_out).max() < 1e-4 * head_size


def test_gradients_match_finite_differences(rig):
  model = bilinear.build_from_rig(rig, 6, rank=6, seed=0)
  rng = np.random.default_rng(1)
  s0 = model.identity_codes[2] + rng.normal(size=model.rank).astype(np.float32) * 0.1
  b0 = rng.uniform(0, 1, size=52).astype(np.float32)
  probe = jnp.asarray(rng.normal(size=(NUM_VERTICES, 3)).astype(np.float32))

  def loss(s, b):
    return jnp.sum(jnp.sin(bilinear.vertices(model, s, b) * 20.0) * probe)

  grad_s, grad_b = jax.jit(jax.grad(loss, argnums=(0, 1)))(s0, b0)
  eps = 1e-2
  for i in (0, 3, 5):
    d = np.zeros_like(s0)
    d[i] = eps
    fd = (loss(s0 + d, b0) - loss(s0 - d, b0)) / (2 * eps)
    np.testing.assert_allclose(grad_s[i], fd, rtol=2e-2, atol=1e-4)
  for k in (arkit.index('jawOpen'), arkit.index('eyeBlinkLeft'), 0):
    d = np.zeros_like(b0)
    d[k] = eps
    fd = (loss(s0, b0 + d) - loss(s0, b0 - d)) / (2 * eps)
    np.testing.assert_allclose(grad_b[k], fd, rtol=2e-2, atol=1e-4)


def test_batched_and_jitted(rig):
  model = bilinear.build_from_rig(rig, 4, seed=0)
  s = jnp.stack([model.identity_codes] * 2)  # (2, 4, r)
  b = jnp.zeros((2, 4, 52)).at[1, :, arkit.index('jawOpen')].set(1.0)
  out = jax.jit(bilinear.vertices)(model, s, b)
  assert out.shape == (2, 4, NUM_VERTICES, 3)
  np.testing.assert_allclose(
    out[1] - out[0], jnp.broadcast_to(rig.expression_deltas[arkit.index('jawOpen')], (4, NUM_VERTICES, 3)), atol=1e-5
  )


def test_wrong_sizes_raise(rig):
  model = bilinear.build_from_rig(rig, 4, seed=0)
  with pytest.raises(ValueError, match='shape code'):
    bilinear.vertices(model, np.zeros(3), np.zeros(52))
  with pytest.raises(ValueError, match='52'):
    bilinear.vertices(model, np.zeros(4), np.zeros(51))
  with pytest.raises(ValueError, match='target'):
    bilinear.fit_shape_code(model, np.zeros((7, 3)))


def test_prior_sampling_matches_build_codes(rig):
  model = bilinear.build_from_rig(rig, 8, rank=5, seed=0)
  codes = np.asarray(bilinear.sample_shape_codes(model, jax.random.key(0), 20000))
  np.testing.assert_allclose(codes.mean(0), model.prior_mean, atol=0.02)
  np.testing.assert_allclose(np.cov(codes, rowvar=False), model.prior_cov, atol=0.02)


def test_save_load_round_trip(rig, tmp_path):
  model = bilinear.build_from_rig(rig, 4, seed=0)
  bilinear.save(model, tmp_path / 'm.npz')
  loaded = bilinear.load(tmp_path / 'm.npz')
  for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(loaded), strict=True):
    np.testing.assert_array_equal(a, b)
  assert (loaded.rig, loaded.mm_per_unit) == (model.rig, model.mm_per_unit)
  (tmp_path / 'bad.npz').write_bytes(b'not a zip')
  with pytest.raises(ValueError, match='bad.npz'):
    bilinear.load(tmp_path / 'bad.npz')
  with pytest.raises(FileNotFoundError):
    bilinear.load(tmp_path / 'missing.npz')


@pytest.mark.parametrize('rig_name,num_identities', [('anny', 6), ('ict', 3)])
def test_real_rig_build_meshes_reproduced(rig_name, num_identities):
  from head360_jax.geometry.rig import load_rig

  real = load_rig(rig_name)
  model = bilinear.build_from_rig(real, num_identities, rank=50, seed=0)
  meshes = _build_meshes(real, num_identities)
  head_size = np.linalg.norm(np.ptp(real.vertices, axis=0))
  slots = [0, 1 + arkit.index('jawOpen'), 1 + arkit.index('eyeBlinkLeft'), 1 + arkit.index('tongueOut')]
  weights = np.concatenate([np.zeros((1, 52), np.float32), np.eye(52, dtype=np.float32)])[slots]
  got = np.asarray(jax.jit(bilinear.vertices)(model, model.identity_codes[:, None], weights[None]))
  assert np.abs(got - meshes[:, slots]).max() < 1e-4 * head_size


def test_anny_held_out_error_shrinks_with_more_identities():
  from head360_jax.geometry.rig import load_rig

  real = load_rig('anny')
  held_out = [real.sample_identity(np.random.default_rng(1000 + i)) for i in range(3)]

  def rms_mm(num_identities):
    model = bilinear.build_from_rig(real, num_identities, rank=50, seed=0)
    errors = [bilinear.vertices(model, bilinear.fit_shape_code(model, t), np.zeros(52)) - t for t in held_out]
    return float(np.sqrt(np.mean(np.square(errors)) * 3)) * model.mm_per_unit

  few, many = rms_mm(3), rms_mm(30)
  assert many < 0.6 * few, (few, many)
  assert many < 3.0  # mm; 50 identities give ~1.1 mm RMS (build_bilinear report)


def test_save_is_deterministic(rig, tmp_path):
  model = bilinear.build_from_rig(rig, 4, seed=0)
  bilinear.save(model, tmp_path / 'a.npz')
  bilinear.save(bilinear.build_from_rig(rig, 4, seed=0), tmp_path / 'b.npz')
  assert (tmp_path / 'a.npz').read_bytes() == (tmp_path / 'b.npz').read_bytes()
