"""Delegation to spconv 2.x for CUDA tensors.

Used only when the features are on CUDA and `spconv.pytorch` imports (env
PCDET_EXT_SPARSE_BACKEND=native|spconv|auto, default auto, overrides). spconv's CPU path is never
used: its backward calls CUDA streams and its multi-threaded CPU scatter returns wrong sums.
The weight layout is the same ([out, *kernel, in]), so our Parameters are handed to an spconv
"twin" module as they are; checkpoints load across backends.
NOTE: this path needs a GPU with spconv installed; it is not exercised by the CPU test suite.
"""
import os

import torch

_SPCONV = None
_TRIED = False


def _spconv():
    global _SPCONV, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import spconv.pytorch as sp  # noqa: F401
            _SPCONV = sp
        except Exception:  # noqa: BLE001 - any failure means: use the native path
            _SPCONV = None
    return _SPCONV


def spconv_available() -> bool:
    return _spconv() is not None


def backend_mode() -> str:
    mode = os.environ.get('PCDET_EXT_SPARSE_BACKEND', 'auto').strip().lower()
    if mode not in ('auto', 'native', 'spconv'):
        raise ValueError(f"PCDET_EXT_SPARSE_BACKEND={mode!r}: expected 'auto', 'native' or 'spconv'")
    return mode


def use_spconv(features: torch.Tensor) -> bool:
    """True when this call should go to spconv (CUDA features, spconv importable, not forced native)."""
    if not features.is_cuda:
        return False
    mode = backend_mode()
    if mode == 'native':
        return False
    if mode == 'spconv' and not spconv_available():
        raise ValueError('PCDET_EXT_SPARSE_BACKEND=spconv but spconv.pytorch cannot be imported')
    return spconv_available()


def _twin(module):
    """An spconv module with the same hyper-parameters that uses `module`'s own Parameters."""
    twin = module.__dict__.get('_spconv_twin')
    if twin is None:
        sp = _spconv()
        nd = module.ndim
        if module.inverse:
            twin = getattr(sp, f'SparseInverseConv{nd}d')(
                module.in_channels, module.out_channels, module.kernel_size, indice_key=module.indice_key,
                bias=module.bias is not None, algo=module.algo)
        else:
            cls = getattr(sp, f'SubMConv{nd}d' if module.subm else f'SparseConv{nd}d')
            twin = cls(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                       padding=module.padding, dilation=module.dilation, bias=module.bias is not None,
                       indice_key=module.indice_key, algo=module.algo)
        if tuple(twin.weight.shape) != tuple(module.weight.shape):
            raise ValueError(f'{type(module).__name__}: spconv weight shape {tuple(twin.weight.shape)} differs '
                             f'from ours {tuple(module.weight.shape)}')
        # Stored outside _modules so it never shows up in state_dict / parameters().
        module.__dict__['_spconv_twin'] = twin
    twin._parameters['weight'] = module.weight
    twin._parameters['bias'] = module.bias
    twin.train(module.training)
    return twin


def run(module, x):
    """Run `module` (our SparseConvolution) through spconv; returns our SparseConvTensor."""
    from .tensor import SparseConvTensor
    sp = _spconv()
    sp_in = sp.SparseConvTensor(x.features, x.indices.int(), x.spatial_shape, x.batch_size,
                                grid=x.grid, voxel_num=x.voxel_num)
    sp_in.indice_dict = x.indice_dict  # shared: rulebooks persist across our/spconv tensors
    sp_out = _twin(module)(sp_in)
    return SparseConvTensor(sp_out.features, sp_out.indices, sp_out.spatial_shape, sp_out.batch_size,
                            grid=x.grid, indice_dict=sp_out.indice_dict, _validate=False)
