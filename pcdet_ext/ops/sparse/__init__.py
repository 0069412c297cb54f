"""Sparse 3D (and 2D) convolution with spconv 2.x's API.

    from pcdet_ext.ops import sparse as spconv
    x = spconv.SparseConvTensor(features, indices, spatial_shape, batch_size)
    net = spconv.SparseSequential(spconv.SubMConv3d(4, 16, 3, padding=1, bias=False, indice_key='subm1'),
                                  nn.BatchNorm1d(16), nn.ReLU())

Native PyTorch everywhere (rulebooks from sorted int64 keys, gather-GEMM-scatter with
index_add_); spconv on CUDA when installed. Weight layout [out, *kernel, in] on both.
"""
from .conv import (SparseConv2d, SparseConv3d, SparseConvolution, SparseInverseConv2d, SparseInverseConv3d,
                   SubMConv2d, SubMConv3d)
from .functional import sparse_conv_features
from .modules import SparseModule, SparseSequential, ToDense
from .rulebook import Rulebook, build_conv_rulebook, build_subm_rulebook, conv_output_shape
from .spconv_backend import backend_mode, spconv_available
from .tensor import SparseConvTensor

__all__ = [
    'SparseConvTensor', 'SparseModule', 'SparseSequential', 'ToDense', 'SparseConvolution',
    'SubMConv3d', 'SparseConv3d', 'SparseInverseConv3d', 'SubMConv2d', 'SparseConv2d', 'SparseInverseConv2d',
    'Rulebook', 'build_subm_rulebook', 'build_conv_rulebook', 'conv_output_shape', 'sparse_conv_features',
    'spconv_available', 'backend_mode',
]
