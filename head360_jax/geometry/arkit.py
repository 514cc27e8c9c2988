"""The 52 ARKit blendshape names, in Apple's order, and weight-vector parsing.

Legend: ``k`` = 52 blendshapes.

The order is that of Apple's ``ARFaceAnchor.BlendShapeLocation`` as exported by Live
Link Face (``eyeBlinkLeft`` first, ``tongueOut`` last). Every 52-d expression vector
``b`` in this project (bilinear model, dataset labels, render/fit commands) uses it.
"""

from collections.abc import Iterable, Mapping

import numpy as np

ARKIT_NAMES: tuple[str, ...] = (
  'eyeBlinkLeft',
  'eyeLookDownLeft',
  'eyeLookInLeft',
  'eyeLookOutLeft',
  'eyeLookUpLeft',
  'eyeSquintLeft',
  'eyeWideLeft',
  'eyeBlinkRight',
  'eyeLookDownRight',
  'eyeLookInRight',
  'eyeLookOutRight',
  'eyeLookUpRight',
  'eyeSquintRight',
  'eyeWideRight',
  'jawForward',
  'jawLeft',
  'jawRight',
  'jawOpen',
  'mouthClose',
  'mouthFunnel',
  'mouthPucker',
  'mouthLeft',
  'mouthRight',
  'mouthSmileLeft',
  'mouthSmileRight',
  'mouthFrownLeft',
  'mouthFrownRight',
  'mouthDimpleLeft',
  'mouthDimpleRight',
  'mouthStretchLeft',
  'mouthStretchRight',
  'mouthRollLower',
  'mouthRollUpper',
  'mouthShrugLower',
  'mouthShrugUpper',
  'mouthPressLeft',
  'mouthPressRight',
  'mouthLowerDownLeft',
  'mouthLowerDownRight',
  'mouthUpperUpLeft',
  'mouthUpperUpRight',
  'browDownLeft',
  'browDownRight',
  'browInnerUp',
  'browOuterUpLeft',
  'browOuterUpRight',
  'cheekPuff',
  'cheekSquintLeft',
  'cheekSquintRight',
  'noseSneerLeft',
  'noseSneerRight',
  'tongueOut',
)
NUM_BLENDSHAPES = len(ARKIT_NAMES)
assert NUM_BLENDSHAPES == 52
_INDEX = {name: i for i, name in enumerate(ARKIT_NAMES)}


def index(name: str) -> int:
  """Returns the position of an ARKit blendshape name in ``ARKIT_NAMES``.

  Raises:
    ValueError: for a name that is not one of the 52 (the message lists close matches).
  """
  try:
    return _INDEX[name]
  except KeyError:
    close = [n for n in ARKIT_NAMES if n.lower().startswith(name.lower()[:4])]
    raise ValueError(
      f'unknown ARKit blendshape name {name!r}' + (f'; did you mean one of {close}?' if close else '')
    ) from None


def weights(named: Mapping[str, float] | Iterable[tuple[str, float]]) -> np.ndarray:
  """Builds a 52-d weight vector ``b`` (float32, ARKit order) from name -> weight pairs.

  Weights are not clipped: ARKit's range is [0, 1], values outside are extrapolation.

  Raises:
    ValueError: for an unknown name (see ``index``) or a name given twice.
  """
  pairs = named.items() if isinstance(named, Mapping) else named
  b = np.zeros(NUM_BLENDSHAPES, np.float32)
  seen = set()
  for name, value in pairs:
    if name in seen:
      raise ValueError(f'blendshape {name!r} given twice')
    seen.add(name)
    b[index(name)] = float(value)
  return b


def parse(text: str) -> np.ndarray:
  """Parses ``"jawOpen=0.6,eyeBlinkLeft=1"`` into a 52-d weight vector (see ``weights``).

  Raises:
    ValueError: on a malformed pair or an unknown name.
  """
  pairs = []
  for item in filter(None, (s.strip() for s in text.split(','))):
    name, sep, value = item.partition('=')
    if not sep:
      raise ValueError(f'expected name=weight, got {item!r}')
    try:
      pairs.append((name.strip(), float(value)))
    except ValueError:
      raise ValueError(f'weight of {name.strip()!r} is not a number: {value!r}') from None
  return weights(pairs)
