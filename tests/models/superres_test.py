"""Super-resolution vs the PyTorch golden superres_8xdc (real Head360 size) and a tiny configuration."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.models import layers, superres


def test_superres_matches_golden_8xdc():
  arrays, meta = golden.load_golden('superres_8xdc')
  factory = lambda: superres.SuperResolution(64, 512, 64, 512, channels=(256, 128), conv_clamp=256, rngs=nnx.Rngs(0))
  model = golden.build(factory, golden.params_with_prefix(arrays))
  assert layers.parameter_count(model) == sum(
    v.size for k, v in arrays.items() if k.startswith('param/') and not k.endswith(('resample_filter', 'noise_const'))
  )
  rgb, features = golden.nchw_to_nhwc(arrays['in/rgb']), golden.nchw_to_nhwc(arrays['in/x'])
  image = jax.jit(model.__call__)(rgb, features, jnp.asarray(arrays['in/ws']))
  error = golden.assert_close(golden.nhwc_to_nchw(image), meta, arrays, 'out/image')
  print('superres_8xdc', {'out/image': f'{error:.2e}'})


def test_superres_tiny_shapes_noise_and_last_w():
  model = golden.random_build(lambda: superres.SuperResolution(8, 16, 16, 64, channels=(16, 8), rngs=nnx.Rngs(0)))
  assert model.block_input_resolution == 16 and model.num_ws == 1
  rng = np.random.default_rng(0)
  features = rng.standard_normal((2, 16, 16, 8), np.float32)
  ws = rng.standard_normal((2, 3, 16), np.float32)
  run = jax.jit(model.__call__)
  image = run(features[..., :3], features, ws)
  assert image.shape == (2, 64, 64, 3)
  other = ws.copy()
  other[:, :-1] = rng.standard_normal((2, 2, 16))
  np.testing.assert_array_equal(image, run(features[..., :3], features, other))  # only the last w matters
  with pytest.raises(ValueError, match='expects'):
    model(features[:, :8, :8, :3], features[:, :8, :8], ws)
  with pytest.raises(ValueError, match='divisible'):
    superres.SuperResolution(8, 16, 16, 62, channels=(16, 8), rngs=nnx.Rngs(0))


def test_superres_resizes_when_the_block_input_differs():
  """32 -> resize 16 -> 2 blocks -> 64 (like 8XDC's 64 -> 128 -> 256 -> 512, shrinking here)."""
  model = golden.random_build(lambda: superres.SuperResolution(4, 8, 32, 64, channels=(8, 8), rngs=nnx.Rngs(0)))
  features = np.random.default_rng(0).standard_normal((1, 32, 32, 4), np.float32)
  image = model(features[..., :3], features, jnp.ones((1, 1, 8)))
  assert image.shape == (1, 64, 64, 3) and bool(jnp.all(jnp.isfinite(image)))
