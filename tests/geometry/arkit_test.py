"""ARKit name handling."""

import numpy as np
import pytest

from head360_jax.geometry import arkit


def test_names_are_unique_and_ordered():
  assert len(set(arkit.ARKIT_NAMES)) == 52
  assert arkit.ARKIT_NAMES[0] == 'eyeBlinkLeft' and arkit.ARKIT_NAMES[-1] == 'tongueOut'


def test_parse_builds_weight_vector():
  b = arkit.parse('jawOpen=0.6, eyeBlinkLeft=1')
  expected = np.zeros(52, np.float32)
  expected[arkit.ARKIT_NAMES.index('jawOpen')] = 0.6
  expected[arkit.ARKIT_NAMES.index('eyeBlinkLeft')] = 1.0
  np.testing.assert_array_equal(b, expected)


@pytest.mark.parametrize(
  'text,message',
  [
    ('jawOpn=1', 'unknown ARKit blendshape'),
    ('jawOpen', 'name=weight'),
    ('jawOpen=x', 'not a number'),
    ('jawOpen=1,jawOpen=0', 'twice'),
  ],
)
def test_bad_input_raises(text, message):
  with pytest.raises(ValueError, match=message):
    arkit.parse(text)
