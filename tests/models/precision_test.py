"""Mixed precision: the bf16 block rule, bf16 convolutions in the lowered HLO, float32 parameters and
gradients, and bf16 outputs close to float32 ones (super-resolution, discriminator).

Tolerance: bfloat16 keeps 8 significant bits, so rounding one operand costs a relative error of at
most 2^-9 (0.2 %), about 0.1 % RMS. A convolution rounds its input and its weights, and the errors
of L layers add about like a random walk: ~0.15 % x sqrt(L) plus what the nonlinearities amplify.
The networks below have 4-13 convolutions, so at most about 1 % relative L2 error is expected (the
measured values are in the comments). The bound, 3 %, leaves room for other XLA versions and CPUs
but is far below what a wrong bf16 path gives (a missing bias, clamp or demodulation moves the
output by tens of %).
"""

import re

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.models import discriminator as disc
from head360_jax.models import layers, superres, synthesis

BF16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
REL_L2_BOUND = 0.03


def _rel_l2(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _convolution_dtypes(hlo: str, op: str = 'convolution') -> list[str]:
  """Element type of the result of every ``op`` (convolution, dot_general) in a lowered StableHLO module."""
  lines = [line for line in hlo.splitlines() if f'stablehlo.{op}' in line]
  return [re.search(r'-> tensor<[0-9x]*x(\w+)>', line).group(1) for line in lines]


def test_block_dtype_follows_the_num_fp16_res_rule():
  dtypes = lambda top, n, base=F32: {r: layers.block_dtype(r, top, n, base) for r in (4, 8, 16, 32, 64, 128, 256, 512)}
  # Head360's discriminator: d_num_fp16_res 4 at 512² -> 512, 256, 128, 64 (reference-spec §4).
  assert [r for r, d in dtypes(512, 4).items() if d == BF16] == [64, 128, 256, 512]
  assert all(d == F32 for d in dtypes(512, 0).values())
  # Never 4x4 (StyleGAN2-ADA clamps the threshold at 8), even when asking for every resolution.
  assert [r for r, d in dtypes(64, 10).items() if r <= 64 and d == BF16] == [8, 16, 32, 64]
  # A whole-model bf16 run: every block, whatever num_bf16_res.
  assert all(d == BF16 for d in dtypes(512, 0, BF16).values())
  with pytest.raises(ValueError, match='num_bf16_res'):
    layers.block_dtype(8, 64, -1)
  assert layers.compute_dtype('bfloat16') == BF16 and layers.compute_dtype('float32') == F32
  with pytest.raises(ValueError, match='float16'):
    layers.compute_dtype('float16')


def _block(dtype):
  factory = lambda: synthesis.SynthesisBlock(16, 16, 32, 16, 3, conv_clamp=256, dtype=dtype, rngs=nnx.Rngs(0))
  return golden.random_build(factory, seed=3)


def _block_inputs():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 8, 16)), jnp.float32)
  img = jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32)
  ws = jnp.asarray(rng.standard_normal((2, 3, 32)), jnp.float32)
  return x, img, ws


@pytest.mark.parametrize('fused', [False, True])
def test_bf16_synthesis_block_lowers_to_bf16_convolutions(fused):
  x, img, ws = _block_inputs()
  outputs, hlo = {}, {}
  for dtype in (F32, BF16):
    graphdef, params, rest = nnx.split(_block(dtype), nnx.Param, ...)
    fn = lambda p, x, graphdef=graphdef, rest=rest: nnx.merge(graphdef, p, rest)(
      x, img, ws, noise_mode='const', fused_modconv=fused
    )
    hlo[dtype] = jax.jit(fn).lower(params, x).as_text()
    outputs[dtype] = jax.jit(fn)(params, x)
  # bf16: conv0 (a sub-pixel transposed conv: 2x2, 2x1 and 1x2 phase convolutions and a 1x1 phase
  # GEMM; its FIR is pads and slices) and conv1 as convolutions, toRGB (1x1) as a GEMM; the style
  # affines are float32 GEMMs in both. The skip image's FIR up-sampling stays float32 (img16 below).
  assert set(_convolution_dtypes(hlo[F32])) == {'f32'}
  assert set(_convolution_dtypes(hlo[F32], 'dot_general')) == {'f32'}
  assert _convolution_dtypes(hlo[BF16]) == ['bf16'] * 4
  assert _convolution_dtypes(hlo[BF16], 'dot_general').count('bf16') == 2
  (x32, img32), (x16, img16) = outputs[F32], outputs[BF16]
  assert x16.dtype == BF16 and img16.dtype == F32 and x32.dtype == img32.dtype == F32
  assert _rel_l2(x16, x32) < REL_L2_BOUND  # measured 0.6 % (fused 0.5 %)
  assert _rel_l2(img16, img32) < REL_L2_BOUND  # measured 0.4 % (fused 0.3 %)


def test_bf16_block_keeps_float32_parameters_and_gradients():
  x, img, ws = _block_inputs()
  graphdef, params, rest = nnx.split(_block(BF16), nnx.Param, ...)

  def loss(params):
    out_x, out_img = nnx.merge(graphdef, params, rest)(x, img, ws, noise_mode='const')
    return jnp.mean(out_x.astype(jnp.float32) ** 2) + jnp.mean(out_img**2)

  grads = jax.jit(jax.grad(loss))(params)
  for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
    assert leaf.dtype == F32 and np.all(np.isfinite(leaf)) and np.abs(leaf).max() > 0, jax.tree_util.keystr(path)
  assert all(leaf.dtype == F32 for leaf in jax.tree.leaves(params))


def test_superres_in_bf16_is_close_to_float32():
  """Two SR blocks (16² -> 32² -> 64²), both bf16 with the reference's sr_num_fp16_res 4."""
  build = lambda n: golden.random_build(
    lambda: superres.SuperResolution(8, 16, 16, 64, channels=(16, 8), num_bf16_res=n, rngs=nnx.Rngs(0))
  )
  fp32, bf16 = build(0), build(4)
  assert bf16.block0.conv1.dtype == bf16.block1.torgb.dtype == BF16 and fp32.block1.conv1.dtype == F32
  rng = np.random.default_rng(1)
  features = jnp.asarray(rng.standard_normal((2, 16, 16, 8)), jnp.float32)
  ws = jnp.asarray(rng.standard_normal((2, 1, 16)), jnp.float32)
  run = lambda model: jax.jit(model.__call__)(features[..., :3], features, ws)
  image32, image16 = run(fp32), run(bf16)
  assert image16.dtype == F32
  assert _rel_l2(image16, image32) < REL_L2_BOUND  # measured 0.24 %


def test_discriminator_in_mixed_precision_is_close_to_float32():
  """32² D with d_num_bf16_res 2: blocks 32 and 16 in bf16, block 8 and the epilogue in float32."""
  config = dict(channel_base=128, channel_max=16, expression_cmap_dim=4, num_mapping_layers=2)
  build = lambda n, base=F32: golden.random_build(
    lambda: disc.DualDiscriminator(32, **config, num_bf16_res=n, compute_dtype=base, rngs=nnx.Rngs(1)), seed=1
  )
  fp32, mixed, bf16 = build(0), build(2), build(0, BF16)
  assert mixed.b32.conv0.dtype == mixed.b16.skip.dtype == BF16
  assert mixed.b8.conv1.dtype == mixed.b4.conv.dtype == F32 and bf16.b4.conv.dtype == F32
  rng = np.random.default_rng(2)
  image, image_raw, c = (
    jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in [(4, 32, 32, 3), (4, 16, 16, 3), (4, 77)]
  )
  logits = {}
  for name, model in (('fp32', fp32), ('mixed', mixed), ('bf16', bf16)):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p, image, graphdef=graphdef):
      out = nnx.merge(graphdef, p)(image, image_raw, c)
      return jnp.sum(jax.nn.softplus(out)), out

    fn = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    (grads, grad_image), logits[name] = fn(params, image)
    assert logits[name].dtype == F32 and grad_image.dtype == F32 and np.all(np.isfinite(grad_image))
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
      assert leaf.dtype == F32 and np.all(np.isfinite(leaf)), (name, jax.tree_util.keystr(path))
    if name == 'mixed':
      hlo = jax.jit(loss).lower(params, image).as_text()
      kinds = _convolution_dtypes(hlo)
      assert 'bf16' in kinds and 'f32' in kinds  # the 8² block and the epilogue stay float32
  assert _rel_l2(logits['mixed'], logits['fp32']) < REL_L2_BOUND  # measured 0.06 %
  assert _rel_l2(logits['bf16'], logits['fp32']) < REL_L2_BOUND  # measured 0.04 %
