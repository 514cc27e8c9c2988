"""A toy-size Head360 generator on an icosphere mesh, with numpy random weights (shared by the model tests).

Legend: ``v`` vertices, ``f`` faces.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from head360_jax.models import generator as generator_lib

# Every part at toy size: 16² texture, 32² planes, 16² raw render, 32² output, one SR block.
SIZES = dict(
  z_dim=8, w_dim=16, texture_resolution=16, texture_channels=4, plane_resolution=32, channel_base=128,
  channel_max=16, decoder_hidden=16, feature_channels=8, num_coarse=4, num_fine=4,
  neural_rendering_resolution=16, image_resolution=32, sr_channels=(8,), sr_noise_dim=8,
)  # fmt: skip


def sphere_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(vertices (v, 3), faces (f, 3), face UVs (f, 3, 2), 12 landmarks): an icosphere of radius 0.08 mesh units.

  Inside the feature box, spherical UVs, the landmarks on the front cap.
  """
  import trimesh

  sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.08)
  vertices = np.asarray(sphere.vertices, np.float32)
  faces = np.asarray(sphere.faces, np.int32)
  u = 0.5 + np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi)
  v = 0.5 + np.arcsin(np.clip(vertices[:, 1] / 0.08, -1, 1)) / np.pi
  face_uvs = np.stack([u, v], axis=-1)[faces].astype(np.float32)
  landmarks = np.argsort(-vertices[:, 2])[:12].astype(np.int32)  # the front cap
  return vertices, faces, face_uvs, landmarks


def random_generator(config: generator_lib.GeneratorConfig, mesh, seed: int = 0) -> generator_lib.Head360Generator:
  """The generator built abstractly with numpy N(0, 0.5²) weights and the mesh's topology (fast on CPU).

  Two configs that differ only in precision get the same weights for the same ``seed``.
  """
  _, faces, face_uvs, landmarks = mesh
  module = nnx.eval_shape(
    lambda: generator_lib.Head360Generator(
      config, faces=faces, face_uv_coords=face_uvs, landmark_vertices=landmarks, rngs=nnx.Rngs(0)
    )
  )
  topology = {'faces': faces, 'face_uv_coords': face_uvs, 'landmark_vertices': landmarks[:12]}
  rng = np.random.default_rng(seed)
  for path, node in nnx.iter_graph(module):
    if isinstance(node, generator_lib.Topology):
      node.set_value(jnp.asarray(topology[path[-1]]))
    elif isinstance(node, nnx.Variable):
      node.set_value(jnp.asarray(0.5 * rng.standard_normal(node.shape), jnp.float32))
  return module
