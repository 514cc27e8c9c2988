"""RefineNet (pix2pixHD) parameter counts against a closed-form count, and the generator's CPU time.

Usage::

  .venv/bin/python bench/refine_params.py [--resolution 128] [--repeats 3]

Counts the ``nnx.Param`` scalars of ``refine.GlobalGenerator`` and ``refine.MultiscaleDiscriminator``
at pix2pixHD's defaults (ngf 64, 4 downsamplings, 9 residual blocks, 3 input channels; ndf 64,
3 layers, num_D 2 and 3, 6 input channels = condition + image) and compares each with
``sum over conv layers of k*k*c_in*c_out + c_out`` written out below from pix2pixHD's architecture
(``GlobalGenerator``/``NLayerDiscriminator`` in its ``models/networks.py``; instance norm without
affine parameters adds none). The counts must agree exactly (the script exits non-zero otherwise).
Then times the generator's forward and forward+backward (gradient of the output's mean with
respect to every parameter) at ``--resolution``² and batch 1: the ahead-of-time compile, the first
call and the median of ``--repeats`` later calls, with XLA's FLOP count of the program.
"""

import argparse
import os
import sys
import time

import common  # bench/common.py (this script runs as bench/refine_params.py)
import jax
import jax.numpy as jnp
from flax import nnx

from head360_jax.models import layers, refine


def conv_params(k: int, c_in: int, c_out: int) -> int:
  """Weights and biases of one k x k convolution (or transposed convolution)."""
  return k * k * c_in * c_out + c_out


def generator_formula(ngf: int, n_downsampling: int, n_blocks: int, input_nc: int, output_nc: int) -> int:
  """pix2pixHD GlobalGenerator: 7x7 stem, 3x3 stride-2 downs, residual blocks of two 3x3 convs, 3x3 ups, 7x7 head."""
  total = conv_params(7, input_nc, ngf)
  total += sum(conv_params(3, ngf * 2**i, ngf * 2 ** (i + 1)) for i in range(n_downsampling))
  width = ngf * 2**n_downsampling
  total += n_blocks * 2 * conv_params(3, width, width)
  total += sum(conv_params(3, width // 2**i, width // 2 ** (i + 1)) for i in range(n_downsampling))
  return total + conv_params(7, ngf, output_nc)


def discriminator_formula(input_nc: int, ndf: int, n_layers: int, num_d: int) -> int:
  """pix2pixHD MultiscaleDiscriminator: num_D NLayerDiscriminators of 4x4 convs, channels doubling up to 512."""
  widths = [input_nc] + [min(ndf * 2**n, 512) for n in range(n_layers + 1)] + [1]
  return num_d * sum(conv_params(4, c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:], strict=True))


def count(build) -> int:
  """Parameter count of a module built abstractly (shapes only, nothing drawn)."""
  return layers.parameter_count(nnx.eval_shape(build))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--resolution', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores visible')

  config = refine.RefineConfig()
  rows, ok = [], True
  ours = count(lambda: refine.GlobalGenerator(config, rngs=nnx.Rngs(0)))
  formula = generator_formula(config.ngf, config.n_downsampling, config.n_blocks, 3, 3)
  rows.append(['G global (ngf 64, 4 down, 9 blocks, 3 -> 3)', f'{ours:,}', f'{formula:,}', ours == formula])
  for num_d in (2, 3):
    d_config = refine.RefineConfig(num_d=num_d)
    ours = count(lambda d_config=d_config: refine.MultiscaleDiscriminator(d_config, rngs=nnx.Rngs(0)))
    formula = discriminator_formula(6, d_config.ndf, d_config.n_layers_d, num_d)
    rows.append([f'D multiscale (ndf 64, 3 layers, num_D {num_d}, 6 in)', f'{ours:,}', f'{formula:,}', ours == formula])
  ok = all(row[-1] for row in rows)
  print(common.table(['network', 'ours', 'formula', 'equal'], rows))

  generator = refine.GlobalGenerator(config, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(generator, nnx.Param)
  image = jnp.tanh(jax.random.normal(jax.random.key(1), (1, args.resolution, args.resolution, 3)))
  forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  backward = jax.jit(jax.value_and_grad(lambda p, x: jnp.mean(nnx.merge(graphdef, p)(x))))
  timing_rows = []
  for name, fn in (('forward', forward), ('forward+backward', backward)):
    start = time.perf_counter()
    compiled = fn.lower(params, image).compile()
    compile_s = time.perf_counter() - start
    first, median = common.time_fn(lambda compiled=compiled: compiled(params, image), args.repeats)
    flops = common.cost_flops(compiled)
    gflops = '-' if flops is None else f'{flops / 1e9:.1f}'
    timing_rows.append([name, f'{compile_s:.1f}', f'{first:.3f}', f'{median:.3f}', gflops])
  print(f'\nG at {args.resolution}x{args.resolution}, batch 1, float32, CPU')
  print(common.table(['pass', 'compile s', 'first call s', 'median s', 'XLA GFLOP'], timing_rows))
  if not ok:
    sys.exit('parameter counts differ from the formula')


if __name__ == '__main__':
  main()
