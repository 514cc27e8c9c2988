"""SynHead100 stage 2 at the reference sizes: the hair-detachment fine-tune (``configs/stage2.py``).

Command (after the ``configs/synhead.py`` run; the dataset needs ``split_512_bald``)::

  python train.py --config configs/synhead_stage2.py --workdir runs/synhead_stage2 \
      --config.data.root=/path/to/SynHead100 --config.train.init_from=runs/synhead

Expected: the paper fine-tunes 40 k iterations after stage 1 (paper §4.1; reference-spec §5.2-5.3).
"""

import ml_collections

from configs import stage2, synhead


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``synhead`` in stage 2, 40 k iterations; ``arg`` is unused."""
  return stage2.stage2(synhead.get_config(arg), steps=40_000)
