"""Live Link Face CSV takes: round trip, name mapping, frame rate, and one clear error per kind of bad file."""

import numpy as np
import pytest

from head360_jax.geometry import arkit, livelink


def _take(n=45, fps=30):
  rng = np.random.default_rng(0)
  weights = rng.uniform(0, 1, (n, arkit.NUM_BLENDSHAPES)).astype(np.float32)
  head = rng.uniform(-0.3, 0.3, (n, 3)).astype(np.float32)
  return weights, head


@pytest.mark.parametrize('fps', [30, 60])
def test_round_trip_names_and_frame_rate(tmp_path, fps):
  weights, head = _take(n=2 * fps, fps=fps)
  path = tmp_path / 'take.csv'
  livelink.write_take(path, weights, head, fps=fps)
  header = path.read_text().splitlines()[0].split(',')
  assert header[:3] == ['Timecode', 'BlendShapeCount', 'EyeBlinkLeft'] and header[-1] == 'RightEyeRoll'
  take = livelink.read_take(path)
  assert len(take) == 2 * fps and take.fps == fps
  np.testing.assert_allclose(take.weights, weights, atol=1e-6)  # PascalCase columns -> our camelCase order
  np.testing.assert_allclose(take.head, head, atol=1e-6)


def test_short_take_uses_the_default_rate_and_columns_may_be_reordered(tmp_path):
  weights, head = _take(n=5)
  path = tmp_path / 'take.csv'
  livelink.write_take(path, weights, head)
  rows = [line.split(',') for line in path.read_text().splitlines()]
  order = [0, 1, *reversed(range(2, len(rows[0])))]
  path.write_text('\n'.join(','.join(row[i] for i in order) for row in rows) + '\n')
  take = livelink.read_take(path, default_fps=24)
  assert take.fps == 24
  np.testing.assert_allclose(take.weights, weights, atol=1e-6)


def _corrupt(tmp_path, edit):
  weights, head = _take(n=3)
  path = tmp_path / 'bad.csv'
  livelink.write_take(path, weights, head)
  lines = [line.split(',') for line in path.read_text().splitlines()]
  edit(lines)
  path.write_text('\n'.join(','.join(line) for line in lines) + '\n')
  return path


@pytest.mark.parametrize(
  'edit, message',
  [
    (lambda rows: rows.__setitem__(0, [*rows[0][:5], 'Sneeze', *rows[0][6:]]), r'line 1, column 6: unknown column'),
    (lambda rows: [row.pop(10) for row in rows], r'line 1: missing blendshape column\(s\) '),
    (lambda rows: rows[2].__setitem__(7, 'abc'), r'line 3, column 8 \(\w+\): .abc. is not a number'),
    (lambda rows: rows[1].__setitem__(4, 'nan'), r'line 2, column 5 \(\w+\): .nan. is not finite'),
    (lambda rows: rows[3].__setitem__(0, '12-00'), r'line 4, column 1: timecode'),
    (lambda rows: rows[2].pop(), r'line 3: 62 cells, the header has 63'),
    (lambda rows: rows.__setitem__(0, ['Time', *rows[0][1:]]), r'line 1, column 1: expected "Timecode"'),
  ],
)
def test_bad_files_give_one_error_naming_file_line_and_column(tmp_path, edit, message):
  path = _corrupt(tmp_path, edit)
  with pytest.raises(livelink.TakeError, match=message) as error:
    livelink.read_take(path)
  assert str(path) in str(error.value)


def test_empty_files(tmp_path):
  (tmp_path / 'empty.csv').write_text('')
  with pytest.raises(livelink.TakeError, match='empty.csv: empty file'):
    livelink.read_take(tmp_path / 'empty.csv')
  weights, _ = _take(n=1)
  livelink.write_take(tmp_path / 'header.csv', weights)
  (tmp_path / 'header.csv').write_text((tmp_path / 'header.csv').read_text().splitlines()[0] + '\n')
  with pytest.raises(livelink.TakeError, match='header.csv: a header but no frames'):
    livelink.read_take(tmp_path / 'header.csv')


def test_head_labels_turn_the_camera_the_other_way():
  labels = livelink.head_labels(np.array([[0.0, 0.0, 0.0], [np.radians(20), np.radians(-10), 0.3]], np.float32))
  from head360_jax import inference

  np.testing.assert_allclose(labels[0], inference.orbit_labels(1)[0], atol=1e-6)
  np.testing.assert_allclose(labels[1], inference.orbit_labels(1, 10.0, start_yaw_deg=-20.0)[0], atol=1e-5)
