"""PillarVFE (PointPillars): a PointNet over the points of each pillar, max-pooled to one feature."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import register
from .vfe_template import VFETemplate


class PFNLayer(nn.Module):
    def __init__(self, in_channels, out_channels, use_norm=True, last_layer=False):
        super().__init__()
        self.last_vfe = last_layer
        self.use_norm = use_norm
        if not self.last_vfe:  # non-last layers concatenate the pooled feature back: half width each
            out_channels = out_channels // 2
        if self.use_norm:
            self.linear = nn.Linear(in_channels, out_channels, bias=False)
            self.norm = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01)
        else:
            self.linear = nn.Linear(in_channels, out_channels, bias=True)

    def forward(self, inputs):
        x = self.linear(inputs)  # (V, P, C)
        if self.use_norm:
            x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)
        x = F.relu(x)
        x_max = torch.max(x, dim=1, keepdim=True)[0]
        if self.last_vfe:
            return x_max
        return torch.cat([x, x_max.repeat(1, inputs.shape[1], 1)], dim=2)


@register('vfe')
class PillarVFE(VFETemplate):
    def __init__(self, model_cfg, num_point_features, voxel_size, point_cloud_range, **kwargs):
        super().__init__(model_cfg=model_cfg)
        self.use_norm = self.model_cfg.USE_NORM
        self.with_distance = self.model_cfg.WITH_DISTANCE
        self.use_absolute_xyz = self.model_cfg.USE_ABSLOTE_XYZ  # OpenPCDet's spelling of the key
        self.num_filters = list(self.model_cfg.NUM_FILTERS)
        if len(self.num_filters) == 0:
            raise ValueError('VFE.NUM_FILTERS must list at least one layer width')
        # point features + offset to the pillar's point mean (3) + offset to the pillar centre (3)
        num_point_features += 6 if self.use_absolute_xyz else 3
        if self.with_distance:
            num_point_features += 1
        num_filters = [num_point_features] + self.num_filters
        self.pfn_layers = nn.ModuleList([
            PFNLayer(num_filters[i], num_filters[i + 1], self.use_norm, last_layer=(i >= len(num_filters) - 2))
            for i in range(len(num_filters) - 1)])
        self.voxel_x, self.voxel_y, self.voxel_z = (float(v) for v in voxel_size)
        self.x_offset = self.voxel_x / 2 + float(point_cloud_range[0])
        self.y_offset = self.voxel_y / 2 + float(point_cloud_range[1])
        self.z_offset = self.voxel_z / 2 + float(point_cloud_range[2])

    def get_output_feature_dim(self):
        return self.num_filters[-1]

    @staticmethod
    def get_paddings_indicator(actual_num, max_num, axis=0):
        actual_num = torch.unsqueeze(actual_num, axis + 1)
        shape = [1] * len(actual_num.shape)
        shape[axis + 1] = -1
        max_num = torch.arange(max_num, dtype=torch.int, device=actual_num.device).view(shape)
        return actual_num.int() > max_num

    def forward(self, batch_dict, **kwargs):
        voxel_features, voxel_num_points, coords = (batch_dict['voxels'], batch_dict['voxel_num_points'],
                                                    batch_dict['voxel_coords'])  # coords: (b, z, y, x)
        npts = voxel_num_points.type_as(voxel_features).clamp(min=1).view(-1, 1, 1)
        points_mean = voxel_features[:, :, :3].sum(dim=1, keepdim=True) / npts
        f_cluster = voxel_features[:, :, :3] - points_mean
        coords = coords.to(voxel_features.dtype)
        f_center = torch.stack([
            voxel_features[:, :, 0] - (coords[:, 3:4] * self.voxel_x + self.x_offset),
            voxel_features[:, :, 1] - (coords[:, 2:3] * self.voxel_y + self.y_offset),
            voxel_features[:, :, 2] - (coords[:, 1:2] * self.voxel_z + self.z_offset)], dim=-1)
        if self.use_absolute_xyz:
            features = [voxel_features, f_cluster, f_center]
        else:
            features = [voxel_features[..., 3:], f_cluster, f_center]
        if self.with_distance:
            features.append(torch.norm(voxel_features[:, :, :3], 2, 2, keepdim=True))
        features = torch.cat(features, dim=-1)
        # Padding slots must stay exactly zero (their offsets would otherwise be non-zero).
        mask = self.get_paddings_indicator(voxel_num_points, features.shape[1], axis=0)
        features = features * mask.unsqueeze(-1).type_as(features)
        for pfn in self.pfn_layers:
            features = pfn(features)
        batch_dict['pillar_features'] = features.squeeze(dim=1)
        return batch_dict
