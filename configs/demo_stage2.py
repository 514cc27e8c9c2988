"""Demo stage 2: the demo's L1-only recipe with hair detached from the head (``configs/stage2.py``).

Command (after the demo's stage-1 run; the dataset must hold the bald images, which
``build_dataset`` always writes)::

  .venv/bin/python train.py --config configs/demo_stage2.py --workdir runs/demo/stage2 \
      --config.data.root=runs/demo/anny_small --config.train.init_from=runs/demo/run
"""

import ml_collections

from configs import demo, stage2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``demo`` in stage 2, 500 steps; ``arg`` is unused."""
  return stage2.stage2(demo.get_config(arg), steps=500)
