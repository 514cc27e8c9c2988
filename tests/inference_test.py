"""HeadRenderer's heads under ``model.latent = 'identity_factor'``: codes are shape codes, hair swaps by ``h``.

A toy run's step-0 checkpoint over a 3-identity, rank-3 bilinear model (no images: the renderer
reads only the model and the checkpoint); only the mapping is compiled, nothing is rendered.
"""

import numpy as np
import pytest


def test_identity_and_random_heads_use_their_shape_code_as_texture_and_hair_codes(toy_renderer):
  rows = toy_renderer.model.identity_codes
  s, t, h = toy_renderer.identity(2)
  for code in (s, t, h):
    np.testing.assert_array_equal(code, rows[2])
  s, t, h = toy_renderer.random_head(5)
  assert s.shape == (3,) and not any(np.allclose(s, row) for row in rows)  # a new shape code, from the prior
  np.testing.assert_array_equal(t, s)
  np.testing.assert_array_equal(h, s)
  np.testing.assert_array_equal(toy_renderer.random_head(5)[0], s)  # deterministic in the seed
  with pytest.raises(ValueError, match='identity'):
    toy_renderer.identity(3)


def test_styles_of_an_identity_share_one_mapping_and_a_hair_swap_changes_only_the_hair(toy_renderer):
  _, t, h = toy_renderer.identity(0)
  own = toy_renderer.styles(t, h)
  np.testing.assert_allclose(own['texture'], own['hair'], rtol=1e-6, atol=1e-7)  # step 0: both w_avg are 0
  swapped = toy_renderer.styles(t, toy_renderer.identity(1)[2])  # render.py --hair_from 1
  np.testing.assert_array_equal(swapped['texture'], own['texture'])
  assert np.abs(swapped['hair'] - own['hair']).max() > 0.1 * np.abs(own['hair']).max()
