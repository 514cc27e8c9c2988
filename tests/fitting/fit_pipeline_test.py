"""fit.py end to end at toy size: a real photo -> fitted head -> orbit and ARKit animation; clean failures."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from head360_jax import assets, checkpoint, inference
from head360_jax.data import build_dataset
from head360_jax.fitting import appearance, fitted, hairstyle, pipeline, shape, tuning
from head360_jax.geometry import arkit
from head360_jax.training import state as state_lib
from head360_jax.training.build import build_models

# Minutes on 2 cores: started first (tests/conftest.py); toy-size programs compile without most optimisations.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('fast_compilation')]

RES = 32
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module', autouse=True)
def tiny_hairstyle_set():
  """The hairstyle classifier's rendered training set at toy size (the default one takes ~2 minutes)."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(hairstyle, 'TRAINING_IDENTITIES_PER_STYLE', 1)
    patch.setattr(hairstyle, 'TRAINING_EXPRESSIONS', ('neutral',))
    patch.setattr(hairstyle, 'TRAINING_RESOLUTION', 32)
    yield


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A 2-identity anny dataset at 32² and a toy run's step-0 checkpoint (the fit does not need a good model)."""
  root = tmp_path_factory.mktemp('anny32')
  build_dataset.build(root, rig='anny', num_identities=2, expressions=['neutral'], resolution=RES, progress=False)
  config = tiny.get_config()
  model = config.model
  model.texture_resolution = model.plane_resolution = 32
  model.neural_resolution, model.output_resolution, model.sr_channels = 16, RES, (16,)
  model.num_coarse = model.num_fine = 6
  config.data.update(root=str(root), resolution=RES, held_out_views=())
  run = tmp_path_factory.mktemp('run')
  checkpoint.write_config(run, config)
  _, state = state_lib.create(config, build_models(config))
  with checkpoint.Checkpointer(run) as checkpointer:
    checkpointer.save(0, state, wait=True)
  return run


def test_fit_photo_then_orbit_and_animate(workdir, tmp_path):
  options = pipeline.FitOptions(
    crop_size=256,
    shape_identities=20,
    shape_rank=20,
    shape_options=shape.ShapeFitOptions(pose_steps=20, steps=100),
    # L1 only: VGG's backward pass, compiled without optimisations, took 4-24 s per step here; the LPIPS
    # terms are tested in fit_appearance_test and lpips_test
    appearance_options=appearance.AppearanceOptions(face_steps=4, hair_steps=4, warmup_steps=2, lpips_weight=0.0),
    view_yaws_deg=(30.0,),
    view_pitches_deg=(0.0,),
    tuning_options=tuning.TuningOptions(
      steps=3, locality_samples=2, warmup_steps=1, learning_rate=1e-2, lpips_weight=0.0, locality_lpips=False
    ),
    orbit_views=4,
  )
  renderer = inference.HeadRenderer(workdir)
  out = tmp_path / 'man'
  photo = assets.shared_data_dir() / 'faces' / 'man.jpg'
  result = pipeline.fit_image(photo, renderer, out, options, progress=False, log=lambda _: None)

  assert result.rms_iod < 0.05  # the bound on real photos (measured 1.7 % on this one)
  assert np.isfinite([result.psnr_face, result.ssim_face, result.lpips_face, result.psnr_face_start]).all()
  assert result.views == 2 and result.tuning_steps == 3 and isinstance(result.start_identity, int)
  expected = {'fitted.npz', 'aligned.png', 'targets.png', 'overlay.png', 'before_after.png', 'orbit.png', 'orbit.gif'}
  assert expected | {'fit_log.csv', 'metrics.json'} == {p.name for p in out.iterdir()}
  metrics = json.loads((out / 'metrics.json').read_text())
  assert metrics['rms_iod'] == pytest.approx(result.rms_iod) and set(metrics['timings']) >= {'detect', 'shape_fit'}
  assert (tmp_path / 'man').is_dir() and not list(tmp_path.glob('.man-*'))  # the temporary folder is gone
  log = (out / 'fit_log.csv').read_text().splitlines()
  assert log[0] == 'stage,step,loss,smoothed' and len(log) == 1 + 20 + 100 + 8 + 3
  before_after = np.asarray(Image.open(out / 'before_after.png'))
  assert before_after.shape == (256, 3 * 256, 3)  # photo | start | fit at the crop's resolution

  head = fitted.load(out / 'fitted.npz')
  assert head.texture.shape == (32, 32, renderer.generator.config.texture_channels)
  np.testing.assert_allclose(head.s, result.head.s)
  # Pivotal tuning's weights are stored (decoder, SR, static planes here) and change the render.
  assert head.tuned and {tuning._part_of(path) for path in head.tuned} == {'decoder', 'superres', 'static_synthesis'}
  for path, value in head.tuned.items():
    np.testing.assert_array_equal(value, result.head.tuned[path])
  labels = inference.orbit_labels(2)
  photo_expression = fitted.render(renderer, head, head.b, labels)
  open_jaw = fitted.render(renderer, head, arkit.parse('jawOpen=1'), labels)
  assert photo_expression.shape == (2, RES, RES, 3) and np.isfinite(photo_expression).all()
  assert np.abs(open_jaw - photo_expression).max() > 0.01  # ARKit weights drive the fitted head
  # The fitted texture is what renders: a different texture gives a different image.
  other = dataclasses.replace(head, texture=np.zeros_like(head.texture))
  assert np.abs(fitted.render(renderer, other, head.b, labels) - photo_expression).max() > 0.01
  untuned = dataclasses.replace(head, tuned={})
  assert np.abs(fitted.render(renderer, untuned, head.b, labels) - photo_expression).max() > 1e-3


def test_fitted_file_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='fit.py'):
    fitted.load(tmp_path / 'missing.npz')
  (tmp_path / 'bad.npz').write_bytes(b'not a zip')
  with pytest.raises(ValueError, match='bad.npz'):
    fitted.load(tmp_path / 'bad.npz')
  np.savez(tmp_path / 'other.npz', x=np.zeros(3))
  with pytest.raises(ValueError, match='lacks'):
    fitted.load(tmp_path / 'other.npz')


# The two ways fit.py turns a bad photo into one line (ImageError, NoFaceError); the other bad images
# (tiny, truncated, missing) raise the same ImageError in landmarks_test.
@pytest.mark.parametrize('kind', ['not_an_image', 'no_face'])
def test_bad_photo_gives_one_error_and_no_output(kind, tmp_path):
  path = tmp_path / 'photo.png'
  if kind == 'not_an_image':
    path.write_text('hello')
  else:
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(path)
  out = tmp_path / 'out'
  proc = subprocess.run(
    [sys.executable, 'fit.py', '--workdir', str(tmp_path / 'no_run'), '--image', str(path), '--out', str(out)],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=False,
  )
  assert proc.returncode == 1
  message = proc.stderr.strip().splitlines()[-1]
  assert message.startswith('fit.py: ') and 'photo.png' in message, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not out.exists() and not list(tmp_path.glob('.out-*'))
