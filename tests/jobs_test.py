"""Render jobs (``head360_jax/jobs.py``, ``render.py --job``): errors, outputs, SIGKILL and rerun, the gallery.

A toy run's step-0 checkpoint (``render_run``) renders 16² images; what is checked is the
bookkeeping: which items are rendered, the files, the manifest and the gallery page.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from head360_jax import inference, jobs
from head360_jax.geometry import arkit, livelink

REPO = pathlib.Path(__file__).resolve().parents[1]
BATCH = 4
HEADS = ['identity:0', 'seed:3', 'seed:4']
TAKE_FRAMES = 30
# per head: 2 expressions x (orbit of 4 + one view) + one take
ITEMS_PER_HEAD = 5
FRAMES_PER_HEAD = 2 * (4 + 1) + TAKE_FRAMES


def _write_job(path: pathlib.Path, run: pathlib.Path, take: pathlib.Path) -> None:
  path.write_text(
    '\n'.join(
      [
        f'runs: [{run}]',
        f'heads: [{", ".join(HEADS)}]',
        'expressions: {neutral: "", jaw: "jawOpen=1"}',
        'cameras: [{name: orbit, views: 4, pitch: 10}, {name: front, yaw: 0, pitch: 10}]',
        f'takes: [{take.name}]',
      ]
    )
    + '\n'
  )


@pytest.fixture(scope='module')
def toy(toy_run):
  run, root = toy_run, toy_run.parent
  weights = np.zeros((TAKE_FRAMES, arkit.NUM_BLENDSHAPES), np.float32)
  weights[:, arkit.index('jawOpen')] = np.linspace(0.0, 1.0, TAKE_FRAMES)
  livelink.write_take(root / 'take.csv', weights, fps=30)
  _write_job(root / 'job.yaml', run, root / 'take.csv')
  renderer = inference.HeadRenderer(run, chunk=BATCH)
  job = jobs.load(root / 'job.yaml')
  rendered = []
  manifest = jobs.run(job, root / 'out', make_renderer=lambda *_: renderer, progress=False, after_item=rendered.append)
  return root, job, renderer, manifest, rendered


@pytest.mark.parametrize(
  'text, match',
  [
    ('runs: [r]\nheads: [identity:0]\ncolour: red\n', r"unknown key\(s\) \['colour'\]"),
    ('runs: [r]\n', 'missing "heads"'),
    ('runs: [r]\nheads: [person:0]\n', "'person:0'"),
    ('runs: [r]\nheads: [identity:a-b]\n', 'identity:a-b'),
    ('runs: [r]\nheads: [seed:1]\nexpressions: {smile: mouthSmile=1}\n', 'expressions: smile'),
    ('runs: [r]\nheads: [seed:1]\ntakes: [missing.csv]\n', 'missing.csv not found'),
    ('runs: [r]\nheads: [seed:1]\ncameras: [{name: o, views: 0}]\n', 'views must be >= 1'),
    ('runs: [r\nheads: [seed:1]\n', 'not valid YAML'),
  ],
)
def test_bad_job_files_name_the_file_and_the_entry(tmp_path, text, match):
  path = tmp_path / 'job.yaml'
  path.write_text(text)
  with pytest.raises(jobs.JobError, match=match) as error:
    jobs.load(path)
  assert str(path) in str(error.value)


def test_job_writes_every_item_with_its_parameters_and_a_rerun_renders_nothing(toy):
  root, job, renderer, manifest, rendered = toy
  assert len(job.items) == len(manifest['items']) == len(rendered) == len(HEADS) * ITEMS_PER_HEAD
  assert sum(record['frames'] for record in manifest['items']) == len(HEADS) * FRAMES_PER_HEAD
  out = root / 'out'
  assert json.loads((out / jobs.MANIFEST).read_text()) == manifest
  for record in manifest['items']:
    assert record['step'] == 0 and record['config_sha256'] == jobs.sha256(root / 'run' / 'config.json')
    for name, digest in record['files'].items():
      assert jobs.sha256(out / name) == digest
  by_id = {record['id']: record for record in manifest['items']}
  orbit = by_id['run/step_000000/identity000/jaw-orbit']
  assert orbit['camera'] == {'name': 'orbit', 'views': 4, 'yaw': 0.0, 'pitch': 10.0}
  assert orbit['expression'] == {'name': 'jaw', 'arkit': 'jawOpen=1'}
  assert by_id['run/step_000000/seed0003/neutral-front']['seed'] == 3

  # the orbit's first view is the one-view camera (same yaw and pitch), and both are the renderer's image
  front = iio.imread(out / 'run/step_000000/identity000/jaw-front/image.png')
  first = iio.imread(out / 'run/step_000000/identity000/jaw-orbit/frame_000.png')
  s, t, h = renderer.identity(0)
  labels = inference.orbit_labels(1, 10.0)
  expected = inference.to_uint8(renderer.render(s, t, h, arkit.parse('jawOpen=1'), labels))[0]
  assert front.shape == (16, 16, 3)
  assert np.abs(front.astype(int) - expected).max() <= 1
  assert np.abs(first.astype(int) - expected).max() <= 1
  # the take: 30 frames at 30 fps whose mouth opens, so the last frame differs from the first
  take = by_id['run/step_000000/identity000/take-take']
  assert take['frames'] == TAKE_FRAMES and take['fps'] == 30
  take_dir = out / 'run/step_000000/identity000/take-take'
  assert imageio_ffmpeg.count_frames_and_secs(str(take_dir / 'take.mp4')) == (TAKE_FRAMES, 1.0)
  assert not np.array_equal(iio.imread(take_dir / 'frame_00000.png'), iio.imread(take_dir / 'frame_00029.png'))

  again = []
  assert jobs.run(job, out, make_renderer=None, progress=False, after_item=again.append) == manifest
  assert again == []  # every item finished: not even the run is loaded (make_renderer=None would load it)
  (out / orbit['id'] / 'frame_002.png').write_bytes(b'not a png')  # a damaged file: that item is redone
  assert jobs.run(job, out, make_renderer=lambda *_: renderer, progress=False, after_item=again.append) == manifest
  assert [record['id'] for record in again] == [orbit['id']]


def test_a_job_killed_mid_way_and_rerun_gives_the_same_manifest_and_files(toy, tmp_path):
  root, job, renderer, manifest, _ = toy
  out = tmp_path / 'out'
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='1', JAX_PLATFORMS='cpu')
  command = [sys.executable, str(REPO / 'render.py'), '--job', str(root / 'job.yaml'), '--output', str(out)]
  command += [f'--batch_size={BATCH}', '--nocompilation_cache']
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.monotonic() + 300
  while not list(out.glob('*/*/*/*/item.json')):
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    assert time.monotonic() < deadline, 'no item finished in 300 s'
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)
  process.wait()
  process.stderr.close()
  finished = {str(path.parent.relative_to(out)) for path in out.glob('*/*/*/*/item.json')}
  assert 1 <= len(finished) < len(job.items)
  assert not (out / jobs.MANIFEST).exists()

  rendered = []
  again = jobs.run(job, out, make_renderer=lambda *_: renderer, progress=False, after_item=rendered.append)
  assert sorted(record['id'] for record in rendered) == sorted({r['id'] for r in manifest['items']} - finished)
  assert again == manifest  # same inputs, steps, hashes and files (SHA-256 of every PNG, GIF and MP4)
  names = {name for record in manifest['items'] for name in record['files']}
  for name in names:
    assert (out / name).read_bytes() == (root / 'out' / name).read_bytes(), name
  assert not [path for path in out.rglob('.*')], 'temporaries of the killed run are left'


def test_gallery_loads_every_image_in_headless_chromium(toy, tmp_path):
  chromium = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
  if chromium is None:
    pytest.skip('no Chromium on this machine (.ci/run installs Debian chromium where apt-get works)')
  root, _, _, manifest, _ = toy
  page = (root / 'out' / jobs.GALLERY).as_uri()
  flags = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', f'--user-data-dir={tmp_path / "profile"}', '--virtual-time-budget=10000',
  ]  # fmt: skip
  dom = subprocess.run([chromium, *flags, '--dump-dom', page], capture_output=True, text=True, timeout=120).stdout
  assert f'data-images="{len(manifest["items"])}"' in dom
  assert f'data-loaded="{len(manifest["items"])}"' in dom  # every orbit frame, still and take GIF decoded
  shot = tmp_path / 'gallery.png'
  subprocess.run(
    [chromium, *flags, '--window-size=1000,800', f'--screenshot={shot}', page], capture_output=True, timeout=120
  )
  pixels = iio.imread(shot)[..., :3].astype(int)
  # the renders: 192 px tiles of non-background colour (the page is #fafafa with white cards)
  assert (np.abs(pixels - 250).max(axis=-1) > 40).mean() > 0.05


def test_the_example_job_in_docs_parses():
  job = jobs.load(REPO / 'docs' / 'example_job.yaml')
  assert len(job.items) == 6 * 3 * 2  # heads x expressions x cameras
  assert job.items[0].checkpoint.workdir == REPO / 'runs' / 'demo' / 'run'
