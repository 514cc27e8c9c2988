"""Benchmark: how fast this machine runs PyTorch today, against the day ``reference_cpu.json`` was taken.

Usage (torch is not a project dependency; the wheel lies on these machines)::

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchenv/bin/python bench/torch_calibration.py [--repeats 5] [--json PATH]

The reference's figures were taken once; the shared 2-core machines drift by much more than the
reference's own 25 % note (the same JAX texture forward read 1.29 s and 0.41 s on two days). To
compare like with like, this script times, in torch 2.13 CPU with 2 threads and float32 as the
reference, a plain re-creation of one reference row, the texture StyleGAN2 synthesis (reference
row ``texture``: 256², 32 channels, ``channel_base`` 32768, ``channel_max`` 512, 14 ``ws``, 28.02 M
parameters; reference-spec §3.3): modulated 3x3 convolutions with demodulation in the training
path's non-fused form (scale the input, one convolution, scale the output), the up-sampling ones as
a stride-2 transposed convolution followed by the [1, 3, 3, 1] FIR, noise, bias and leaky ReLU,
1x1 ToRGB layers and the up-sampled skip image, and ``upfirdn2d`` as zero insertion plus a
depthwise convolution (the reference's CPU path). Written here from the architecture, not copied
from the authors' code; its parameter count is checked against the row's.

Prints the forward and forward+backward medians beside the reference file's, and ``factor`` =
today / reference (the mean of the two): multiply a reference figure by it to get the PyTorch time
this machine would give today. ``reference_compare.py --torch-calibration PATH`` prints those
scaled figures and ratios beside the raw ones.
"""

import argparse
import json
import math
import os
import pathlib
import statistics

import timing  # bench/timing.py (no JAX)
import torch
import torch.nn.functional as F

# As head360_jax.assets finds the shared folder (this script runs without the project's packages).
_SHARED_DATA = os.environ.get('HEAD360_SHARED_DATA', pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data')
REFERENCE = pathlib.Path(_SHARED_DATA).parent / 'bench' / 'reference_cpu.json'
CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
W_DIM = 512
SQRT2 = math.sqrt(2.0)


def _fir() -> torch.Tensor:
  taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
  f = taps[:, None] * taps[None, :]
  return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, pad: int | tuple = 0, gain: float = 1.0) -> torch.Tensor:
  """Zero insertion by ``up``, zero padding (x0, x1, y0, y1), then the 2-D FIR as a depthwise convolution."""
  b, c, h, w = x.shape
  px0, px1, py0, py1 = (pad,) * 4 if isinstance(pad, int) else pad
  if up > 1:
    x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
  x = F.pad(x, [px0, px1, py0, py1])
  kernel = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
  return F.conv2d(x, kernel, groups=c)


class Affine(torch.nn.Module):
  """Equalised-lr dense layer ``w -> styles`` (bias initialised to 1)."""

  def __init__(self, out_features: int):
    super().__init__()
    self.weight = torch.nn.Parameter(torch.randn(out_features, W_DIM))
    self.bias = torch.nn.Parameter(torch.ones(out_features))

  def forward(self, w: torch.Tensor) -> torch.Tensor:
    return F.linear(w, self.weight / math.sqrt(W_DIM), self.bias)


class ModulatedLayer(torch.nn.Module):
  """A synthesis layer (3x3, optional x2 up-sampling, noise, bias, lrelu) or a ToRGB layer (1x1, linear)."""

  def __init__(self, cin: int, cout: int, resolution: int, *, up: bool = False, torgb: bool = False):
    super().__init__()
    k = 1 if torgb else 3
    self.affine = Affine(cin)
    self.weight = torch.nn.Parameter(torch.randn(cout, cin, k, k))
    self.bias = torch.nn.Parameter(torch.zeros(cout))
    self.up, self.torgb, self.resolution = up, torgb, resolution
    self.gain = 1.0 / math.sqrt(cin * k * k)
    if not torgb:
      self.noise_strength = torch.nn.Parameter(torch.zeros([]))

  def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    styles = self.affine(w)
    if self.torgb:
      styles = styles * self.gain
    x = x * styles[:, :, None, None]
    if self.up:
      x = F.conv_transpose2d(x, self.weight.transpose(0, 1), stride=2)
      x = upfirdn2d(x, _fir(), pad=1, gain=4.0)
    else:
      x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
    if self.torgb:
      return x + self.bias[None, :, None, None]
    demod = (self.weight[None] * styles[:, None, :, None, None]).square().sum([2, 3, 4]).add(1e-8).rsqrt()
    x = x * demod[:, :, None, None]
    x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution) * self.noise_strength
    return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


class Synthesis(torch.nn.Module):
  """StyleGAN2 'skip' synthesis network, 4² const to 256², ``img_channels`` out."""

  def __init__(self, img_channels: int = 32):
    super().__init__()
    self.const = torch.nn.Parameter(torch.randn(CHANNELS[4], 4, 4))
    self.conv1 = ModulatedLayer(CHANNELS[4], CHANNELS[4], 4)
    self.torgb4 = ModulatedLayer(CHANNELS[4], img_channels, 4, torgb=True)
    self.blocks = torch.nn.ModuleList()
    for res in (8, 16, 32, 64, 128, 256):
      cin, cout = CHANNELS[res // 2], CHANNELS[res]
      self.blocks.append(
        torch.nn.ModuleList(
          [
            ModulatedLayer(cin, cout, res, up=True),
            ModulatedLayer(cout, cout, res),
            ModulatedLayer(cout, img_channels, res, torgb=True),
          ]
        )
      )
    self.num_ws = 2 + 2 * len(self.blocks)

  def forward(self, ws: torch.Tensor) -> torch.Tensor:
    x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
    x = self.conv1(x, ws[:, 0])
    img = self.torgb4(x, ws[:, 1])
    for n, (conv0, conv1, torgb) in enumerate(self.blocks):
      x = conv1(conv0(x, ws[:, 1 + 2 * n]), ws[:, 2 + 2 * n])
      img = upfirdn2d(img, _fir(), up=2, pad=(2, 1, 2, 1), gain=4.0) + torgb(x, ws[:, 3 + 2 * n])
    return img


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=5, help='timed calls after one warm-up (median; the reference: 5)')
  parser.add_argument('--reference', default=str(REFERENCE))
  parser.add_argument('--json', help='write the figures and the factor to this file')
  args = parser.parse_args()
  torch.set_num_threads(2)
  torch.manual_seed(0)
  with open(args.reference) as f:
    row = json.load(f)['components']['texture']
  net = Synthesis()
  params_m = sum(p.numel() for p in net.parameters()) / 1e6
  if abs(params_m - row['params_m']) > 0.01:
    raise SystemExit(f'the re-created network has {params_m:.2f} M parameters, the reference row {row["params_m"]} M')
  ws = torch.randn(1, net.num_ws, W_DIM)
  with torch.no_grad():
    fwd = timing.median_time(lambda: net(ws), args.repeats)
  ws_grad = ws.clone().requires_grad_(True)

  def fwd_bwd():
    net.zero_grad(set_to_none=True)
    ws_grad.grad = None
    net(ws_grad).mean().backward()

  fwd_bwd_s = timing.median_time(fwd_bwd, args.repeats)
  factors = {'fwd': fwd / row['fwd'], 'fwd_bwd': fwd_bwd_s / row['fwd_bwd']}
  result = {
    'torch': torch.__version__,
    'threads': torch.get_num_threads(),
    'params_m': params_m,
    'today': {'fwd': fwd, 'fwd_bwd': fwd_bwd_s},
    'reference': {'fwd': row['fwd'], 'fwd_bwd': row['fwd_bwd']},
    'factors': factors,
    'factor': statistics.mean(factors.values()),
  }
  print(
    f'torch {torch.__version__}, {torch.get_num_threads()} threads, texture synthesis ({params_m:.2f} M parameters)'
  )
  for mode in ('fwd', 'fwd_bwd'):
    print(f'  {mode:8s} today {result["today"][mode]:.3f} s   reference file {row[mode]:.2f} s   x{factors[mode]:.3f}')
  print(f'factor (today / reference): {result["factor"]:.3f}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
