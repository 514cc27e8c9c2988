"""Data parallelism on one ``('data',)`` mesh axis (ARCHITECTURE D7, stack-notes §2(b)).

Legend: ``n`` devices in the mesh, ``B`` global batch (split over ``data``, so ``B % n == 0``),
``P`` processes.

Parameters and optimiser state are replicated; batches are split along their leading
axis. The axis type is ``Auto`` (classic GSPMD propagation): jax 0.10 made ``Explicit``
the default of ``jax.make_mesh``, under which ordinary reductions over a sharded batch
(``x.T @ x``, minibatch statistics) raise ``ShardingTypeError``.

Several processes (one per host, or several on one machine) join one JAX runtime through
``initialize_distributed`` (``jax.distributed.initialize``); the mesh then spans every
process's devices in ``jax.devices()`` order (process 0's first), so process ``p`` holds
rows ``[p·B/P, (p+1)·B/P)`` of a batch split over ``data``.
"""

import dataclasses
import os
from collections.abc import Mapping

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'

ENV_COORDINATOR_ADDRESS = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'
_CPU_COLLECTIVES = 'jax_cpu_collectives_implementation'


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
  """Where this process sits in a multi-process run: ``process_id`` of ``num_processes``, coordinator ``host:port``."""

  coordinator_address: str
  num_processes: int
  process_id: int


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
  value = environ.get(name, '').strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'{name} must be an integer, got {value!r}') from None


def distributed_spec(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  environ: Mapping[str, str] | None = None,
) -> DistributedSpec | None:
  """Resolves a multi-process launch from arguments, else environment variables (pure).

  Each argument left None is read from ``$JAX_COORDINATOR_ADDRESS``, ``$JAX_NUM_PROCESSES``,
  ``$JAX_PROCESS_ID``. A multi-process launch is requested when the process count is above
  1 or a coordinator address is given; then all three are needed.

  Args:
    coordinator_address: ``host:port`` of process 0's coordinator service (every process
      passes the same one; on one machine ``localhost:<free port>``).
    num_processes: ``P``, the number of processes.
    process_id: this process's index in ``[0, P)``.
    environ: the environment to read (default ``os.environ``).

  Returns:
    The ``DistributedSpec``, or None for an ordinary single-process run (nothing given, or
    ``P = 1`` with no coordinator and process id 0 or none).

  Raises:
    ValueError: on a partial specification (a process id without a process count, or a
      multi-process launch missing the coordinator address, count or id), a non-integer
      environment value, ``P < 1`` or a process id outside ``[0, P)``.
  """
  environ = os.environ if environ is None else environ
  if coordinator_address is None:
    coordinator_address = environ.get(ENV_COORDINATOR_ADDRESS, '').strip() or None
  if num_processes is None:
    num_processes = _env_int(environ, ENV_NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(environ, ENV_PROCESS_ID)
  if num_processes is not None and num_processes < 1:
    raise ValueError(f'the number of processes must be at least 1, got {num_processes}')
  if num_processes is None and process_id is not None:
    raise ValueError(f'a process id ({process_id}) needs a process count: --num_processes or ${ENV_NUM_PROCESSES}')
  if process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f'process id must be in [0, {num_processes}), got {process_id}')
  if coordinator_address is None and (num_processes is None or num_processes == 1):
    return None
  missing = [
    f'{flag} (or ${env})'
    for flag, env, value in (
      ('--coordinator_address', ENV_COORDINATOR_ADDRESS, coordinator_address),
      ('--num_processes', ENV_NUM_PROCESSES, num_processes),
      ('--process_id', ENV_PROCESS_ID, process_id),
    )
    if value is None
  ]
  if missing:
    raise ValueError(f'a multi-process launch needs {", ".join(missing)} as well')
  return DistributedSpec(coordinator_address, num_processes, process_id)


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  initialization_timeout: int = 300,
) -> DistributedSpec | None:
  """Joins a multi-process JAX runtime (``jax.distributed.initialize``) when one is requested.

  Call it first, before anything touches a JAX backend (``jax.devices()``, an array). The
  launch is resolved by ``distributed_spec`` from the arguments or ``$JAX_COORDINATOR_ADDRESS``,
  ``$JAX_NUM_PROCESSES``, ``$JAX_PROCESS_ID``; for a single-process run this does nothing.
  Cross-process collectives on CPU go through gloo: the config option
  ``jax_cpu_collectives_implementation`` (default ``'gloo'`` in jax 0.10 and 0.11) is set
  to ``'gloo'`` if it was cleared, and left alone where a jax version lacks it.

  Args:
    coordinator_address, num_processes, process_id: see ``distributed_spec``.
    initialization_timeout: seconds to wait for every process to connect.

  Returns:
    The ``DistributedSpec`` joined, or None for a single-process run.

  Raises:
    ValueError: on a partial or inconsistent specification (``distributed_spec``).
    RuntimeError: from jax, if a backend was initialised already or the processes do not
      all connect within ``initialization_timeout``.
  """
  spec = distributed_spec(coordinator_address, num_processes, process_id)
  if spec is None:
    return None
  if _CPU_COLLECTIVES in jax.config.values and jax.config.values[_CPU_COLLECTIVES] is None:
    jax.config.update(_CPU_COLLECTIVES, 'gloo')
  jax.distributed.initialize(
    coordinator_address=spec.coordinator_address,
    num_processes=spec.num_processes,
    process_id=spec.process_id,
    initialization_timeout=initialization_timeout,
  )
  return spec


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-axis ``('data',)`` mesh over the first ``num_devices`` devices (all if None).

  In a multi-process run the mesh must hold every process's devices, so ``num_devices``
  must be None or ``jax.device_count()`` there.

  Raises:
    ValueError: if ``num_devices`` is not in ``[1, jax.device_count()]``, or leaves out
      some process's devices in a multi-process run.
  """
  available = jax.device_count()
  num_devices = available if num_devices is None else num_devices
  if not 1 <= num_devices <= available:
    raise ValueError(f'num_devices must be in [1, {available}], got {num_devices}')
  if jax.process_count() > 1 and num_devices != available:
    raise ValueError(
      f'num_devices {num_devices}: a {jax.process_count()}-process run uses all {available} devices (leave it unset)'
    )
  return jax.make_mesh((num_devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:num_devices])


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Splits an array's leading (batch) axis over ``data``; other axes are whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of ``mesh`` (parameters, optimiser state, scalars)."""
  return NamedSharding(mesh, PartitionSpec())
