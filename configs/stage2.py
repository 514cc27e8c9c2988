"""Stage 2 (hair detachment, paper §3.3, reference-spec §3.7 and §5.3) on top of any stage-1 config.

``stage2(config)`` turns a stage-1 config into its stage-2 fine-tune: ``model.stage = 2``
(per sample, haired = textured-mesh planes + static/hair planes, bald = textured-mesh
planes only), bald images trained beside the haired ones (``data.include_bald``), the same
losses as stage 1 (100·L1 + GAN per sample), plus ours: ``train.alpha_weight`` 100, an L1
of the raw render's opacity to the image's alpha, which empties the hair region of bald renders
(hair-region opacity 0.105 -> 0.048 on the demo data, ``docs/stages.md``; 0 gives the paper's
losses alone). The run starts from a stage-1 run's latest
G, G_ema and D weights with ``--config.train.init_from=<stage-1 workdir>``; the step counter,
the optimisers and every schedule start at 0, and a rerun resumes the stage-2 run itself.
"""

import ml_collections


def stage2(config: ml_collections.ConfigDict, steps: int | None = None) -> ml_collections.ConfigDict:
  """The stage-2 version of a stage-1 ``config`` (``steps``: the fine-tune's length, default unchanged)."""
  config.model.stage = 2
  config.data.include_bald = True
  config.train.alpha_weight = 100.0
  if steps is not None:
    config.train.steps = steps
  return config
