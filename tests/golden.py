"""Loading the PyTorch golden files (``../shared/golden/<name>.npz`` + ``.json``) for parity tests.

Legend: ``b`` batch, ``c`` channels, ``h w`` image rows/columns, ``o i`` output/input
channels of a conv kernel, ``kh kw`` kernel rows/columns.

The goldens are stored in torch layouts (activations NCHW, conv weights OIHW, dense weights
``[out, in]``); see ``../shared/golden/README.md``. A golden whose file is missing skips the
test that asked for it, so a checkout without ``../shared`` still runs the rest of the suite.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax import assets


def golden_dir() -> pathlib.Path:
  """``$HEAD360_GOLDEN`` or the ``golden/`` folder beside the shared data folder."""
  if 'HEAD360_GOLDEN' in os.environ:
    return pathlib.Path(os.environ['HEAD360_GOLDEN'])
  return assets.REPO_ROOT.parent / 'shared' / 'golden'


def load_golden(name: str) -> tuple[dict[str, np.ndarray], dict]:
  """Returns ``(arrays, meta)`` of golden ``name``; skips the calling test if it is absent.

  ``arrays`` maps the npz keys (``in/x``, ``param/weight``, ``out/y``, ``cot/y``, ``grad/x``)
  to numpy arrays; ``meta`` is the parsed ``.json`` sidecar.
  """
  path = golden_dir() / f'{name}.npz'
  if not path.exists():
    pytest.skip(f'golden {path} not found (set HEAD360_GOLDEN)')
  with np.load(path) as data:
    arrays = {key: data[key] for key in data.files}
  meta = json.loads(path.with_suffix('.json').read_text())
  return arrays, meta


def tolerance(meta: dict, key: str) -> dict[str, float]:
  """The sidecar's recommended ``{'rtol': ..., 'atol': ...}`` for output/gradient ``key`` (e.g. 'out/y')."""
  tol = meta['parity']['recommended_tolerance'][key]
  return {'rtol': tol['rtol'], 'atol': tol['atol']}


def assert_close(actual, meta: dict, arrays: dict[str, np.ndarray], key: str) -> float:
  """Asserts ``actual`` (in the golden's layout) matches ``arrays[key]``; returns the max abs error."""
  expected = arrays[key]
  actual = np.asarray(actual)
  assert actual.shape == expected.shape, f'{key}: shape {actual.shape} != {expected.shape}'
  np.testing.assert_allclose(actual, expected, **tolerance(meta, key), err_msg=key)
  return float(np.max(np.abs(actual - expected)))


def params_with_prefix(arrays: dict[str, np.ndarray], prefix: str = '') -> dict[str, np.ndarray]:
  """The ``param/<prefix>...`` entries with ``param/<prefix>`` stripped (e.g. prefix 'b4.conv1.')."""
  start = f'param/{prefix}'
  return {key[len(start) :]: value for key, value in arrays.items() if key.startswith(start)}


def nchw_to_nhwc(x):
  """(b, c, h, w) -> (b, h, w, c); numpy or jax arrays (also under tracing)."""
  return x.transpose(0, 2, 3, 1)


def nhwc_to_nchw(x):
  """(b, h, w, c) -> (b, c, h, w); numpy or jax arrays (also under tracing)."""
  return x.transpose(0, 3, 1, 2)


def oihw_to_hwio(w):
  """Torch conv weight (o, i, kh, kw) -> (kh, kw, i, o) for ``('NHWC', 'HWIO', 'NHWC')`` convolutions."""
  return w.transpose(2, 3, 1, 0)


def load_torch_params(module, params: dict[str, np.ndarray], skip: tuple[str, ...] = ('resample_filter',)) -> None:
  """Copies a torch ``state_dict`` into an NNX module whose attribute names mirror the torch names.

  ``params`` maps dotted names (``b4.conv1.affine.weight``) to arrays. Conv weights (4-D) go from
  OIHW to HWIO, dense weights (2-D ``weight``) are transposed to (in, out), consts (3-D) from CHW
  to HWC; everything else is copied as is. Keys whose last part is in ``skip`` are ignored.
  Works on abstract modules (``nnx.eval_shape``) too: see ``build``.

  Raises:
    AssertionError: if a key has no matching variable or the converted shape differs.
  """
  for name, value in params.items():
    *path, leaf = name.split('.')
    if leaf in skip:
      continue
    owner = module
    for part in path:
      owner = getattr(owner, part)
    variable = getattr(owner, leaf, None)
    assert variable is not None, f'{name}: no such variable in {type(owner).__name__}'
    if value.ndim == 4:
      value = oihw_to_hwio(value)
    elif value.ndim == 3:
      value = np.transpose(value, (1, 2, 0))
    elif value.ndim == 2 and leaf == 'weight':
      value = value.T
    assert variable.shape == value.shape, f'{name}: {variable.shape} != {value.shape}'
    variable.set_value(jnp.asarray(value))


def build(factory, params: dict[str, np.ndarray], skip: tuple[str, ...] = ('resample_filter',)):
  """``factory()`` built abstractly (no random init, which compiles slowly on CPU), then loaded from ``params``.

  Raises:
    AssertionError: as ``load_torch_params``, or if a variable of the module got no value.
  """
  module = nnx.eval_shape(factory)
  load_torch_params(module, params, skip)
  missing = [path for path, node in nnx.iter_graph(module) if isinstance(node, nnx.Variable) and not _concrete(node)]
  assert not missing, f'variables without a golden value: {missing}'
  return module


def _concrete(variable) -> bool:
  return isinstance(variable.get_value(), jax.Array)


def check_golden(fn, arrays: dict[str, np.ndarray], meta: dict, inputs: tuple[str, ...]) -> dict[str, float]:
  """Runs ``fn(**{name: in/<name>})`` and compares its outputs and input gradients with the golden.

  ``fn`` takes and returns arrays in the golden's (torch) layout and returns a dict ``{name:
  output}``; every ``out/<name>`` present is compared. Gradients come from ``jax.vjp`` with the
  golden's cotangents ``cot/<name>`` (zero for outputs without one) and are compared with
  ``grad/<input>`` where the golden has them. Returns the max abs error per compared key.
  """
  args = {name: jnp.asarray(arrays[f'in/{name}']) for name in inputs}
  outputs, vjp = jax.vjp(lambda a: fn(**a), args)
  errors = {f'out/{k}': assert_close(v, meta, arrays, f'out/{k}') for k, v in outputs.items() if f'out/{k}' in arrays}
  cotangents = {k: jnp.asarray(arrays.get(f'cot/{k}', np.zeros(v.shape, v.dtype))) for k, v in outputs.items()}
  (grads,) = vjp(cotangents)
  for name, grad in grads.items():
    if f'grad/{name}' in arrays:
      errors[f'grad/{name}'] = assert_close(grad, meta, arrays, f'grad/{name}')
  print(meta['name'], {k: f'{v:.2e}' for k, v in errors.items()})
  return errors


def random_build(factory, seed: int = 0, scale: float = 0.5):
  """``factory()`` built abstractly with every variable set to numpy ``N(0, scale**2)`` values.

  For property tests that do not depend on the initialisation: jax's random init compiles one
  program per parameter shape, which costs seconds on a loaded 2-core CPU.
  """
  module = nnx.eval_shape(factory)
  rng = np.random.default_rng(seed)
  for _, node in nnx.iter_graph(module):
    if isinstance(node, nnx.Variable):
      node.set_value(jnp.asarray(scale * rng.standard_normal(node.shape), jnp.float32))
  return module
