"""Held-out evaluation (paper Table 3 protocol on our data): L1, PSNR, SSIM and LPIPS of renders.

Legend: ``b`` batch, ``n`` evaluated records, ``R`` output resolution (``model.output_resolution``).

Protocol (paper §4.2, Table 3: "generated results vs ground truth, same identities"): the
generator re-renders training identities with the ground truth's own mesh, camera and
identity codes, and each render is compared with the dataset image (composited on white,
resized to ``R`` with Lanczos, [-1, 1]). Up to three sets of records:

* ``novel_view``: the trained expressions at ``config.data.held_out_views``, cameras the
  run never trained on;
* ``novel_expression``: the expressions of ``config.data.held_out_expressions`` (never
  trained on) at every camera; only when the config holds expressions out;
* ``seen_view`` (on request, ``--seen_views``): trained expressions at cameras the run
  trained on. Beside ``novel_view`` it tells under-fitting (both low) from poor
  generalisation to new cameras (``seen_view`` much higher).

Two regions per set: ``image`` (the whole image on white, as the paper) and ``foreground``
(every pixel weighted by the ground truth's alpha: head and hair, no background).

Figures per image, then averaged over the set: ``l1`` (mean absolute error in [-1, 1]
units), ``psnr`` (dB, data range 2), ``ssim`` (Wang et al. 2004, as scikit-image),
``lpips_alex`` and ``lpips_vgg`` (LPIPS v0.1; AlexNet is the common default for reported
LPIPS and the one used during training). See ``head360_jax.metrics``.

Usage::

  python -m head360_jax.evaluate --workdir runs/demo/run          # latest checkpoint, EMA generator
  python -m head360_jax.evaluate --workdir runs/demo/stage2 --protocol hair_swap   # head360_jax/hair_eval.py

writes ``<workdir>/eval/step_<n>/metrics.json``, a ground-truth-over-render grid per identity
(``comparison_<identity>.png``) and all identities in ``comparison.png``, appends a Markdown
table row per set and region to ``<workdir>/eval/results.md`` and prints them. The same
figures on a fixed subset are written to TensorBoard during training (``train.eval_every``).
"""

import argparse
import dataclasses
import functools
import json
import pathlib
import shutil
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from PIL import Image

from head360_jax import checkpoint, compilation_cache, xla_options
from head360_jax.data import sources, transforms
from head360_jax.metrics import image as image_metrics
from head360_jax.metrics import lpips as lpips_lib
from head360_jax.training import steps as steps_lib

EVAL_BATCH = 4
REGIONS = ('image', 'foreground')
BATCH_KEYS = ('camera', 'vertices', 'expression', 'identity', 'hair', 'image', 'alpha')
TABLE_HEADER = (
  '| run | step | set | region | n | L1 | PSNR (dB) | SSIM | LPIPS-Alex | LPIPS-VGG |\n'
  '|---|---:|---|---|---:|---:|---:|---:|---:|---:|'
)


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Ground truth of one evaluation set, decoded once and kept in memory.

  Attributes:
    name: ``'novel_view'``, ``'novel_expression'`` or ``'seen_view'``.
    batches: dicts of numpy arrays of ``EVAL_BATCH`` records (``BATCH_KEYS``; ``image``
      (b, R, R, 3) in [-1, 1], ``alpha`` (b, R, R, 1) in [0, 1]); the last batch is padded by
      repeating its first record, and ``valid`` (b,) bool marks the real ones.
    identity, view: (n,) int32 per record, in record order; ``expression_name``: n names.
  """

  name: str
  batches: list[dict]
  identity: np.ndarray
  view: np.ndarray
  expression_name: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.identity)


def _subset(count: int, limit: int | None) -> np.ndarray:
  """``limit`` indices spread evenly over ``range(count)`` (all when ``limit`` is None or larger)."""
  if limit is None or limit >= count:
    return np.arange(count)
  return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def _load_set(name: str, source: sources.SynHeadSource, resolution: int, limit: int | None) -> EvalSet:
  records = [source[int(i)] for i in _subset(len(source), limit)]
  fields = []
  for record in records:
    image, alpha = transforms.decode_image_and_alpha(
      record['png'], record['path'], expected_size=source.resolution, resolution=resolution
    )
    fields.append({key: record[key] for key in BATCH_KEYS[:5]} | {'image': image, 'alpha': alpha})
  batches = []
  for start in range(0, len(fields), EVAL_BATCH):
    chunk = fields[start : start + EVAL_BATCH]
    valid = np.arange(EVAL_BATCH) < len(chunk)
    chunk = chunk + [chunk[0]] * (EVAL_BATCH - len(chunk))
    batch = {key: np.stack([np.asarray(f[key]) for f in chunk]) for key in BATCH_KEYS}
    batches.append(batch | {'valid': valid})
  return EvalSet(
    name=name,
    batches=batches,
    identity=np.asarray([r['identity'] for r in records], np.int32),
    view=np.asarray([r['view'] for r in records], np.int32),
    expression_name=tuple(r['expression_name'] for r in records),
  )


def load_eval_sets(
  config: ml_collections.ConfigDict, *, limit: int | None = None, seen_views: Sequence[int] = ()
) -> dict[str, EvalSet]:
  """The ground truth of the protocol's sets (module docstring) for a run config.

  Args:
    config: reads ``data.root``, ``data.resolution``, ``data.held_out_views``,
      ``data.held_out_expressions`` (optional) and ``model.output_resolution``.
    limit: at most this many records per set, spread evenly over it (the fixed subset
      used during training); None takes all.
    seen_views: camera views (0..71) the run trained on, scored as the ``seen_view`` set.

  Returns:
    ``{'novel_view': EvalSet, 'novel_expression': EvalSet, 'seen_view': EvalSet}``, each
    present when the config holds views (resp. expressions) out or ``seen_views`` is given.

  Raises:
    ValueError: if the config holds out neither views nor expressions, a ``seen_views``
      entry is a held-out view, or no image of a requested set exists.
  """
  views = tuple(config.data.get('held_out_views', ()))
  expressions = tuple(config.data.get('held_out_expressions', ()))
  if not views and not expressions:
    raise ValueError('config.data holds out no views and no expressions: nothing to evaluate on')
  if overlap := sorted(set(seen_views) & set(views)):
    raise ValueError(f'seen_views {overlap} are held-out views of this run, not seen in training')
  data, resolution = config.data, config.model.output_resolution
  sets = {}
  if views:
    source = sources.SynHeadSource(data.root, data.resolution, views=views, exclude_expressions=expressions)
    sets['novel_view'] = _load_set('novel_view', source, resolution, limit)
  if expressions:
    source = sources.SynHeadSource(data.root, data.resolution, expressions=expressions)
    sets['novel_expression'] = _load_set('novel_expression', source, resolution, limit)
  if seen_views:
    source = sources.SynHeadSource(data.root, data.resolution, views=tuple(seen_views), exclude_expressions=expressions)
    sets['seen_view'] = _load_set('seen_view', source, resolution, limit)
  return sets


def image_figures(
  render: jax.Array, target: jax.Array, alpha: jax.Array, lpips_params: dict[str, lpips_lib.LpipsParams]
) -> dict[str, jax.Array]:
  """Per-image figures of renders against ground truth, for both regions.

  Args:
    render, target: (b, R, R, 3) float32 in [-1, 1].
    alpha: (b, R, R, 1) float32 in [0, 1], the ground truth's foreground.
    lpips_params: ``{net: load_lpips(net)}`` for the LPIPS figures wanted ('alex', 'vgg').

  Returns:
    ``{'<region>/<metric>': (b,)}`` with metric in ``l1``, ``psnr``, ``ssim``, ``lpips_<net>``
    (``head360_jax.metrics``; the foreground region weights pixels by ``alpha``).

  Raises:
    ValueError: if the shapes disagree (``metrics.image``, ``metrics.lpips``).
  """
  figures = {}
  for region, mask in (('image', None), ('foreground', alpha)):
    figures[f'{region}/l1'] = image_metrics.l1(render, target, mask=mask)
    figures[f'{region}/psnr'] = image_metrics.psnr(render, target, mask=mask)
    figures[f'{region}/ssim'] = image_metrics.ssim(render, target, mask=mask)
    for net, params in lpips_params.items():
      figures[f'{region}/lpips_{net}'] = lpips_lib.lpips(params, render, target, mask=mask)
  return figures


def lpips_nets(config: ml_collections.ConfigDict, nets: Sequence[str]) -> dict[str, lpips_lib.LpipsParams]:
  """``{net: weights}`` of the LPIPS backbones that fit ``model.output_resolution`` (others skipped, warned).

  Raises:
    RuntimeError: if LPIPS weights cannot be fetched.
  """
  params = {}
  for net in nets:
    min_size = lpips_lib.BACKBONES[net].min_size
    if config.model.output_resolution < min_size:
      logging.warning('LPIPS-%s skipped: it needs images of at least %d px', net, min_size)
      continue
    params[net] = lpips_lib.load_lpips(net)
  return params


class Evaluator:
  """Renders the evaluation sets with a generator and scores them (module docstring).

  Args:
    config: the run config (see ``load_eval_sets``).
    codes: ``batch -> {'t', 'h'}`` (``Networks.codes`` / ``Models.codes``).
    render: ``(generator, inputs, key) -> {'image', ...}`` (``Networks.render``).
    nets: LPIPS backbones to report (weights are fetched on first use, ``metrics.lpips``); a net
      whose ``min_size`` exceeds the output resolution is skipped with a warning.
    limit: records per set (None: all).
    seed: key of the generator's noise (fixed, so figures repeat).
    seen_views: training views to score as the ``seen_view`` set (``load_eval_sets``).

  Raises:
    ValueError: as ``load_eval_sets``.
    RuntimeError: if LPIPS weights cannot be fetched.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    codes: Callable[[dict], dict],
    render: Callable,
    *,
    nets: Sequence[str] = ('alex', 'vgg'),
    limit: int | None = None,
    seed: int = 0,
    seen_views: Sequence[int] = (),
  ):
    self.sets = load_eval_sets(config, limit=limit, seen_views=seen_views)
    self._lpips = lpips_nets(config, nets)
    self._key = jax.random.key(seed)
    holder = _Codes(codes)

    @functools.partial(jax.jit, static_argnums=0)
    def score(graphdef, state, batch, lpips_params, key):
      inputs = steps_lib.generator_inputs(holder, batch, key, 0.0)
      image = render(nnx.merge(graphdef, state), inputs, key)['image']
      return image, image_figures(image, batch['image'], batch['alpha'], lpips_params)

    self._score = score

  def __call__(self, generator: nnx.Module, *, keep_renders: bool = False) -> tuple[dict[str, float], dict]:
    """Scores ``generator`` on every set.

    Returns:
      ``(summary, renders)``: ``summary`` maps ``'<set>/<region>/<metric>'`` to the mean
      over the set's records (and ``'<set>/count'``); ``renders`` maps a set name to its
      (n, R, R, 3) float32 renders when ``keep_renders`` (else empty).
    """
    graphdef, state = nnx.split(generator)
    summary, renders = {}, {}
    for name, eval_set in self.sets.items():
      per_image: dict[str, list] = {}
      images = []
      for batch in eval_set.batches:
        fields = {key: jnp.asarray(batch[key]) for key in BATCH_KEYS}
        image, figures = self._score(graphdef, state, fields, self._lpips, self._key)
        valid = batch['valid']
        for key, value in jax.device_get(figures).items():
          per_image.setdefault(key, []).append(np.asarray(value)[valid])
        if keep_renders:
          images.append(np.asarray(image)[valid])
      summary[f'{name}/count'] = float(len(eval_set))
      for key, values in per_image.items():
        summary[f'{name}/{key}'] = float(np.concatenate(values).mean())
      if keep_renders:
        renders[name] = np.concatenate(images)
    return summary, renders


@dataclasses.dataclass(frozen=True)
class _Codes:
  """What ``steps.generator_inputs`` reads of a ``Models``: the codes function (no style mixing)."""

  codes: Callable[[dict], dict]
  mixing_layers: dict = dataclasses.field(default_factory=dict)


def comparison_grid(eval_set: EvalSet, renders: np.ndarray, identity: int, *, columns: int = 8) -> np.ndarray:
  """Ground truth (top row) over renders (bottom row) of one identity: (2·R, c·R, 3) uint8.

  Takes the identity's first expression in the set and up to ``columns`` of its records in
  view order.

  Raises:
    ValueError: if the set has no record of ``identity``.
  """
  rows = np.flatnonzero(eval_set.identity == identity)
  if rows.size == 0:
    raise ValueError(f'identity {identity} has no record in set {eval_set.name}')
  first = eval_set.expression_name[rows[0]]
  rows = [r for r in rows if eval_set.expression_name[r] == first]
  rows = sorted(rows, key=lambda r: eval_set.view[r])[:columns]
  targets = np.concatenate([_batch_image(eval_set, r) for r in rows], axis=1)
  rendered = np.concatenate(list(renders[rows]), axis=1)
  grid = np.concatenate([targets, rendered], axis=0)
  return np.clip(np.rint((grid + 1) * 127.5), 0, 255).astype(np.uint8)


def _batch_image(eval_set: EvalSet, record: int) -> np.ndarray:
  batch, row = divmod(record, EVAL_BATCH)
  return eval_set.batches[batch]['image'][row]


def table_rows(run: str, step: int, summary: dict[str, float]) -> list[str]:
  """Markdown table rows (``TABLE_HEADER``) of a summary, one per set and region."""
  metrics = (('l1', '.4f'), ('psnr', '.2f'), ('ssim', '.4f'), ('lpips_alex', '.4f'), ('lpips_vgg', '.4f'))
  rows = []
  for name in sorted({key.split('/')[0] for key in summary}):
    for region in REGIONS:
      cells = [format(summary[k], f) if (k := f'{name}/{region}/{m}') in summary else '-' for m, f in metrics]
      rows.append(
        f'| {run} | {step} | {name} | {region} | {int(summary[f"{name}/count"])} | ' + ' | '.join(cells) + ' |'
      )
  return rows


def evaluate_run(
  workdir: str | pathlib.Path,
  build_models: Callable,
  *,
  step: int | None = None,
  nets: Sequence[str] = ('alex', 'vgg'),
  compare_step0: bool = True,
  write: bool = True,
  seen_views: Sequence[int] = (),
) -> dict:
  """Evaluates a run's EMA generator (and, with ``compare_step0``, its networks at step 0).

  Args:
    workdir: a training work directory (``config.json`` + checkpoints).
    build_models: the model builder the run was trained with.
    step: checkpoint step (None: the latest).
    nets: LPIPS backbones.
    compare_step0: also score the freshly initialised networks (``build_models`` is
      deterministic in the config), for the "lower than step 0" L1 figure.
    write: write ``metrics.json``, the grids and ``results.md`` under ``<workdir>/eval``.
    seen_views: training views to score as well (the ``seen_view`` set).

  Returns:
    ``{'step', 'trained': summary, 'step0': summary or None, 'rows': table rows,
    'outputs': folder or None}``.

  Raises:
    FileNotFoundError: if the work directory has no config or checkpoint.
    ValueError: if the run's config holds nothing out (``load_eval_sets``).
  """
  from head360_jax.training import refine_loop  # local: it imports the training loop

  workdir = pathlib.Path(workdir)
  own = checkpoint.read_config(workdir)
  if refine_loop.is_refine_run(own):
    return _evaluate_refine_run(workdir, own, build_models, step=step, nets=nets, write=write, seen_views=seen_views)
  networks = build_models(own)  # built once: the restore and step 0 share them
  generator, _, config, step = checkpoint.restore_generator_ema(workdir, lambda _: networks, step)
  evaluator = Evaluator(config, networks.codes, networks.render, nets=nets, seen_views=seen_views)
  trained, renders = evaluator(generator, keep_renders=write)
  initial = evaluator(networks.generator)[0] if compare_step0 else None
  rows = table_rows(workdir.name, step, trained)
  return _write_results(workdir, evaluator, step, trained, initial, rows, renders if write else None)


def _write_results(workdir, evaluator, step, trained, initial, rows, renders) -> dict:
  """Writes ``metrics.json``, the grids and ``results.md`` (when ``renders`` is given); the result dict."""
  write = renders is not None
  result = {'step': step, 'trained': trained, 'step0': initial, 'rows': rows, 'outputs': None}
  if write:
    out = workdir / 'eval' / f'step_{step}'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'metrics.json').write_text(json.dumps({'step': step, 'trained': trained, 'step0': initial}, indent=2))
    first = next(iter(evaluator.sets))
    eval_set = evaluator.sets[first]
    grids = [comparison_grid(eval_set, renders[first], int(i)) for i in np.unique(eval_set.identity)]
    for identity, grid in zip(np.unique(eval_set.identity), grids, strict=True):
      Image.fromarray(grid).save(out / f'comparison_{int(identity)}.png', optimize=True)
    width = max(g.shape[1] for g in grids)
    padded = [np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0)), constant_values=255) for g in grids]
    Image.fromarray(np.concatenate(padded, axis=0)).save(out / 'comparison.png', optimize=True)
    table = workdir / 'eval' / 'results.md'
    text = table.read_text() if table.is_file() else TABLE_HEADER + '\n'
    table.write_text(text + '\n'.join(rows) + '\n')
    result['outputs'] = out
  return result


def _evaluate_refine_run(workdir, own, build_models, *, step, nets, write, seen_views) -> dict:
  """Paper Table 3's "no refine" and "full" rows: the base run's EMA generator without and with the RefineNet.

  ``step`` is the RefineNet's checkpoint; the base run (``train.init_from``) is read at its latest.
  The result's ``trained`` is the "full" summary and ``step0`` the "no refine" one.
  """
  from head360_jax.training import refine_loop

  base = refine_loop.base_workdir(workdir, own)
  refiner, refine_step = refine_loop.restore_refiner(workdir, step)
  networks = build_models(checkpoint.read_config(base))
  generator, _, config, base_step = checkpoint.restore_generator_ema(base, lambda _: networks)
  graphdef, params = nnx.split(refiner, nnx.Param)

  def refined(generator, inputs, key):
    out = dict(networks.render(generator, inputs, key))
    out['image'] = nnx.merge(graphdef, params)(out['image'])
    return out

  plain = Evaluator(config, networks.codes, networks.render, nets=nets, seen_views=seen_views)
  full = Evaluator(config, networks.codes, refined, nets=nets, seen_views=seen_views)
  without, _ = plain(generator)
  trained, renders = full(generator, keep_renders=write)
  rows = table_rows(f'{base.name} (no refine)', base_step, without)
  rows += table_rows(f'{workdir.name} (full, RefineNet step {refine_step})', base_step, trained)
  return _write_results(workdir, full, refine_step, trained, without, rows, renders if write else None) | {
    'baseline': 'no refine'
  }


def _back_view(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """``--protocol back_view``: face rates from behind and in front, renders vs ground truth; JSON in ``eval/``."""
  from head360_jax import inference
  from head360_jax.metrics import back_view

  try:
    renderer = inference.HeadRenderer(args.workdir, step=args.step)
    identities = range(len(renderer.model.identity_codes))
    result = back_view.evaluate_back_view(renderer, list(identities))
  except (FileNotFoundError, ValueError) as error:
    parser.exit(1, f'evaluate: {error}\n')
  out = pathlib.Path(args.workdir) / 'eval' / f'back_view_step_{renderer.step}.json'
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + '\n')
  print(
    f'step {renderer.step} (EMA), {len(identities)} identities, detector threshold 0.5: faces detected from behind '
    f'(yaw 150-210 deg) in {100 * result["render/back_rate"]:.0f} % of renders vs '
    f'{100 * result["truth/back_rate"]:.0f} % of the ground truth (excess {100 * result["back_excess"]:+.0f} '
    f'points); from the front (yaw -30-30 deg) {100 * result["render/front_rate"]:.0f} % vs '
    f'{100 * result["truth/front_rate"]:.0f} %; {out}'
  )


def main(argv=None) -> None:
  from head360_jax.training.build import build_models

  parser = argparse.ArgumentParser(description='Held-out L1/PSNR/SSIM/LPIPS of a run (paper Table 3 protocol).')
  parser.add_argument('--workdir', required=True, help='training work directory')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--nets', default='alex,vgg', help='LPIPS backbones, comma-separated (alex, vgg)')
  parser.add_argument(
    '--seen_views', default='', help='training views (0..71, comma-separated) to score too, e.g. 0,8,16,24'
  )
  parser.add_argument(
    '--protocol',
    default='table3',
    choices=('table3', 'hair_swap', 'back_view'),
    help="table3: held-out views/expressions (default); hair_swap: swaps and bald renders vs the builder's "
    'swap ground truth (head360_jax/hair_eval.py; needs build_dataset --swap-pairs); back_view: faces detected '
    'on renders from behind, beside the ground truth (head360_jax/metrics/back_view.py)',
  )
  parser.add_argument('--grid_to', default=None, help='also copy comparison.png into this folder (e.g. the renders)')
  parser.add_argument('--no-step0', dest='step0', action='store_false', help='skip scoring the step-0 networks')
  parser.add_argument(
    '--no-compilation-cache', dest='compilation_cache', action='store_false', help='no persistent XLA cache'
  )
  args = parser.parse_args(argv)
  xla_options.apply()
  compilation_cache.enable(args.compilation_cache)
  checkpoint.quiet_orbax_logs()
  nets = tuple(filter(None, args.nets.split(',')))
  if args.protocol == 'hair_swap':
    from head360_jax import hair_eval

    try:
      result = hair_eval.evaluate_hair(args.workdir, build_models, step=args.step, nets=nets)
    except (FileNotFoundError, ValueError) as error:
      parser.exit(1, f'evaluate: {error}\n')
    summary = result['summary']
    print(TABLE_HEADER)
    print('\n'.join(result['rows']))
    print(
      f'step {result["step"]} (EMA) hair-region opacity: bald render {summary["bald/hair_alpha"]:.3f} '
      f"(away from the head's edge {summary['bald/hair_alpha_core']:.3f}), haired render "
      f'{summary["haired/hair_alpha"]:.3f}; swap PSNR {summary["hair_swap/image/psnr"]:.2f} dB '
      f'(hair region {summary["hair_swap/hair/psnr"]:.2f} dB, L1 {summary["hair_swap/hair/l1"]:.4f})'
    )
    print(f'figures and grids in {result["outputs"]}')
    return
  if args.protocol == 'back_view':
    _back_view(parser, args)
    return
  seen_views = tuple(int(v) for v in filter(None, args.seen_views.split(',')))
  result = evaluate_run(
    args.workdir, build_models, step=args.step, nets=nets, compare_step0=args.step0, seen_views=seen_views
  )
  print(TABLE_HEADER)
  print('\n'.join(result['rows']))
  trained, initial = result['trained'], result['step0']
  first = next(key.split('/')[0] for key in trained)
  line = (
    f'held-out {first} (whole image on white): PSNR {trained[f"{first}/image/psnr"]:.2f} dB, '
    f'SSIM {trained[f"{first}/image/ssim"]:.4f}'
  )
  if f'{first}/image/lpips_alex' in trained:
    line += f', LPIPS-Alex {trained[f"{first}/image/lpips_alex"]:.4f}'
  line += f'; L1 {trained[f"{first}/image/l1"]:.4f}'
  if initial is not None:
    l1_0 = initial[f'{first}/image/l1']
    baseline = result.get('baseline', 'step 0')
    line += f' ({baseline}: {l1_0:.4f}, {100 * (1 - trained[f"{first}/image/l1"] / l1_0):.1f} % lower)'
    if f'{first}/image/lpips_alex' in initial:
      line += f'; LPIPS-Alex {baseline}: {initial[f"{first}/image/lpips_alex"]:.4f}'
  print(f'step {result["step"]} (EMA) {line}')
  if result['outputs'] is not None:
    grids = f'{result["outputs"]}'
    if args.grid_to:
      copy = pathlib.Path(args.grid_to) / f'held_out_comparison_step_{result["step"]}.png'
      copy.parent.mkdir(parents=True, exist_ok=True)
      shutil.copyfile(result['outputs'] / 'comparison.png', copy)
      grids += f' (comparison.png also as {copy})'
    print(f'figures and comparison grids in {grids}')


if __name__ == '__main__':
  main()
