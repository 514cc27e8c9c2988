"""Interpolation paths between heads: exact ends, constant angular speed for slerp, and what each mode moves."""

import numpy as np
import pytest

from head360_jax import interpolation


def _head(seed):
  rng = np.random.default_rng(seed)
  ws = {name: rng.normal(size=(1, 8)).astype(np.float32) for name in ('texture', 'hair', 'sr')}
  return rng.normal(size=5).astype(np.float32), ws, rng.uniform(size=52).astype(np.float32)


@pytest.mark.parametrize('spherical', [False, True])
def test_ends_are_the_heads_exactly(spherical):
  heads = [_head(0), _head(1), _head(2)]
  frames = interpolation.path(heads, 4, spherical=spherical)
  assert len(frames) == 2 * 3 + 1
  for frame, head in ((frames[0], heads[0]), (frames[3], heads[1]), (frames[-1], heads[2])):
    np.testing.assert_array_equal(frame[0], head[0])
    np.testing.assert_array_equal(frame[2], head[2])
    for name in head[1]:
      np.testing.assert_array_equal(frame[1][name], head[1][name])


def test_slerp_moves_at_constant_angle_and_interpolates_the_norm():
  a, b = np.array([2.0, 0.0, 0.0], np.float32), np.array([0.0, 4.0, 0.0], np.float32)
  points = [interpolation.slerp(a, b, t) for t in np.linspace(0, 1, 5)]
  angles = [np.degrees(np.arctan2(p[1], p[0])) for p in points]
  np.testing.assert_allclose(angles, [0, 22.5, 45, 67.5, 90], atol=1e-4)
  np.testing.assert_allclose([np.linalg.norm(p) for p in points], [2, 2.5, 3, 3.5, 4], atol=1e-5)
  np.testing.assert_allclose(interpolation.slerp(a, 3 * a, 0.5), 2 * a, atol=1e-6)  # parallel: plain lerp


@pytest.mark.parametrize(
  'mode, moving',
  [('shape', {'s'}), ('style', {'texture', 'hair', 'sr'}), ('hair', {'hair'}), ('expression', {'b'})],
)
def test_each_mode_moves_only_its_part(mode, moving):
  a, b = _head(0), _head(1)
  s, ws, weights = interpolation.path([a, b], 3, mode=mode)[1]
  parts = {'s': (s, a[0]), 'b': (weights, a[2])} | {name: (ws[name], a[1][name]) for name in ws}
  changed = {name for name, (value, start) in parts.items() if not np.array_equal(value, start)}
  assert changed == moving


def test_bad_arguments():
  with pytest.raises(ValueError, match='mode'):
    interpolation.path([_head(0), _head(1)], 3, mode='colour')
  with pytest.raises(ValueError, match='at least 2 heads'):
    interpolation.path([_head(0)], 3)
