"""Live Link Face CSV takes: per-frame ARKit blendshape weights and head rotation (paper §3.4: ARKit driving).

Legend: ``n`` frames, ``52`` ARKit blendshapes (``arkit.ARKIT_NAMES`` order).

Epic's Live Link Face app records a take as a CSV with the header
``Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll`` and one row per
frame. Timecodes are ``HH:MM:SS:FF.fff`` (``FF`` the frame within the second, ``.fff`` its
sub-frame fraction). Names map to our ARKit names case-insensitively (``EyeBlinkLeft`` ->
``eyeBlinkLeft``). Head angles are read as radians (yaw about the head's up axis, positive
to the subject's left; pitch positive looking down; roll about the view axis); the eye
angles are not used (the model has no eye rotation).

The frame rate comes from the timecodes: the largest ``FF`` plus one, rounded to the usual
rates (24, 25, 30, 50, 60), or ``default_fps`` when the take is shorter than a second.
"""

import csv
import dataclasses
import pathlib
import re

import numpy as np

from head360_jax.geometry import arkit

HEAD_COLUMNS = ('HeadYaw', 'HeadPitch', 'HeadRoll')
EYE_COLUMNS = tuple(f'{side}Eye{angle}' for side in ('Left', 'Right') for angle in ('Yaw', 'Pitch', 'Roll'))
_TIMECODE = re.compile(r'^(\d+):(\d{2}):(\d{2})[:;](\d+)(?:\.(\d+))?$')
_RATES = (24, 25, 30, 50, 60)


class TakeError(ValueError):
  """A Live Link Face CSV that cannot be read; the message names the file, line and column."""


@dataclasses.dataclass(frozen=True)
class Take:
  """One recorded take.

  Attributes:
    weights: (n, 52) float32 ARKit weights in [0, 1] (clipped), ``arkit.ARKIT_NAMES`` order.
    head: (n, 3) float32 head yaw, pitch, roll in radians (zeros when the take has none).
    fps: frames per second.
    timecodes: the n timecode strings.
  """

  weights: np.ndarray
  head: np.ndarray
  fps: float
  timecodes: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.weights)


def _frame_rate(frames: list[int], default_fps: float) -> float:
  if not frames or max(frames) + 1 < min(_RATES) - 1:  # under a second: no full cycle of frame numbers seen
    return float(default_fps)
  seen = max(frames) + 1
  return float(min(_RATES, key=lambda rate: (abs(rate - seen), rate)))


def read_take(path: str | pathlib.Path, *, default_fps: float = 30.0) -> Take:
  """Reads a Live Link Face CSV.

  Args:
    path: the CSV file.
    default_fps: frame rate for takes shorter than one second.

  Returns:
    The ``Take``.

  Raises:
    TakeError: naming the file, line and column, for an empty file, a header without
      ``Timecode`` or with unknown columns, missing blendshape columns, a row with the
      wrong number of cells, a malformed timecode or a non-numeric / non-finite cell.
    FileNotFoundError: if the file does not exist.
  """
  path = pathlib.Path(path)
  with path.open(newline='') as handle:
    rows = list(csv.reader(handle))
  rows = [row for row in rows if any(cell.strip() for cell in row)]
  if not rows:
    raise TakeError(f'{path}: empty file (expected a Live Link Face header "Timecode,BlendShapeCount,...")')
  header = [cell.strip() for cell in rows[0]]
  if not header or header[0].lower() != 'timecode':
    raise TakeError(f'{path}, line 1, column 1: expected "Timecode", got {header[0] if header else ""!r}')
  lower = {name.lower(): name for name in arkit.ARKIT_NAMES}
  known = {'timecode', 'blendshapecount'} | {c.lower() for c in HEAD_COLUMNS + EYE_COLUMNS}
  columns = {}
  for number, name in enumerate(header, start=1):
    key = name.lower()
    if key in lower:
      columns[lower[key]] = number - 1
    elif key not in known:
      raise TakeError(f'{path}, line 1, column {number}: unknown column {name!r} (not an ARKit blendshape)')
  missing = [name for name in arkit.ARKIT_NAMES if name not in columns]
  if missing:
    raise TakeError(f'{path}, line 1: missing blendshape column(s) {", ".join(missing)}')
  head_index = {c.lower(): i for i, c in enumerate(header)}
  if len(rows) == 1:
    raise TakeError(f'{path}: a header but no frames')
  weights = np.zeros((len(rows) - 1, arkit.NUM_BLENDSHAPES), np.float32)
  head = np.zeros((len(rows) - 1, 3), np.float32)
  timecodes, frames = [], []
  for line, row in enumerate(rows[1:], start=2):
    if len(row) != len(header):
      raise TakeError(f'{path}, line {line}: {len(row)} cells, the header has {len(header)}')
    match = _TIMECODE.match(row[0].strip())
    if match is None:
      raise TakeError(f'{path}, line {line}, column 1: timecode {row[0]!r} is not HH:MM:SS:FF.fff')
    timecodes.append(row[0].strip())
    frames.append(int(match.group(4)))

    def number(index: int, line=line, row=row) -> float:
      try:
        value = float(row[index])
      except ValueError:
        raise TakeError(
          f'{path}, line {line}, column {index + 1} ({header[index]}): {row[index]!r} is not a number'
        ) from None
      if not np.isfinite(value):
        raise TakeError(f'{path}, line {line}, column {index + 1} ({header[index]}): {row[index]!r} is not finite')
      return value

    for k, name in enumerate(arkit.ARKIT_NAMES):
      weights[line - 2, k] = number(columns[name])
    for k, name in enumerate(HEAD_COLUMNS):
      if name.lower() in head_index:
        head[line - 2, k] = number(head_index[name.lower()])
  return Take(np.clip(weights, 0.0, 1.0), head, _frame_rate(frames, default_fps), tuple(timecodes))


def write_take(path: str | pathlib.Path, weights: np.ndarray, head: np.ndarray | None = None, fps: int = 30) -> None:
  """Writes (n, 52) weights (and (n, 3) head yaw/pitch/roll in radians) as a Live Link Face CSV at ``fps``."""
  weights = np.asarray(weights, np.float32)
  head = np.zeros((len(weights), 3), np.float32) if head is None else np.asarray(head, np.float32)
  names = [name[0].upper() + name[1:] for name in arkit.ARKIT_NAMES]
  lines = [','.join(['Timecode', 'BlendShapeCount', *names, *HEAD_COLUMNS, *EYE_COLUMNS])]
  for i, (w, r) in enumerate(zip(weights, head, strict=True)):
    seconds, frame = divmod(i, fps)
    minutes, seconds = divmod(seconds, 60)
    timecode = f'00:{minutes:02d}:{seconds:02d}:{frame:02d}.000'
    cells = [timecode, '61', *(f'{v:.6f}' for v in w), *(f'{v:.6f}' for v in r), *(['0'] * len(EYE_COLUMNS))]
    lines.append(','.join(cells))
  pathlib.Path(path).write_text('\n'.join(lines) + '\n')


def head_labels(head: np.ndarray, *, base_yaw_deg: float = 0.0, base_pitch_deg: float = 0.0) -> np.ndarray:
  """Cameras (n, 25) that see a head turned by ``head`` (n, 3) yaw/pitch/roll radians, from a fixed viewer.

  Turning the head by (yaw, pitch) in front of a fixed camera is the camera orbiting the other
  way around a fixed head: the orbit camera at ``base_yaw_deg - yaw``, ``base_pitch_deg - pitch``
  (degrees; roll is not modelled by the orbit cameras and is ignored). The signs follow the
  conventions in the module docstring; they were not checked against a real recording.
  """
  from head360_jax import inference  # local: inference imports the model builder

  head = np.asarray(head, np.float32)
  labels = [
    inference.orbit_labels(1, base_pitch_deg - np.degrees(pitch), start_yaw_deg=base_yaw_deg - np.degrees(yaw))[0]
    for yaw, pitch, _ in head
  ]
  return np.stack(labels).astype(np.float32)
