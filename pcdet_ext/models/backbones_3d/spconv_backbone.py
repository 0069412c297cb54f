"""SECOND's sparse 3D backbones: VoxelBackBone8x (plain) and VoxelResBackBone8x (residual blocks).

Both downsample the voxel grid 8x in x/y (and to a few cells in z) through submanifold and
strided sparse convolutions; module and attribute names follow OpenPCDet so that checkpoints load.
"""
from functools import partial

import numpy as np
import torch.nn as nn

from ...ops import sparse as spconv
from ...registry import register


def post_act_block(in_channels, out_channels, kernel_size, indice_key=None, stride=1, padding=0,
                   conv_type='subm', norm_fn=None):
    if conv_type == 'subm':
        conv = spconv.SubMConv3d(in_channels, out_channels, kernel_size, bias=False, indice_key=indice_key)
    elif conv_type == 'spconv':
        conv = spconv.SparseConv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                   bias=False, indice_key=indice_key)
    elif conv_type == 'inverseconv':
        conv = spconv.SparseInverseConv3d(in_channels, out_channels, kernel_size, indice_key=indice_key, bias=False)
    else:
        raise ValueError(f'post_act_block: unknown conv_type {conv_type!r}')
    return spconv.SparseSequential(conv, norm_fn(out_channels), nn.ReLU())


def _norm_fn():
    return partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)


def _sparse_shape(grid_size):
    # (z, y, x) with one extra z cell, as OpenPCDet (41 cells for KITTI's 40).
    return np.array(grid_size[::-1]) + [1, 0, 0]


def _encode(batch_dict, out, xs, stride=8):
    batch_dict['encoded_spconv_tensor'] = out
    batch_dict['encoded_spconv_tensor_stride'] = stride
    batch_dict['multi_scale_3d_features'] = {'x_conv1': xs[0], 'x_conv2': xs[1], 'x_conv3': xs[2], 'x_conv4': xs[3]}
    batch_dict['multi_scale_3d_strides'] = {'x_conv1': 1, 'x_conv2': 2, 'x_conv3': 4, 'x_conv4': 8}
    return batch_dict


def _input_tensor(batch_dict, sparse_shape):
    voxel_features, voxel_coords = batch_dict['voxel_features'], batch_dict['voxel_coords']
    return spconv.SparseConvTensor(features=voxel_features, indices=voxel_coords.int(),
                                   spatial_shape=sparse_shape, batch_size=int(batch_dict['batch_size']))


class _Backbone8xBase(nn.Module):
    """What both 8x backbones share: the z-downsampling output conv and the forward pass through
    conv_input, conv1..conv4, conv_out (the subclasses build those stages)."""

    def _make_conv_out(self, in_channels, norm_fn):
        last_pad = self.model_cfg.get('last_pad', 0)  # OpenPCDet's (lower-case) key
        return spconv.SparseSequential(
            spconv.SparseConv3d(in_channels, 128, (3, 1, 1), stride=(2, 1, 1), padding=last_pad, bias=False,
                                indice_key='spconv_down2'),
            norm_fn(128), nn.ReLU())

    def forward(self, batch_dict):
        x = self.conv_input(_input_tensor(batch_dict, self.sparse_shape))
        x_conv1 = self.conv1(x)
        x_conv2 = self.conv2(x_conv1)
        x_conv3 = self.conv3(x_conv2)
        x_conv4 = self.conv4(x_conv3)
        out = self.conv_out(x_conv4)
        return _encode(batch_dict, out, [x_conv1, x_conv2, x_conv3, x_conv4])


@register('backbone_3d')
class VoxelBackBone8x(_Backbone8xBase):
    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        norm_fn = _norm_fn()
        self.sparse_shape = _sparse_shape(grid_size)
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, 16, 3, padding=1, bias=False, indice_key='subm1'),
            norm_fn(16), nn.ReLU())
        block = post_act_block
        self.conv1 = spconv.SparseSequential(block(16, 16, 3, norm_fn=norm_fn, padding=1, indice_key='subm1'))
        self.conv2 = spconv.SparseSequential(
            block(16, 32, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key='spconv2', conv_type='spconv'),
            block(32, 32, 3, norm_fn=norm_fn, padding=1, indice_key='subm2'),
            block(32, 32, 3, norm_fn=norm_fn, padding=1, indice_key='subm2'))
        self.conv3 = spconv.SparseSequential(
            block(32, 64, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key='spconv3', conv_type='spconv'),
            block(64, 64, 3, norm_fn=norm_fn, padding=1, indice_key='subm3'),
            block(64, 64, 3, norm_fn=norm_fn, padding=1, indice_key='subm3'))
        self.conv4 = spconv.SparseSequential(
            block(64, 64, 3, norm_fn=norm_fn, stride=2, padding=(0, 1, 1), indice_key='spconv4', conv_type='spconv'),
            block(64, 64, 3, norm_fn=norm_fn, padding=1, indice_key='subm4'),
            block(64, 64, 3, norm_fn=norm_fn, padding=1, indice_key='subm4'))
        self.conv_out = self._make_conv_out(64, norm_fn)
        self.num_point_features = 128
        self.backbone_channels = {'x_conv1': 16, 'x_conv2': 32, 'x_conv3': 64, 'x_conv4': 64}



class SparseBasicBlock(spconv.SparseModule):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, bias=None, norm_fn=None, downsample=None, indice_key=None):
        super().__init__()
        if bias is None:
            bias = norm_fn is not None
        self.conv1 = spconv.SubMConv3d(inplanes, planes, 3, stride=stride, padding=1, bias=bias, indice_key=indice_key)
        self.bn1 = norm_fn(planes)
        self.relu = nn.ReLU()
        self.conv2 = spconv.SubMConv3d(planes, planes, 3, stride=stride, padding=1, bias=bias, indice_key=indice_key)
        self.bn2 = norm_fn(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out.replace_feature(self.relu(out.features + identity.features))
        return out


@register('backbone_3d')
class VoxelResBackBone8x(_Backbone8xBase):
    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        use_bias = self.model_cfg.get('USE_BIAS', None)
        norm_fn = _norm_fn()
        self.sparse_shape = _sparse_shape(grid_size)
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, 16, 3, padding=1, bias=False, indice_key='subm1'),
            norm_fn(16), nn.ReLU())
        block = post_act_block
        res = partial(SparseBasicBlock, bias=use_bias, norm_fn=norm_fn)
        self.conv1 = spconv.SparseSequential(res(16, 16, indice_key='res1'), res(16, 16, indice_key='res1'))
        self.conv2 = spconv.SparseSequential(
            block(16, 32, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key='spconv2', conv_type='spconv'),
            res(32, 32, indice_key='res2'), res(32, 32, indice_key='res2'))
        self.conv3 = spconv.SparseSequential(
            block(32, 64, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key='spconv3', conv_type='spconv'),
            res(64, 64, indice_key='res3'), res(64, 64, indice_key='res3'))
        self.conv4 = spconv.SparseSequential(
            block(64, 128, 3, norm_fn=norm_fn, stride=2, padding=(0, 1, 1), indice_key='spconv4', conv_type='spconv'),
            res(128, 128, indice_key='res4'), res(128, 128, indice_key='res4'))
        self.conv_out = self._make_conv_out(128, norm_fn)
        self.num_point_features = 128
        self.backbone_channels = {'x_conv1': 16, 'x_conv2': 32, 'x_conv3': 64, 'x_conv4': 128}

