"""Render jobs: runs x heads x (expressions x cameras | ARKit takes), resumable, with a manifest and a gallery.

Legend: ``n`` frames of an item, ``v`` mesh vertices, ``R`` image side.

A job file (JSON, or YAML by suffix) lists what to render::

  runs:                       # checkpoints; a path alone = its latest step
    - runs/demo/run
    - {workdir: runs/demo/stage2, steps: [500, 1000], name: stage2}
  heads: [identity:0-3, seed:7, fitted:runs/demo/fitted/man/fitted.npz]
  expressions:                # name -> ARKit weights (geometry/arkit.parse); default {neutral: ''}
    neutral: ''
    smile: mouthSmileLeft=1,mouthSmileRight=1
  cameras:                    # an orbit (views > 1) or one view; default one 24-view orbit
    - {name: orbit, views: 24, pitch: 10}
    - {name: front, yaw: 0, pitch: 0}
  takes: [take.csv]           # Live Link Face takes (geometry/livelink): each head animated by each
  psi: 1.0                    # truncation; hair_from: a training identity's hair; bald: no hair planes
  mp4: false                  # also an MP4 of each orbit (takes always get one)

Relative paths are relative to the job file's folder. Items are the product of runs and
their steps, heads, and expressions x cameras plus takes. Item ``run/step_N/head/what``
goes to that folder of the output: ``frame_000.png ...`` (and ``orbit.gif``) for an orbit,
``image.png`` for one view, ``take.mp4``, ``take.gif`` and ``frame_00000.png ...`` for a
take, and ``item.json`` last, which marks it finished. Every file is written atomically,
so a job killed at any point and run again renders only the items without a valid
``item.json`` (its files present with the recorded SHA-256) and ends with the same
``manifest.json`` and the same files. ``index.html`` shows every output with its
parameters; orbits turn when dragged.
"""

import dataclasses
import functools
import hashlib
import html
import json
import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from head360_jax import assets, inference

MANIFEST = 'manifest.json'
GALLERY = 'index.html'
ITEM_RECORD = 'item.json'
FORMAT = 1


class JobError(ValueError):
  """A job file that cannot be run: the message names the file and the entry."""


@dataclasses.dataclass(frozen=True)
class Camera:
  """A camera path: an orbit of ``views`` views starting at ``yaw`` (degrees) at ``pitch``, or one view."""

  name: str
  views: int = 1
  yaw: float = 0.0
  pitch: float = 0.0


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """A run's work directory and the step to load (None: the latest)."""

  name: str
  workdir: pathlib.Path
  step: int | None


@dataclasses.dataclass(frozen=True)
class Item:
  """One output of a job: a head of a checkpoint under an expression and a camera, or animated by a take."""

  checkpoint: Checkpoint
  head: str  # 'identity:3', 'seed:7' or 'fitted:<path>'
  expression: tuple[str, str] | None = None  # (name, ARKit text)
  camera: Camera | None = None
  take: pathlib.Path | None = None

  def what(self) -> str:
    """The item's folder name below its head: ``<expression>-<camera>`` or ``take-<csv stem>``."""
    if self.take is not None:
      return f'take-{_slug(self.take.stem)}'
    return f'{_slug(self.expression[0])}-{_slug(self.camera.name)}'

  def head_name(self) -> str:
    """``identity003``, ``seed0007`` or ``fitted-<folder of the fitted.npz>``."""
    kind, _, value = self.head.partition(':')
    if kind == 'fitted':
      return f'fitted-{_slug(pathlib.Path(value).parent.name or pathlib.Path(value).stem)}'
    return f'{kind}{int(value):03d}' if kind == 'identity' else f'{kind}{int(value):04d}'


@dataclasses.dataclass(frozen=True)
class Job:
  """A parsed job file (``load``)."""

  path: pathlib.Path
  spec: dict  # the job as read, with defaults filled in (goes into the manifest)
  items: tuple[Item, ...]

  @property
  def psi(self) -> float:
    return self.spec['psi']

  @property
  def hair_from(self) -> int | None:
    return self.spec['hair_from']

  @property
  def bald(self) -> bool:
    return self.spec['bald']

  @property
  def mp4(self) -> bool:
    return self.spec['mp4']


def _slug(text: str) -> str:
  slug = ''.join(c if c.isalnum() or c in '._' else '_' for c in text.strip())
  return slug or '_'


def _read_spec(path: pathlib.Path) -> dict:
  try:
    text = path.read_text()
  except OSError as error:
    raise JobError(f'{path}: cannot read the job file ({error.strerror})') from None
  try:
    if path.suffix in ('.yaml', '.yml'):
      import yaml

      spec = yaml.safe_load(text)
    else:
      spec = json.loads(text)
  except Exception as error:  # yaml.YAMLError / json.JSONDecodeError: both name the line
    raise JobError(f'{path}: not valid {"YAML" if path.suffix in (".yaml", ".yml") else "JSON"}: {error}') from None
  if not isinstance(spec, dict):
    raise JobError(f'{path}: a job file must be a mapping with "runs" and "heads"')
  return spec


def _heads(path: pathlib.Path, entries) -> list[str]:
  if not isinstance(entries, list) or not entries:
    raise JobError(f'{path}: heads: expected a non-empty list like [identity:0-3, seed:7, fitted:path/fitted.npz]')
  heads = []
  for entry in entries:
    kind, sep, value = str(entry).partition(':')
    if not sep or kind not in ('identity', 'seed', 'fitted') or not value.strip():
      raise JobError(f'{path}: heads: {entry!r}: expected identity:<i or range>, seed:<s or range> or fitted:<path>')
    if kind == 'fitted':
      heads.append(f'fitted:{(path.parent / value.strip()).resolve()}')
    else:
      try:
        heads.extend(f'{kind}:{i}' for i in inference.parse_ranges(value))
      except ValueError as error:
        raise JobError(f'{path}: heads: {entry!r}: {error}') from None
  return heads


def _checkpoints(path: pathlib.Path, entries) -> list[Checkpoint]:
  if not isinstance(entries, list) or not entries:
    raise JobError(f'{path}: runs: expected a non-empty list of work directories or {{workdir, steps, name}}')
  checkpoints = []
  for entry in entries:
    entry = {'workdir': entry} if isinstance(entry, str) else entry
    if not isinstance(entry, dict) or 'workdir' not in entry or set(entry) - {'workdir', 'steps', 'step', 'name'}:
      raise JobError(f'{path}: runs: {entry!r}: expected a path or {{workdir, steps (or step), name}}')
    workdir = (path.parent / str(entry['workdir'])).resolve()
    steps = entry.get('steps', [entry.get('step')])
    steps = steps if isinstance(steps, list) else [steps]
    if not all(step is None or (isinstance(step, int) and step >= 0) for step in steps):
      raise JobError(f'{path}: runs: {entry["workdir"]}: steps must be non-negative integers, got {steps}')
    name = _slug(str(entry.get('name', workdir.name)))
    checkpoints.extend(Checkpoint(name, workdir, step) for step in steps)
  names = {}
  for checkpoint in checkpoints:
    if names.setdefault(checkpoint.name, checkpoint.workdir) != checkpoint.workdir:
      raise JobError(f'{path}: runs: two work directories are both named {checkpoint.name!r}: give each a "name"')
  return checkpoints


def _cameras(path: pathlib.Path, entries) -> list[Camera]:
  if not isinstance(entries, list) or not entries:
    raise JobError(f'{path}: cameras: expected a non-empty list of {{name, views, yaw, pitch}}')
  cameras = []
  for entry in entries:
    if not isinstance(entry, dict) or 'name' not in entry or set(entry) - {'name', 'views', 'yaw', 'pitch'}:
      raise JobError(f'{path}: cameras: {entry!r}: expected {{name, views (1 = one view), yaw, pitch}} (degrees)')
    try:
      camera = Camera(str(entry['name']), int(entry.get('views', 1)), float(entry.get('yaw', 0)),
                      float(entry.get('pitch', 0)))  # fmt: skip
    except (TypeError, ValueError):
      raise JobError(f'{path}: cameras: {entry!r}: views must be an integer, yaw and pitch numbers') from None
    if camera.views < 1 or not -90 <= camera.pitch <= 90:
      raise JobError(f'{path}: cameras: {camera.name}: views must be >= 1 and pitch in [-90, 90]')
    cameras.append(camera)
  if len({_slug(c.name) for c in cameras}) != len(cameras):
    raise JobError(f'{path}: cameras: names must be distinct')
  return cameras


def load(path: str | os.PathLike) -> Job:
  """Reads and checks a job file (module docstring) without touching any run.

  Raises:
    JobError: naming the file and the entry, for an unreadable file, bad JSON/YAML, an
      unknown key, a malformed head, run, camera or expression, or a missing take.
  """
  from head360_jax.geometry import arkit

  path = pathlib.Path(path)
  spec = _read_spec(path)
  known = {'runs', 'heads', 'expressions', 'cameras', 'takes', 'psi', 'hair_from', 'bald', 'mp4'}
  if unknown := sorted(set(spec) - known):
    raise JobError(f'{path}: unknown key(s) {unknown}; known: {sorted(known)}')
  for key in ('runs', 'heads'):
    if key not in spec:
      raise JobError(f'{path}: missing "{key}"')
  checkpoints = _checkpoints(path, spec['runs'])
  heads = _heads(path, spec['heads'])
  expressions = spec.get('expressions', {'neutral': ''})
  if isinstance(expressions, list):
    expressions = {(text or 'neutral').replace('=', '').replace(',', '_'): text for text in expressions}
  if not isinstance(expressions, dict):
    raise JobError(f'{path}: expressions: expected a mapping name -> ARKit weights, or a list of weights')
  for name, text in expressions.items():
    try:
      arkit.parse(text or '')
    except ValueError as error:
      raise JobError(f'{path}: expressions: {name}: {error}') from None
  takes = spec.get('takes', [])
  if not isinstance(takes, list):
    raise JobError(f'{path}: takes: expected a list of Live Link Face CSV files')
  takes = [(path.parent / str(take)).resolve() for take in takes]
  for take in takes:
    if not take.is_file():
      raise JobError(f'{path}: takes: {take} not found')
  cameras = _cameras(path, spec.get('cameras', [{'name': 'orbit', 'views': 24}]))
  try:
    psi = float(spec.get('psi', 1.0))
    hair_from = None if spec.get('hair_from') is None else int(spec['hair_from'])
  except (TypeError, ValueError):
    raise JobError(f'{path}: psi must be a number and hair_from an identity index') from None
  items = []
  for checkpoint in checkpoints:
    for head in heads:
      items += [Item(checkpoint, head, (str(name), text or ''), camera) for name, text in expressions.items()
                for camera in cameras]  # fmt: skip
      items += [Item(checkpoint, head, take=take) for take in takes]
  full = {
    'runs': [{'name': c.name, 'workdir': str(c.workdir), 'step': c.step} for c in checkpoints],
    'heads': heads,
    'expressions': {str(k): v or '' for k, v in expressions.items()},
    'cameras': [dataclasses.asdict(c) for c in cameras],
    'takes': [str(t) for t in takes],
    'psi': psi,
    'hair_from': hair_from,
    'bald': bool(spec.get('bald', False)),
    'mp4': bool(spec.get('mp4', False)),
  }
  return Job(path, full, tuple(items))


def sha256(path: pathlib.Path) -> str:
  """Hex SHA-256 of a file's bytes."""
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def resolve_step(checkpoint: Checkpoint) -> int:
  """The generator step a checkpoint entry loads: its own, or the run's latest.

  For a RefineNet run the step is its base run's (the RefineNet is its latest,
  ``inference.HeadRenderer``).

  Raises:
    FileNotFoundError: if the run has no config or no checkpoints, or not the asked step.
  """
  from head360_jax import checkpoint as checkpoint_lib
  from head360_jax.training import refine_loop

  workdir = checkpoint.workdir
  config = checkpoint_lib.read_config(workdir)  # FileNotFoundError names config.json
  if refine_loop.is_refine_run(config):
    workdir = refine_loop.base_workdir(workdir, config)
  with checkpoint_lib.Checkpointer(workdir, max_to_keep=None, read_only=True) as checkpointer:
    steps = list(checkpointer.all_steps())
  if not steps:
    raise FileNotFoundError(f'{checkpoint.workdir}: no checkpoint')
  if checkpoint.step is None:
    return max(steps)
  if checkpoint.step not in steps:
    raise FileNotFoundError(f'{checkpoint.workdir}: no checkpoint at step {checkpoint.step} (have {sorted(steps)})')
  return checkpoint.step


def _record(job: Job, item: Item, step: int, config_sha256: str) -> dict:
  """The item's manifest entry without its files (what a finished item must match to be skipped)."""
  kind, _, value = item.head.partition(':')
  record = {
    'id': f'{item.checkpoint.name}/step_{step:06d}/{item.head_name()}/{item.what()}',
    'run': item.checkpoint.name,
    'workdir': str(item.checkpoint.workdir),
    'step': step,
    'config_sha256': config_sha256,
    'head': item.head,
    'seed': int(value) if kind == 'seed' else None,
    'psi': job.psi,
    'hair_from': job.hair_from,
    'bald': job.bald,
  }
  if item.take is not None:
    record['take'] = {'file': str(item.take), 'sha256': _take(item.take)[1]}
  else:
    record['expression'] = {'name': item.expression[0], 'arkit': item.expression[1]}
    record['camera'] = dataclasses.asdict(item.camera)
  return record


def _finished(folder: pathlib.Path, expected: dict) -> dict | None:
  """The item's stored record if it is finished with exactly these inputs and intact files, else None."""
  try:
    stored = json.loads((folder / ITEM_RECORD).read_text())
  except (OSError, ValueError):
    return None
  files = stored.get('files')
  inputs = {key: value for key, value in stored.items() if key not in ('files', 'frames', 'fps')}
  if inputs != expected or not isinstance(files, dict):
    return None
  root = folder.parents[3]
  for name, digest in files.items():
    file = root / name
    if not file.is_file() or sha256(file) != digest:
      return None
  return stored


def _write_png(path: pathlib.Path, image: np.ndarray) -> None:
  import imageio.v3 as iio

  assets.atomic_write_bytes(path, iio.imwrite('<bytes>', image, extension='.png'))


def _write_video(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
  tmp = path.with_name(f'.{path.stem}.partial{path.suffix}')
  inference.write_video(tmp, frames, fps=fps)
  os.replace(tmp, path)


class _Heads:
  """The (s, t, h) codes or fitted heads of one checkpoint, loaded once each."""

  def __init__(self, renderer):
    self.renderer = renderer
    self._fitted = {}

  def codes(self, head: str):
    kind, _, value = head.partition(':')
    if kind == 'identity':
      return self.renderer.identity(int(value))
    if kind == 'seed':
      return self.renderer.random_head(int(value))
    from head360_jax.fitting import fitted

    if value not in self._fitted:
      self._fitted[value] = fitted.load(value)
    return self._fitted[value]


def _render_frames(renderer, heads: _Heads, job: Job, item: Item) -> tuple[np.ndarray, float | None]:
  """uint8 frames (n, R, R, 3) of an item, and a take's frame rate."""
  from head360_jax.fitting import fitted
  from head360_jax.geometry import arkit, bilinear, livelink

  fps = None
  if item.take is not None:
    take = _take(item.take)[0]
    labels, weights, fps = livelink.head_labels(take.head), take.weights, take.fps
  else:
    camera = item.camera
    labels = inference.orbit_labels(camera.views, camera.pitch, start_yaw_deg=camera.yaw)
    weights = arkit.parse(item.expression[1])
  head = heads.codes(item.head)
  hair = None if job.hair_from is None else renderer.identity(job.hair_from)[2]
  if item.head.startswith('fitted:'):
    w_hair = None if hair is None else renderer.styles(hair, hair)['hair'][0]
    images = fitted.render(renderer, head, weights, labels, bald=job.bald, w_hair=w_hair)
  else:
    s, t, h = head
    ws = renderer.styles(t, h if hair is None else hair, job.psi)
    images = renderer.render_styles(ws, bilinear.vertices(renderer.model, s, weights), labels, bald=job.bald)
  return inference.to_uint8(images), fps


def _write_item(folder: pathlib.Path, root: pathlib.Path, job: Job, item: Item, frames, fps) -> dict:
  """Writes an item's files (atomically); returns ``{relative path: sha256}``."""
  for stale in folder.glob('.*'):  # temporaries of a killed run
    stale.unlink()
  written = []
  if item.take is not None:
    for i, frame in enumerate(frames):
      _write_png(folder / f'frame_{i:05d}.png', frame)
      written.append(folder / f'frame_{i:05d}.png')
    for suffix in ('.mp4', '.gif'):
      _write_video(folder / f'take{suffix}', frames, round(fps))
      written.append(folder / f'take{suffix}')
  elif len(frames) == 1:
    _write_png(folder / 'image.png', frames[0])
    written.append(folder / 'image.png')
  else:
    for i, frame in enumerate(frames):
      _write_png(folder / f'frame_{i:03d}.png', frame)
      written.append(folder / f'frame_{i:03d}.png')
    for suffix in ('.gif', '.mp4') if job.mp4 else ('.gif',):
      _write_video(folder / f'orbit{suffix}', frames, 24)
      written.append(folder / f'orbit{suffix}')
  return {str(path.relative_to(root)): sha256(path) for path in written}


def run(
  job: Job,
  output: str | os.PathLike,
  *,
  batch_size: int = 8,
  refine: bool = True,
  make_renderer: Callable | None = None,
  progress: bool = True,
  after_item: Callable[[dict], None] | None = None,
) -> dict:
  """Renders every unfinished item of ``job`` into ``output``; writes ``manifest.json`` and ``index.html``.

  Checkpoints whose items are all finished are not loaded. Images are rendered
  ``batch_size`` cameras (or take frames) per call.

  Args:
    job: from ``load``.
    output: the output folder (created).
    batch_size: cameras per generator call.
    refine: apply a RefineNet run's RefineNet (``inference.HeadRenderer``).
    make_renderer: ``(workdir, step, batch_size, refine) -> HeadRenderer`` (tests).
    progress: a tqdm bar over all frames of the job.
    after_item: called with each newly finished item's record (tests, logging).

  Returns:
    The manifest: ``{'format', 'job', 'items': [record, ...]}`` in job order, each record
    with its inputs, ``step``, ``config_sha256``, ``frames`` and ``files`` (path -> SHA-256).

  Raises:
    FileNotFoundError: for a run without config or checkpoint, or a missing step.
    ValueError: for a head the run does not have (identity out of range, fitted with another run).
  """
  from tqdm import tqdm

  root = pathlib.Path(output)
  root.mkdir(parents=True, exist_ok=True)
  make_renderer = make_renderer or (
    lambda workdir, step, batch, refine: inference.HeadRenderer(workdir, step=step, chunk=batch, refine=refine)
  )
  by_checkpoint: dict[Checkpoint, list[Item]] = {}
  for item in job.items:
    by_checkpoint.setdefault(item.checkpoint, []).append(item)
  plans = []  # (checkpoint, step, [(item, expected, folder, finished)])
  total = 0
  for checkpoint, items in by_checkpoint.items():
    step = resolve_step(checkpoint)
    config_sha256 = sha256(checkpoint.workdir / 'config.json')
    entries = []
    for item in items:
      expected = _record(job, item, step, config_sha256)
      folder = root / expected['id']
      entries.append((item, expected, folder, _finished(folder, expected)))
      total += _frame_count(item)
    plans.append((checkpoint, step, entries))
  records = {}
  with tqdm(total=total, desc='render job', unit='frame', disable=not progress) as bar:
    for checkpoint, step, entries in plans:
      pending = [entry for entry in entries if entry[3] is None]
      for _, expected, _, finished in entries:
        if finished is not None:
          records[expected['id']] = finished
          bar.update(finished['frames'])
      if not pending:
        continue
      renderer = make_renderer(checkpoint.workdir, step, batch_size, refine)
      heads = _Heads(renderer)
      for item, expected, folder, _ in pending:
        frames, fps = _render_frames(renderer, heads, job, item)
        folder.mkdir(parents=True, exist_ok=True)
        files = _write_item(folder, root, job, item, frames, fps)
        record = {**expected, 'frames': len(frames), 'fps': fps, 'files': files}
        assets.atomic_write_bytes(folder / ITEM_RECORD, (json.dumps(record, indent=1) + '\n').encode())
        records[expected['id']] = record
        bar.update(len(frames))
        if after_item is not None:
          after_item(record)
  manifest = {
    'format': FORMAT,
    'job': job.spec,
    'items': [records[expected['id']] for _, _, entries in plans for _, expected, _, _ in entries],
  }
  assets.atomic_write_bytes(root / MANIFEST, (json.dumps(manifest, indent=1) + '\n').encode())
  assets.atomic_write_bytes(root / GALLERY, gallery_html(manifest).encode())
  return manifest


def _frame_count(item: Item) -> int:
  return item.camera.views if item.take is None else len(_take(item.take)[0])


def _take(path: pathlib.Path):
  """``(livelink.Take, SHA-256)`` of a take file, read once per job however many heads and runs use it."""
  stat = path.stat()
  return _read_take(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_take(path: pathlib.Path, mtime_ns: int, size: int):
  del mtime_ns, size  # cache key only: an edited file is read again
  from head360_jax.geometry import livelink

  return livelink.read_take(path), sha256(path)


_SCRIPT = """
for (const img of document.querySelectorAll('img.orbit')) {
  const frames = JSON.parse(img.dataset.frames);
  let index = 0, x0 = null;
  for (const src of frames) new Image().src = src;  // preload: dragging never waits
  img.addEventListener('pointerdown', e => { x0 = e.clientX; img.setPointerCapture(e.pointerId); e.preventDefault(); });
  img.addEventListener('pointermove', e => {
    if (x0 === null) return;
    const steps = Math.trunc((e.clientX - x0) / 6);
    if (steps) { index = ((index - steps) % frames.length + frames.length) % frames.length; img.src = frames[index];
                 x0 = e.clientX; }
  });
  for (const type of ['pointerup', 'pointercancel']) img.addEventListener(type, () => { x0 = null; });
}
window.addEventListener('load', () => {
  const images = [...document.querySelectorAll('main img')];
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h2 { margin-top: 1.5em; border-bottom: 1px solid #ccc; }
main section { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: .5em; }
figure img { width: 192px; height: 192px; image-rendering: pixelated; display: block; }
img.orbit { cursor: ew-resize; touch-action: none; }
figcaption { font-size: 12px; max-width: 192px; overflow-wrap: anywhere; }
"""


def gallery_html(manifest: dict) -> str:
  """A static page (no server) of every item in ``manifest``, grouped by run, step and head.

  Orbits are one image whose frame follows horizontal drags; takes show their GIF (and
  link the MP4); captions give the item's parameters. After loading, ``<body>`` carries
  ``data-images`` and ``data-loaded`` (images that decoded), which the tests read.
  """
  groups: dict[str, list[dict]] = {}
  for record in manifest['items']:
    groups.setdefault(record['id'].rsplit('/', 1)[0], []).append(record)
  parts = [
    '<!doctype html><html><head><meta charset="utf-8"><title>head360-jax renders</title>',
    f'<style>{_STYLE}</style></head><body><h1>head360-jax renders</h1>',
    f'<p>{len(manifest["items"])} items; parameters per item below each image; drag an orbit to turn it.</p><main>',
  ]
  for group, records in groups.items():
    parts.append(f'<h2>{html.escape(group)}</h2><section>')
    for record in records:
      files = sorted(record['files'])
      pngs = [f for f in files if f.endswith('.png')]
      if 'take' in record:
        gif = next(f for f in files if f.endswith('.gif'))
        mp4 = next(f for f in files if f.endswith('.mp4'))
        image = f'<img src="{html.escape(gif)}" alt="take">'
        what = (
          f'take {html.escape(pathlib.Path(record["take"]["file"]).name)}, {record["frames"]} frames at '
          f'{record["fps"]:g} fps, <a href="{html.escape(mp4)}">MP4</a>'
        )
      else:
        camera, expression = record['camera'], record['expression']
        if len(pngs) > 1:
          frames = html.escape(json.dumps(pngs))
          first = html.escape(pngs[0])
          image = f'<img class="orbit" src="{first}" data-frames="{frames}" alt="orbit" draggable="false">'
        else:
          image = f'<img src="{html.escape(pngs[0])}" alt="view">'
        what = (
          f'{html.escape(camera["name"])}: {camera["views"]} view(s), yaw {camera["yaw"]:g}°, pitch '
          f'{camera["pitch"]:g}°; expression {html.escape(expression["name"])}'
          + (f' <code>{html.escape(expression["arkit"])}</code>' if expression['arkit'] else '')
        )
      extras = [f'psi {record["psi"]:g}']
      extras += [f'hair of identity {record["hair_from"]}'] if record['hair_from'] is not None else []
      extras += ['bald'] if record['bald'] else []
      caption = f'<b>{html.escape(record["head"].rsplit("/", 1)[-1])}</b><br>{what}<br>{", ".join(extras)}'
      parts.append(f'<figure>{image}<figcaption>{caption}</figcaption></figure>')
    parts.append('</section>')
  parts.append(f'</main><script>{_SCRIPT}</script></body></html>\n')
  return ''.join(parts)


def summary(manifest: dict, rendered: Sequence[dict]) -> str:
  """One line: items, how many were rendered now and how many were already finished."""
  n = len(manifest['items'])
  return f'{n} item(s): {len(rendered)} rendered, {n - len(rendered)} already finished'
