"""Sparse convolution modules with spconv 2.x names, arguments and weight layout [out, *kernel, in]."""
import math
from typing import Optional

import torch
from torch import nn

from . import spconv_backend
from .functional import sparse_conv_features
from .modules import SparseModule
from .rulebook import Rulebook, build_conv_rulebook, build_subm_rulebook
from .tensor import SparseConvTensor


def _tuple(value, ndim: int, name: str, cls: str):
    if isinstance(value, int):
        out = (value,) * ndim
    else:
        out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise ValueError(f'{cls}: {name} {value!r} must be an int or {ndim} ints')
    return out


class SparseConvolution(SparseModule):
    """Base of all sparse convs. `weight`: (out, *kernel_size, in); `bias`: (out,) or None."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, subm: bool = False, output_padding=0,
                 transposed: bool = False, inverse: bool = False, indice_key: Optional[str] = None,
                 algo=None, fp32_accum=None, name=None):
        super().__init__()
        cls = type(self).__name__
        if groups != 1:
            raise ValueError(f'{cls}: groups={groups} is not supported (only 1)')
        if transposed:
            raise ValueError(f'{cls}: transposed sparse conv is not supported; use SparseInverseConv{ndim}d')
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f'{cls}: in_channels and out_channels must be positive, got {in_channels}, {out_channels}')
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple(kernel_size, ndim, 'kernel_size', cls)
        self.stride = _tuple(stride, ndim, 'stride', cls)
        self.padding = _tuple(padding, ndim, 'padding', cls)
        self.dilation = _tuple(dilation, ndim, 'dilation', cls)
        self.output_padding = _tuple(output_padding, ndim, 'output_padding', cls)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f'{cls}: kernel_size/stride/dilation must be >= 1 and padding >= 0, got '
                             f'{self.kernel_size}/{self.stride}/{self.dilation}/{self.padding}')
        self.groups = groups
        self.subm = subm
        self.transposed = transposed
        self.inverse = inverse
        self.indice_key = indice_key
        self.algo = algo
        self.fp32_accum = fp32_accum
        self.name = name
        self.conv1x1 = math.prod(self.kernel_size) == 1
        if subm:
            if any(k % 2 == 0 for k in self.kernel_size):
                raise ValueError(f'{cls}: kernel_size {self.kernel_size} must be odd for a submanifold conv')
            if self.stride != (1,) * ndim:
                raise ValueError(f'{cls}: a submanifold conv has stride 1, got {self.stride}')
        if inverse and indice_key is None:
            raise ValueError(f'{cls}: an inverse conv needs the indice_key of the conv it inverts')
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # kaiming_uniform(a=sqrt(5)) over fan_in = in * prod(kernel), as torch's ConvNd does.
        fan_in = self.in_channels * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
             f'padding={self.padding}, dilation={self.dilation}')
        if self.bias is None:
            s += ', bias=False'
        if self.indice_key is not None:
            s += f', indice_key={self.indice_key!r}'
        return s

    # --- rulebooks -------------------------------------------------------------------------
    def _rulebook(self, x: SparseConvTensor) -> Rulebook:
        cls = type(self).__name__
        key = self.indice_key
        cached = x.indice_dict.get(key) if key is not None else None
        if cached is not None and not isinstance(cached, Rulebook):
            raise ValueError(f'{cls}: indice_key {key!r} holds a {type(cached).__name__} (from the spconv '
                             'backend); do not mix CUDA/spconv and native tensors in one network')
        if self.inverse:
            if cached is None:
                raise ValueError(f'{cls}: indice_key {key!r} not found; run the SparseConv{self.ndim}d with '
                                 f'this key first (known keys: {list(x.indice_dict)})')
            if cached.kind != 'conv':
                raise ValueError(f'{cls}: indice_key {key!r} belongs to a {cached.kind} conv; an inverse conv '
                                 'needs a strided/padded SparseConv key')
            if cached.kernel_size != self.kernel_size:
                raise ValueError(f'{cls}: kernel_size {self.kernel_size} differs from the forward conv '
                                 f'{cached.kernel_size} of indice_key {key!r}')
            rb = cached.inverted()
            if rb.n_in != x.features.shape[0] or rb.in_spatial_shape != list(x.spatial_shape):
                raise ValueError(f'{cls}: input has {x.features.shape[0]} sites at {x.spatial_shape} but the conv '
                                 f'of indice_key {key!r} produced {rb.n_in} at {rb.in_spatial_shape}')
            return rb
        if self.subm:
            if cached is not None:
                if cached.kind != 'subm' or cached.kernel_size != self.kernel_size or \
                        cached.dilation != self.dilation:
                    raise ValueError(f'{cls}: indice_key {key!r} is used by a {cached.kind} conv with kernel '
                                     f'{cached.kernel_size}, dilation {cached.dilation}; this layer has '
                                     f'{self.kernel_size}, {self.dilation}: use another key')
                if cached.n_in != x.features.shape[0] or cached.in_spatial_shape != list(x.spatial_shape):
                    raise ValueError(f'{cls}: indice_key {key!r} was built for {cached.n_in} sites, input '
                                     f'has {x.features.shape[0]}: use another key')
                return cached
            rb = build_subm_rulebook(x.indices, x.spatial_shape, self.kernel_size, self.dilation)
        else:
            if cached is not None:
                same = (cached.kind == 'conv' and cached.in_indices is x.indices
                        and (cached.kernel_size, cached.stride, cached.padding, cached.dilation)
                        == (self.kernel_size, self.stride, self.padding, self.dilation))
                if not same:
                    raise ValueError(f'{cls}: indice_key {key!r} already exists in this sparse tensor; '
                                     'give every strided conv its own key')
                return cached
            rb = build_conv_rulebook(x.indices, x.spatial_shape, self.kernel_size, self.stride,
                                     self.padding, self.dilation)
        if key is not None:
            x.indice_dict[key] = rb
        return rb

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        cls = type(self).__name__
        if not isinstance(x, SparseConvTensor):
            raise ValueError(f'{cls}: input must be a SparseConvTensor, got {type(x).__name__}')
        if x.features.shape[1] != self.in_channels:
            raise ValueError(f'{cls}: input has {x.features.shape[1]} channels, expected {self.in_channels}')
        if len(x.spatial_shape) != self.ndim:
            raise ValueError(f'{cls}: input spatial_shape {x.spatial_shape} is not {self.ndim}-D')
        if spconv_backend.use_spconv(x.features):
            return spconv_backend.run(self, x)
        rb = self._rulebook(x)
        features = sparse_conv_features(x.features, self.weight, self.bias, rb)
        return SparseConvTensor(features, rb.out_indices, rb.out_spatial_shape, x.batch_size,
                                grid=x.grid, indice_dict=x.indice_dict, benchmark=x.benchmark, _validate=False)


class _RegularConv(SparseConvolution):
    _ndim = 3
    _subm = False

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, indice_key=None, algo=None, fp32_accum=None, name=None):
        super().__init__(self._ndim, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, subm=self._subm, indice_key=indice_key, algo=algo, fp32_accum=fp32_accum, name=name)


class _InverseConv(SparseConvolution):
    _ndim = 3

    def __init__(self, in_channels, out_channels, kernel_size, indice_key=None, bias=True, algo=None,
                 fp32_accum=None, name=None):
        super().__init__(self._ndim, in_channels, out_channels, kernel_size, bias=bias, inverse=True,
                         indice_key=indice_key, algo=algo, fp32_accum=fp32_accum, name=name)


class SubMConv3d(_RegularConv):
    """Submanifold conv: outputs only at the input sites (see rulebook.py for the exact meaning)."""
    _ndim, _subm = 3, True


class SparseConv3d(_RegularConv):
    """Regular sparse conv (stride, padding, dilation): outputs wherever an active input reaches."""
    _ndim, _subm = 3, False


class SparseInverseConv3d(_InverseConv):
    """Transpose of the SparseConv3d with the same indice_key, back onto that conv's input sites."""
    _ndim = 3


class SubMConv2d(_RegularConv):
    _ndim, _subm = 2, True


class SparseConv2d(_RegularConv):
    _ndim, _subm = 2, False


class SparseInverseConv2d(_InverseConv):
    _ndim = 2
