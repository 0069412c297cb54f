"""Backend choice for the ops: compiled kernels when built, else the pure-PyTorch reference.

`setup.py` builds `pcdet_ext.ops._C_cpu` (C++/OpenMP) and, with a CUDA torch, `_C_cuda`.
Either may be missing (no compiler, CPU torch); the reference always works.
Set PCDET_EXT_OPS=reference to force the reference (read at each call, so tests can flip it).
Each op logs once, on logger 'pcdet_ext.ops', which backend it uses.
"""
from __future__ import annotations

import importlib
import logging
import os

import torch

log = logging.getLogger('pcdet_ext.ops')

_modules: dict = {}
_reported: set = set()
_load_errors: dict = {}


def _load(name: str):
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(f'pcdet_ext.ops.{name}')
        except ImportError as e:  # not built here: fine, the reference covers it
            _modules[name] = None
            _load_errors[name] = str(e)
    return _modules[name]


def forced_reference() -> bool:
    return os.environ.get('PCDET_EXT_OPS', '').strip().lower() == 'reference'


def compiled_module(device: torch.device):
    """The compiled module for tensors on `device`, or None (then use the reference)."""
    if forced_reference():
        return None
    return _load('_C_cuda' if device.type == 'cuda' else '_C_cpu' if device.type == 'cpu' else '_none')


def pick(op: str, device: torch.device, attr: str = None):
    """Compiled module for `op` on `device` or None; logs the choice once per (op, backend).
    `attr`: the kernel the caller needs; a module without it counts as not built."""
    mod = compiled_module(device)
    if mod is not None and attr is not None and not hasattr(mod, attr):
        mod = None
    name = 'reference' if mod is None else ('cuda' if device.type == 'cuda' else 'cpu-compiled')
    key = (op, name)
    if key not in _reported:
        _reported.add(key)
        why = ''
        if mod is None:
            why = ' (PCDET_EXT_OPS=reference)' if forced_reference() else ' (no compiled kernel here)'
        log.info('pcdet_ext.ops.%s: using the %s backend%s', op, name, why)
    return mod


def available() -> dict:
    """Which compiled modules import here, for diagnostics and tests."""
    return {'cpu': _load('_C_cpu') is not None, 'cuda': _load('_C_cuda') is not None,
            'errors': dict(_load_errors)}
