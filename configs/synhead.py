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
"""

import ml_collections

from configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config, which holds the reference values; ``arg`` is unused."""
  config = base.get_config(arg)
  config.train.steps = 3_000_000 // config.train.batch_size  # 3,000 kimg
  config.model.mouth_unet = True
  config.model.blending_unet = True
  return config
