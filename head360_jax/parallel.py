"""Data parallelism on one ``('data',)`` mesh axis (ARCHITECTURE D7, stack-notes §2(b)).

Legend: ``n`` devices in the mesh, ``B`` global batch (split over ``data``, so ``B % n == 0``).

Parameters and optimiser state are replicated; batches are split along their leading
axis. The axis type is ``Auto`` (classic GSPMD propagation): jax 0.10 made ``Explicit``
the default of ``jax.make_mesh``, under which ordinary reductions over a sharded batch
(``x.T @ x``, minibatch statistics) raise ``ShardingTypeError``.
"""

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-axis ``('data',)`` mesh over the first ``num_devices`` devices (all if None).

  Raises:
    ValueError: if ``num_devices`` is not in ``[1, jax.device_count()]``.
  """
  available = jax.device_count()
  num_devices = available if num_devices is None else num_devices
  if not 1 <= num_devices <= available:
    raise ValueError(f'num_devices must be in [1, {available}], got {num_devices}')
  return jax.make_mesh((num_devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:num_devices])


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Splits an array's leading (batch) axis over ``data``; other axes are whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of ``mesh`` (parameters, optimiser state, scalars)."""
  return NamedSharding(mesh, PartitionSpec())
