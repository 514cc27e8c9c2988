"""HeadRenderer's heads under ``model.latent = 'identity_factor'``: codes are shape codes, hair swaps by ``h``.

A toy run's step-0 checkpoint over a 3-identity, rank-3 bilinear model (no images: the renderer
reads only the model and the checkpoint); only the mapping is compiled, nothing is rendered.
"""

import jax
import numpy as np
import pytest
from render_run import write_step0_run

from head360_jax import inference


@pytest.fixture(scope='module')
def renderer(tmp_path_factory):
  previous = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)  # compile time dominates at toy size
  yield inference.HeadRenderer(write_step0_run(tmp_path_factory.mktemp('toy')))
  jax.config.update('jax_disable_most_optimizations', previous)


def test_identity_and_random_heads_use_their_shape_code_as_texture_and_hair_codes(renderer):
  rows = renderer.model.identity_codes
  s, t, h = renderer.identity(2)
  for code in (s, t, h):
    np.testing.assert_array_equal(code, rows[2])
  s, t, h = renderer.random_head(5)
  assert s.shape == (3,) and not any(np.allclose(s, row) for row in rows)  # a new shape code, from the prior
  np.testing.assert_array_equal(t, s)
  np.testing.assert_array_equal(h, s)
  np.testing.assert_array_equal(renderer.random_head(5)[0], s)  # deterministic in the seed
  with pytest.raises(ValueError, match='identity'):
    renderer.identity(3)


def test_styles_of_an_identity_share_one_mapping_and_a_hair_swap_changes_only_the_hair(renderer):
  _, t, h = renderer.identity(0)
  own = renderer.styles(t, h)
  np.testing.assert_allclose(own['texture'], own['hair'], rtol=1e-6, atol=1e-7)  # step 0: both w_avg are 0
  swapped = renderer.styles(t, renderer.identity(1)[2])  # render.py --hair_from 1
  np.testing.assert_array_equal(swapped['texture'], own['texture'])
  assert np.abs(swapped['hair'] - own['hair']).max() > 0.1 * np.abs(own['hair']).max()
