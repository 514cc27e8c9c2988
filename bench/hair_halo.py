"""Where a stage-2 run's bald render keeps opacity over the hair region: by distance to the head's edge.

Usage::

  .venv/bin/python bench/hair_halo.py --workdir runs/demo/stage2

Renders the hair protocol's bald records (``hair_eval.load_hair_sets``: held-out cameras,
every swap pair's identity) without the hair planes and prints the mean raw-render opacity
over the hair region (``hair_eval``'s region: hair in the haired ground truth, bald ground
truth alpha < 0.5), binned by the distance in pixels to the bald ground truth's silhouette
(its alpha > 0.05; 0 = inside its anti-aliased edge), and split into pixels above the
head (rows above its topmost covered pixel, per column) and beside/below it. The bald
ground truth's own opacity over the region is the measure's floor (docs/stages.md).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import ndimage

from head360_jax import hair_eval, inference

BINS = (
  ('inside the edge', -1.0, 0.0),
  ('1 px', 0.0, 1.5),
  ('2 px', 1.5, 2.5),
  ('3-4 px', 2.5, 4.5),
  ('5+ px', 4.5, 1e9),
)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='a stage-2 run whose dataset has swap pairs')
  args = parser.parse_args()
  renderer = inference.HeadRenderer(args.workdir)
  sets = hair_eval.load_hair_sets(renderer.config)
  graphdef, state = nnx.split(renderer.generator)

  @jax.jit
  def bald_alpha(state, ws, labels, vertices):
    generator = nnx.merge(graphdef, state)
    ws = jax.tree.map(lambda w: jnp.broadcast_to(w, (labels.shape[0], *w.shape[1:])), ws)
    hair = jnp.zeros((labels.shape[0],), jnp.float32)
    return generator(ws, labels, vertices, key=None, noise_mode='const', hair=hair)['image_alpha'][..., 0]

  names = [name for name, _, _ in BINS] + ['all', 'above the head', 'beside/below']
  sums = {name: [0.0, 0, 0.0] for name in names}
  for batch in sets['bald']:
    for i in range(int(np.sum(batch['valid']))):
      _, t, h = renderer.identity(int(batch['identity'][i]))
      alpha = np.asarray(
        bald_alpha(state, renderer.styles(t, h), jnp.asarray(batch['camera'][i : i + 1]), batch['vertices'][i : i + 1])
      )[0]
      region = np.squeeze(batch['hair_region'][i]) > 0
      truth = np.squeeze(batch['alpha'][i])
      if truth.shape != alpha.shape:
        truth = np.asarray(jax.image.resize(jnp.asarray(truth), alpha.shape, 'linear'))
      covered = truth > 0.05
      distance = ndimage.distance_transform_edt(~covered)
      top = np.where(covered.any(0), covered.argmax(0), alpha.shape[0])
      above = np.arange(alpha.shape[0])[:, None] < top[None, :]
      masks = {name: region & (distance > lo) & (distance <= hi) for name, lo, hi in BINS}
      masks |= {'all': region, 'above the head': region & above, 'beside/below': region & ~above}
      for name, mask in masks.items():
        sums[name][0] += alpha[mask].sum()
        sums[name][1] += mask.sum()
        sums[name][2] += truth[mask].sum()
  print(f'{args.workdir}: bald-render opacity over the hair region (raw render, {alpha.shape[0]}²)')
  print(f'{"pixels":18s} {"count":>7s} {"render":>7s} {"truth":>7s}')
  for name, (render_sum, count, truth_sum) in sums.items():
    print(f'{name:18s} {count:7d} {render_sum / max(count, 1):7.3f} {truth_sum / max(count, 1):7.3f}')


if __name__ == '__main__':
  main()
