"""BaseBEVBackbone: strided 2D conv stages over the BEV map, each upsampled back and concatenated."""
import numpy as np
import torch
import torch.nn as nn

from ...registry import register


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


@register('backbone_2d')
class BaseBEVBackbone(nn.Module):
    def __init__(self, model_cfg, input_channels, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        layer_nums = list(self.model_cfg.get('LAYER_NUMS', []) or [])
        layer_strides = list(self.model_cfg.get('LAYER_STRIDES', []) or [])
        num_filters = list(self.model_cfg.get('NUM_FILTERS', []) or [])
        upsample_strides = list(self.model_cfg.get('UPSAMPLE_STRIDES', []) or [])
        num_upsample_filters = list(self.model_cfg.get('NUM_UPSAMPLE_FILTERS', []) or [])
        if not (len(layer_nums) == len(layer_strides) == len(num_filters)):
            raise ValueError(f'BACKBONE_2D: LAYER_NUMS, LAYER_STRIDES and NUM_FILTERS must have the same length, '
                             f'got {layer_nums}, {layer_strides}, {num_filters}')
        if len(upsample_strides) != len(num_upsample_filters):
            raise ValueError(f'BACKBONE_2D: UPSAMPLE_STRIDES and NUM_UPSAMPLE_FILTERS must have the same length, '
                             f'got {upsample_strides}, {num_upsample_filters}')
        num_levels = len(layer_nums)
        if num_levels == 0:
            raise ValueError('BACKBONE_2D: LAYER_NUMS / LAYER_STRIDES / NUM_FILTERS must describe at least one stage')
        c_in_list = [input_channels, *num_filters[:-1]]
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        for idx in range(num_levels):
            layers = [nn.ZeroPad2d(1),
                      nn.Conv2d(c_in_list[idx], num_filters[idx], 3, stride=layer_strides[idx], padding=0, bias=False),
                      _bn(num_filters[idx]), nn.ReLU()]
            for _ in range(layer_nums[idx]):
                layers += [nn.Conv2d(num_filters[idx], num_filters[idx], 3, padding=1, bias=False),
                           _bn(num_filters[idx]), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            if len(upsample_strides) > 0:
                stride = upsample_strides[idx]
                if stride >= 1:
                    self.deblocks.append(nn.Sequential(
                        nn.ConvTranspose2d(num_filters[idx], num_upsample_filters[idx], int(stride), stride=int(stride),
                                           bias=False), _bn(num_upsample_filters[idx]), nn.ReLU()))
                else:
                    stride = int(np.round(1 / stride))
                    self.deblocks.append(nn.Sequential(
                        nn.Conv2d(num_filters[idx], num_upsample_filters[idx], stride, stride=stride, bias=False),
                        _bn(num_upsample_filters[idx]), nn.ReLU()))
        c_in = sum(num_upsample_filters) if len(num_upsample_filters) > 0 else num_filters[-1]
        if len(upsample_strides) > num_levels:
            self.deblocks.append(nn.Sequential(
                nn.ConvTranspose2d(c_in, c_in, int(upsample_strides[-1]), stride=int(upsample_strides[-1]), bias=False),
                _bn(c_in), nn.ReLU()))
        self.num_bev_features = c_in

    def forward(self, data_dict):
        spatial_features = data_dict['spatial_features']
        ups = []
        x = spatial_features
        for i in range(len(self.blocks)):
            x = self.blocks[i](x)
            stride = int(spatial_features.shape[2] // x.shape[2])
            data_dict['spatial_features_%dx' % stride] = x
            ups.append(self.deblocks[i](x) if len(self.deblocks) > 0 else x)
        if len(ups) > 1:
            x = torch.cat(ups, dim=1)
        elif len(ups) == 1:
            x = ups[0]
        if len(self.deblocks) > len(self.blocks):
            x = self.deblocks[-1](x)
        data_dict['spatial_features_2d'] = x
        return data_dict
