"""Hair protocols: hair swap against the builder's swap ground truth, and hair detachment (bald renders).

Legend: ``b`` batch, ``n`` records, ``R`` output resolution, ``r`` neural rendering
resolution (the raw render, where the opacity lives).

Paper §3.3 and Table 4: after the stage-2 fine-tune a head's hair can be removed (bald
render: textured-mesh planes only) and swapped (the static/hair planes of another
identity's hair code). The paper scores swaps against pseudo ground truth; our builder
renders the real thing (``build_dataset --swap-pairs N``: identity A wearing identity B's
hairstyle, at every camera), so both are measured here at the run's held-out cameras
(``config.data.held_out_views``; every view when none are held out):

* ``hair_swap``: A's mesh, camera and texture code with B's hair code, haired, against the
  swap ground truth; L1, PSNR, SSIM, LPIPS as ``evaluate`` (whole image on white and the
  ground truth's foreground);
* ``bald``: A's bald render against A's bald ground truth, same figures;
* both sets also give ``hair/l1`` and ``hair/psnr``: the figures over the pixels where the
  ground truth differs from A's bald head by hair (swap: B's hair on A; bald: A's own hair,
  which the bald render must leave as background), at the output resolution;
* ``hair_alpha``: the mean opacity of the raw render over the hair region (pixels where
  A's haired ground truth is opaque, alpha > 0.5, and its bald one is not, < 0.5; at the
  raw render's resolution), for the bald render (``bald``: should be ~0 once hair is
  detached) and the haired one (``haired``: ~1); ``hair_alpha_core`` the same over the hair
  pixels at least one pixel away from the bald head's coverage (alpha > 0.05), so
  that the head's own anti-aliased edge does not count as hair.

A stage-1 run has no bald head of its own: its "bald" render turns the static planes off
(``hexplane.compose_planes``), and its swap uses B's static planes where A's mesh does not
cover (no detachment), the paper's "without detachment" row.
"""

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from head360_jax import checkpoint
from head360_jax import evaluate as evaluate_lib
from head360_jax.data import layout, sources, transforms
from head360_jax.geometry import obj
from head360_jax.metrics import image as image_metrics
from head360_jax.training import steps as steps_lib

HAIR_REGION_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class _SwapCodes:
  """What ``steps.generator_inputs`` reads of a models object: ``t`` of ``identity``, ``h`` of ``hair_identity``."""

  base: Callable[[dict], dict]
  mixing_layers: dict = dataclasses.field(default_factory=dict)

  def codes(self, batch: dict) -> dict:
    own = self.base(batch)
    return {'t': own['t'], 'h': self.base({**batch, 'identity': batch['hair_identity']})['h']}


def _batches(fields: list[dict]) -> list[dict]:
  """Per-record dicts in batches of ``evaluate.EVAL_BATCH``, the last padded (``valid`` marks real records)."""
  batches = []
  for start in range(0, len(fields), evaluate_lib.EVAL_BATCH):
    chunk = fields[start : start + evaluate_lib.EVAL_BATCH]
    valid = np.arange(evaluate_lib.EVAL_BATCH) < len(chunk)
    chunk = chunk + [chunk[0]] * (evaluate_lib.EVAL_BATCH - len(chunk))
    batches.append({key: np.stack([np.asarray(f[key]) for f in chunk]) for key in chunk[0]} | {'valid': valid})
  return batches


def _dilate(mask: np.ndarray) -> np.ndarray:
  """3x3 binary dilation of an (h, w, 1) mask."""
  padded = np.pad(mask[..., 0], 1)
  h, w = mask.shape[:2]
  out = np.zeros((h, w), bool)
  for dy in range(3):
    for dx in range(3):
      out |= padded[dy : dy + h, dx : dx + w]
  return out[..., None]


def load_hair_sets(config, *, limit: int | None = None) -> dict[str, list[dict]]:
  """Ground truth of the ``hair_swap`` and ``bald`` sets (module docstring) at the run's held-out cameras.

  Args:
    config: the run config (``data.root``, ``data.resolution``, ``data.held_out_views``,
      ``model.output_resolution``, ``model.neural_resolution``).
    limit: at most this many records per pair (spread evenly); None takes all.

  Returns:
    ``{'hair_swap': batches, 'bald': batches}``; each batch holds ``camera`` (b, 25),
    ``vertices`` (b, v, 3), ``expression`` (b, 52), ``identity`` and ``hair_identity`` (b,)
    int32, ``hair`` (b,) (1 for swaps, 0 for bald), ``image`` (b, R, R, 3) in [-1, 1],
    ``alpha`` (b, R, R, 1) in [0, 1], ``hair_region`` (b, r, r, 1) in {0, 1} and ``valid``.

  Raises:
    ValueError: if the dataset has no swap ground truth (``sources.swap_pairs``) or none at
      the held-out cameras.
  """
  data, model = config.data, config.model
  root = pathlib.Path(data.root)
  pairs = sources.swap_pairs(root, data.resolution)
  views = set(data.get('held_out_views', ())) or set(range(layout.NUM_VIEWS))
  names = sorted(p.name for p in (root / layout.IMAGES / layout.split_name(data.resolution)).iterdir() if p.is_dir())
  index = {name: i for i, name in enumerate(names)}
  swap, bald, seen = [], [], set()
  meshes: dict[tuple[str, str], np.ndarray] = {}
  for pair in pairs:
    images = [image for image in pair['images'] if image['view'] in views]
    if limit is not None:
      images = [images[i] for i in evaluate_lib._subset(len(images), limit)]
    for image in images:
      key = (pair['identity'], image['expression_name'])
      if key not in meshes:
        meshes[key] = obj.read_obj_vertices(layout.mesh_path(root, *key))
      record = {
        'camera': image['camera'],
        'vertices': meshes[key],
        'expression': image['expression'],
        'identity': np.int32(index[pair['identity']]),
        'hair_identity': np.int32(index[pair['hair_from']]),
      }
      decoded, raw_alpha = {}, {}
      for name in ('path', 'haired_path', 'bald_path'):
        png = pathlib.Path(image[name]).read_bytes()
        decoded[name] = transforms.decode_image_and_alpha(
          png, image[name], expected_size=data.resolution, resolution=model.output_resolution
        )
        raw_alpha[name] = transforms.decode_image_and_alpha(
          png, image[name], expected_size=data.resolution, resolution=model.neural_resolution
        )[1]
      haired_mask, bald_mask = raw_alpha['haired_path'] > HAIR_REGION_THRESHOLD, raw_alpha['bald_path'] > 0.05
      region = (haired_mask & (raw_alpha['bald_path'] < HAIR_REGION_THRESHOLD)).astype(np.float32)
      core = (haired_mask & ~_dilate(bald_mask)).astype(np.float32)  # a pixel away from any head coverage
      image_swap, alpha_swap = decoded['path']
      swap.append(record | {'hair': np.int32(1), 'image': image_swap, 'alpha': alpha_swap, 'hair_region': region})
      swap[-1]['hair_core'] = core
      # where the ground truth shows hair: B's hair on A (swap) / A's own hair (bald: should now be background)
      bald_full = decoded['bald_path'][1] < HAIR_REGION_THRESHOLD
      swap[-1]['hair_image'] = ((alpha_swap > HAIR_REGION_THRESHOLD) & bald_full).astype(np.float32)
      if (key, image['view']) not in seen:  # A's bald truth once per camera, however many hairs A borrows
        seen.add((key, image['view']))
        image_bald, alpha_bald = decoded['bald_path']
        bald.append(
          record
          | {
            'hair': np.int32(0),
            'hair_identity': record['identity'],
            'image': image_bald,
            'alpha': alpha_bald,
            'hair_region': region,
            'hair_core': core,
            'hair_image': ((decoded['haired_path'][1] > HAIR_REGION_THRESHOLD) & bald_full).astype(np.float32),
          }
        )
  if not swap:
    raise ValueError(f'no hair-swap ground truth at views {sorted(views)} in {root}')
  return {'hair_swap': _batches(swap), 'bald': _batches(bald)}


class HairEvaluator:
  """Renders the hair sets with a generator and scores them (module docstring).

  Args:
    config: the run config (``load_hair_sets``).
    codes: ``batch -> {'t', 'h'}`` (``Networks.codes``).
    render: ``(generator, inputs, key) -> {'image', 'image_alpha', ...}`` (``Networks.render``).
    nets: LPIPS backbones (``evaluate.Evaluator``).
    limit: records per pair (None: all).
  """

  def __init__(self, config, codes: Callable, render: Callable, *, nets: Sequence[str] = ('alex',), limit=None):
    self.sets = load_hair_sets(config, limit=limit)
    self._lpips = evaluate_lib.lpips_nets(config, nets)
    holder = _SwapCodes(codes)

    @functools.partial(jax.jit, static_argnums=0)
    def score(graphdef, state, batch, lpips_params):
      inputs = steps_lib.generator_inputs(holder, batch, jax.random.key(0), 0.0)
      out = render(nnx.merge(graphdef, state), inputs, jax.random.key(0))
      figures = evaluate_lib.image_figures(out['image'], batch['image'], batch['alpha'], lpips_params)
      figures['hair/l1'] = image_metrics.l1(out['image'], batch['image'], mask=batch['hair_image'])
      figures['hair/psnr'] = image_metrics.psnr(out['image'], batch['image'], mask=batch['hair_image'])
      for name, key in (('hair', 'hair_region'), ('core', 'hair_core')):
        region = batch[key]
        figures[f'{name}_opacity'] = (out['image_alpha'] * region).sum(axis=(1, 2, 3))
        figures[f'{name}_pixels'] = region.sum(axis=(1, 2, 3))
      return out['image'], figures

    self._score = score

  def __call__(
    self, generator: nnx.Module, sets: dict[str, list[dict]] | None = None
  ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scores ``generator`` on ``sets`` (default ``self.sets``).

    Returns:
      ``(summary, renders)``: ``summary`` maps ``'<set>/<region>/<metric>'`` to the mean over
      the set, ``'<set>/count'`` to its size and ``'<set>/hair_alpha'`` to the opacity over
      all its hair-region pixels; ``renders`` maps a set to its (n, R, R, 3) renders.
    """
    graphdef, state = nnx.split(generator)
    summary, renders = {}, {}
    for name, batches in (self.sets if sets is None else sets).items():
      per_image: dict[str, list] = {}
      images = []
      for batch in batches:
        fields = {key: jnp.asarray(value) for key, value in batch.items() if key != 'valid'}
        image, figures = self._score(graphdef, state, fields, self._lpips)
        for key, value in jax.device_get(figures).items():
          per_image.setdefault(key, []).append(np.asarray(value)[batch['valid']])
        images.append(np.asarray(image)[batch['valid']])
      summary[f'{name}/count'] = float(sum(int(b['valid'].sum()) for b in batches))
      for region, key in (('hair', 'hair_alpha'), ('core', 'hair_alpha_core')):  # over all the set's pixels
        opacity = np.concatenate(per_image.pop(f'{region}_opacity')).sum()
        pixels = np.concatenate(per_image.pop(f'{region}_pixels')).sum()
        summary[f'{name}/{key}'] = float(opacity / pixels) if pixels > 0 else float('nan')
        summary[f'{name}/{region}_pixels'] = float(pixels)
      for key, values in per_image.items():
        summary[f'{name}/{key}'] = float(np.concatenate(values).mean())
      renders[name] = np.concatenate(images)
    return summary, renders


def haired_alpha(evaluator: HairEvaluator, generator: nnx.Module) -> float:
  """Opacity over the hair region of *haired* renders at the bald set's records (expected ~1)."""
  haired = [batch | {'hair': np.ones_like(batch['hair'])} for batch in evaluator.sets['bald']]
  return evaluator(generator, {'haired': haired})[0]['haired/hair_alpha']


def evaluate_hair(workdir: str | pathlib.Path, build_models: Callable, *, step: int | None = None, nets=('alex',)):
  """The hair protocols on a run's EMA generator; writes ``<workdir>/eval/hair_step_<n>/metrics.json`` and grids.

  Returns:
    ``{'step', 'summary', 'rows', 'outputs'}`` (``rows``: ``evaluate.TABLE_HEADER`` rows).

  Raises:
    FileNotFoundError: if the work directory has no config or checkpoint.
    ValueError: as ``load_hair_sets``.
  """
  workdir = pathlib.Path(workdir)
  networks = build_models(checkpoint.read_config(workdir))
  generator, _, config, step = checkpoint.restore_generator_ema(workdir, lambda _: networks, step)
  evaluator = HairEvaluator(config, networks.codes, networks.render, nets=nets)
  summary, renders = evaluator(generator)
  summary['haired/hair_alpha'] = haired_alpha(evaluator, generator)
  images = {k: v for k, v in summary.items() if 'hair' not in k.split('/')[1]}  # the image figures only
  rows = evaluate_lib.table_rows(workdir.name, step, images)
  out = workdir / 'eval' / f'hair_step_{step}'
  out.mkdir(parents=True, exist_ok=True)
  (out / 'metrics.json').write_text(json.dumps({'step': step, 'stage': int(config.model.stage), **summary}, indent=2))
  for name, batches in evaluator.sets.items():
    targets = np.concatenate([b['image'][b['valid']] for b in batches])[:8]
    grid = np.concatenate([np.concatenate(list(targets), axis=1), np.concatenate(list(renders[name][:8]), axis=1)])
    Image.fromarray(np.clip(np.rint((grid + 1) * 127.5), 0, 255).astype(np.uint8)).save(out / f'{name}.png')
  return {'step': step, 'summary': summary, 'rows': rows, 'outputs': out}
