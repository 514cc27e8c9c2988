"""The grain input pipeline: shuffled, sharded, batched, checkpointable (ARCHITECTURE D7/D8).

Legend: ``b`` per-process batch, ``B`` global batch, ``h w`` image size, ``v`` vertices,
``l`` landmarks.

Order of operations (grain Dataset API, stack-notes §2(d)):

1. ``MapDataset.source(source).seed(seed).shuffle()``: a permutation of all records,
   reseeded each epoch by ``repeat``;
2. ``repeat(num_epochs)``: one long stream, epoch after epoch (infinite by default);
3. block sharding (``shard_count > 1``): the same global stream is cut into global batches
   of ``B = b · shard_count`` consecutive elements, and process ``p`` takes rows
   ``[p·b, (p+1)·b)`` of each. So the shards of an epoch are disjoint and together cover
   it, each epoch's shuffle mixes records across processes, and the global batch that
   ``make_global_batch`` assembles in process order is exactly the one a single process
   with batch ``B`` reads (same records, same order: a multi-process run repeats a
   single-process one);
4. decode, select the batch fields, read ahead in ``num_threads`` threads (threads beat
   worker processes on small machines, stack-notes §2(d));
5. batch with ``drop_remainder`` (a batch may span an epoch boundary).

The iterator's ``get_state()`` / ``set_state()`` restore the position exactly; each process
saves its own (``checkpoint.Checkpointer``).
"""

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from head360_jax.data import transforms
from head360_jax.data.sources import SynHeadSource

# Fields of a record that make up a batch, with their batch dtype.
BATCH_FIELDS = {
  'image': np.float32,
  'label': np.float32,
  'camera': np.float32,
  'expression': np.float32,
  'vertices': np.float32,
  'landmarks': np.float32,
  'identity': np.int32,
  'view': np.int32,
  'hair': np.int32,
}


class _SelectBatchFields(grain.transforms.Map):
  """Keeps the numeric fields of a record (strings and bytes cannot be batched) in batch dtypes."""

  def map(self, record: dict) -> dict:
    fields = {key: np.asarray(record[key], dtype) for key, dtype in BATCH_FIELDS.items()}
    if 'alpha' in record:  # only when the pipeline decodes it (make_dataset(alpha=True))
      fields['alpha'] = np.asarray(record['alpha'], np.float32)
    return fields


class _BlockShard(grain.MapDataset):
  """Shard ``index`` of ``count``: rows ``[index·b, (index+1)·b)`` of every global batch of ``b · count`` elements.

  Element ``j`` is the parent's ``(j // b · count + index) · b + j % b``; the parent's tail
  that does not fill a whole global batch is dropped, so every shard has the same length.
  """

  def __init__(self, parent: grain.MapDataset, *, block: int, index: int, count: int):
    super().__init__(parent)
    self._block, self._index, self._count = block, index, count
    self._length = len(parent) // (block * count) * block

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    group, offset = divmod(index, self._block)
    return self._parent[(group * self._count + self._index) * self._block + offset]

  def __str__(self) -> str:
    return f'_BlockShard(block={self._block}, index={self._index}, count={self._count})'


def make_dataset(
  source: SynHeadSource,
  *,
  batch_size: int,
  seed: int,
  shuffle: bool = True,
  num_epochs: int | None = None,
  num_threads: int = 2,
  shard_index: int | None = None,
  shard_count: int | None = None,
  resolution: int | None = None,
  alpha: bool = False,
) -> grain.IterDataset:
  """Builds the per-process input pipeline over ``source``.

  Args:
    source: the records (``SynHeadSource``; any grain source with the same record fields
      works).
    batch_size: per-process batch size ``b`` (the global batch is ``B = b · shard_count``).
    seed: shuffle seed; every process must pass the same one, since shards are blocks of
      one global shuffled stream.
    shuffle: shuffle the records (a new permutation each epoch); if False, records come in
      source order.
    num_epochs: passes over the data; None repeats forever.
    num_threads: threads that read and decode records ahead of the consumer (0: inline).
    shard_index, shard_count: this process's shard; default ``jax.process_index()`` and
      ``jax.process_count()``. Give both or neither.
    resolution: output image size; None keeps the source's resolution. Every image must
      be ``source.resolution`` square.
    alpha: also give each image's alpha, ``alpha`` (b, h, w, 1) float32 in [0, 1] (the
      opacity loss, ``train.alpha_weight``).

  Returns:
    A grain ``IterDataset`` of dicts of numpy arrays: ``image`` (b, h, w, 3) float32 in
    [-1, 1]; ``label`` (b, 77) = cat(``camera`` (b, 25), ``expression`` (b, 52)) float32;
    ``vertices`` (b, v, 3), ``landmarks`` (b, l, 3) float32; ``identity``, ``view``,
    ``hair`` (b,) int32. ``iter(ds)`` gives an iterator with ``get_state``/``set_state``.
    Batch ``k`` of shard ``p`` is rows ``[p·b, (p+1)·b)`` of batch ``k`` of a single-process
    pipeline with batch ``B`` (module docstring, step 3). With a finite ``num_epochs`` the
    stream is first cut to a multiple of ``B`` so that every process yields the same number
    of batches.

  Raises:
    ValueError: for a non-positive ``batch_size`` or ``num_epochs``, only one of
      ``shard_index``/``shard_count``, or a shard index out of range.
  """
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if num_epochs is not None and num_epochs <= 0:
    raise ValueError(f'num_epochs must be positive or None, got {num_epochs}')
  if (shard_index is None) != (shard_count is None):
    raise ValueError('give both shard_index and shard_count, or neither')
  if shard_index is None:
    shard_index, shard_count = jax.process_index(), jax.process_count()
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index must be in [0, {shard_count}), got {shard_index}')

  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.seed(seed).shuffle()
  ds = ds.repeat(num_epochs)
  if shard_count > 1:
    ds = _BlockShard(ds, block=batch_size, index=shard_index, count=shard_count)
  size = getattr(source, 'resolution', None)
  ds = ds.map(transforms.DecodeImage(expected_size=size, resolution=resolution, alpha=alpha)).map(_SelectBatchFields())
  # The read-ahead buffer holds decoded float images: two batches keep the threads busy
  # without the 500-element default (1.5 GB at 512²).
  read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * batch_size)
  return ds.to_iter_dataset(read_options).batch(batch_size, drop_remainder=True)


def make_global_batch(batch: dict, mesh_or_sharding: jax.sharding.Mesh | jax.sharding.Sharding) -> dict:
  """Turns this process's batch into global ``jax.Array``s split over the ``data`` axis.

  Every process calls this with its own batch (from ``make_dataset`` with its shard);
  the result is one global array per field whose leading axis is the concatenation of
  the processes' batches, in process order.

  Args:
    batch: dict of numpy arrays with leading dimension ``b`` (the local batch), which must
      be divisible by the number of this process's devices in the sharding.
    mesh_or_sharding: a ``Mesh`` with a ``'data'`` axis (arrays are split on it along the
      leading dimension) or a ready ``Sharding``.

  Returns:
    The same dict of ``jax.Array``s with leading dimension ``B = b · process_count``.

  Raises:
    ValueError: if the fields' leading dimensions differ or do not divide over the local
      devices.
  """
  if isinstance(mesh_or_sharding, jax.sharding.Mesh):
    sharding = NamedSharding(mesh_or_sharding, PartitionSpec('data'))
  else:
    sharding = mesh_or_sharding
  sizes = {key: np.shape(value)[0] for key, value in batch.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f'batch fields have different leading dimensions: {sizes}')
  local_devices = len(sharding.addressable_devices)
  if next(iter(sizes.values())) % local_devices:
    raise ValueError(f'local batch of {next(iter(sizes.values()))} does not split over {local_devices} local devices')
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value)) for key, value in batch.items()}
