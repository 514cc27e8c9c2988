"""SynHead100 at the reference sizes (reference-spec §3-5), for GPUs.

Command (one GPU; ``--config.train.batch_size`` is global and split over the devices)::

  python train.py --config configs/synhead.py --workdir runs/synhead \
      --config.data.root=/path/to/SynHead100

Expected: the reference trains ~3,000 kimg on 4 GPUs for about 10 days (reference-spec
§5.2); not yet measured here. The mouth and neural-blending StyleUNets are on
(reference-spec §3.6). Precision is the reference's mixed precision in bfloat16 (``base``:
SR and the discriminator's 4 highest resolutions; ``--config.model.compute_dtype=bfloat16``
for every convolution, ``--config.model.sr_num_bf16_res=0 --config.model.d_num_bf16_res=0``
for float32 throughout).

Latent: ``model.latent = 'identity_factor'`` with ``z_dim`` 50, as the reference (reference-spec
§1.6, §3.2): each identity's 50-d row of the bilinear factor matrix drives one mapping network
(0.32 M parameters) whose styles drive the texture, the static/hair planes and both StyleUNets.
The dataset's ``bilinear.npz`` must then have rank 50, i.e. be built from at least 50
identities (``build_dataset`` clips the rank to the number of identities); otherwise
``build_models`` stops with a ValueError. For a smaller dataset set
``--config.model.z_dim=<its rank>``, or ``--config.model.latent=codes --config.model.z_dim=512``
for Gaussian per-identity codes with separate texture and hair mappings.
"""

import ml_collections

from configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config, which holds the reference values; ``arg`` is unused."""
  config = base.get_config(arg)
  config.train.steps = 3_000_000 // config.train.batch_size  # 3,000 kimg
  config.model.mouth_unet = True
  config.model.blending_unet = True
  config.model.latent = 'identity_factor'
  config.model.z_dim = 50  # = the rank of the dataset's bilinear model
  return config
