"""SynHead100 layout names."""

import pytest

from head360_jax.data import layout


def test_identity_names_sort_numerically_and_invert():
  names = [layout.identity_name(i) for i in (0, 2, 10, 99, 123)]
  assert names == sorted(names)  # zero-padded: string order is numeric order
  assert [layout.identity_index(name) for name in names] == [0, 2, 10, 99, 123]


@pytest.mark.parametrize('name', ['id_', 'id_x1', 'person_001', '001'])
def test_identity_index_rejects_other_names(name):
  with pytest.raises(ValueError, match='identity folder'):
    layout.identity_index(name)
