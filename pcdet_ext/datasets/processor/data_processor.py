"""DATA_PROCESSOR queue, as OpenPCDet: range masking, point shuffling, voxelisation.

Exposes grid_size, voxel_size, point_cloud_range (the dataset republishes them; models size
their grids from them).
"""
from __future__ import annotations

import numpy as np

from ...geometry import mask_boxes_outside_range


def mask_points_by_range(points: np.ndarray, limit_range) -> np.ndarray:
    """x/y inside the range (z is left to the voxeliser, as OpenPCDet)."""
    return ((points[:, 0] >= limit_range[0]) & (points[:, 0] <= limit_range[3]) &
            (points[:, 1] >= limit_range[1]) & (points[:, 1] <= limit_range[4]))


class DataProcessor:
    PROCESSORS = ('mask_points_and_boxes_outside_range', 'shuffle_points',
                  'transform_points_to_voxels')

    def __init__(self, processor_configs, point_cloud_range, training, num_point_features, seed=None):
        self.point_cloud_range = np.asarray(point_cloud_range, dtype=np.float32)
        self.training = training
        self.num_point_features = num_point_features
        self.mode = 'train' if training else 'test'
        self.grid_size = self.voxel_size = None
        self.rng = np.random.default_rng(seed)
        self.data_processor_queue = []
        for cur_cfg in processor_configs or []:
            name = cur_cfg.NAME
            if name not in self.PROCESSORS:
                raise ValueError(f'DATA_PROCESSOR: unknown NAME {name!r}; known: {list(self.PROCESSORS)}')
            self.data_processor_queue.append(getattr(self, name)(cur_cfg))

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def mask_points_and_boxes_outside_range(self, config):
        remove_boxes = bool(config.get('REMOVE_OUTSIDE_BOXES', True))
        use_center = bool(config.get('USE_CENTER_TO_FILTER', True))
        min_corners = int(config.get('min_num_corners', 1))
        pcr = self.point_cloud_range

        def run(data_dict):
            if data_dict.get('points') is not None:
                data_dict['points'] = data_dict['points'][mask_points_by_range(data_dict['points'], pcr)]
            boxes = data_dict.get('gt_boxes')
            if boxes is not None and remove_boxes and self.training and len(boxes):
                if use_center:
                    c = boxes[:, 0:3]
                    mask = ((c >= pcr[0:3]) & (c <= pcr[3:6])).all(axis=1)
                else:
                    mask = mask_boxes_outside_range(boxes, pcr, min_num_corners=min_corners)
                data_dict['gt_boxes'] = boxes[mask]
                if 'gt_names' in data_dict and len(data_dict['gt_names']) == len(mask):
                    data_dict['gt_names'] = data_dict['gt_names'][mask]
            return data_dict
        return run

    def shuffle_points(self, config):
        enabled = dict(config.SHUFFLE_ENABLED)

        def run(data_dict):
            if enabled.get(self.mode, False):
                pts = data_dict['points']
                data_dict['points'] = pts[self.rng.permutation(len(pts))]
            return data_dict
        return run

    def transform_points_to_voxels(self, config):
        voxel_size = np.asarray(config.VOXEL_SIZE, dtype=np.float32)
        if voxel_size.shape != (3,) or (voxel_size <= 0).any():
            raise ValueError(f'transform_points_to_voxels: VOXEL_SIZE must be 3 positive numbers, '
                             f'got {list(config.VOXEL_SIZE)}')
        grid = (self.point_cloud_range[3:6] - self.point_cloud_range[0:3]) / voxel_size
        self.grid_size = np.round(grid).astype(np.int64)
        self.voxel_size = list(config.VOXEL_SIZE)
        max_points = int(config.MAX_POINTS_PER_VOXEL)
        max_voxels = int(dict(config.MAX_NUMBER_OF_VOXELS)[self.mode])  # dict(): read both modes
        pcr = self.point_cloud_range

        def run(data_dict):
            from ...ops.voxelize import hard_voxelize
            points = np.ascontiguousarray(data_dict['points'], dtype=np.float32)
            voxels, coords, num_points = hard_voxelize(points, voxel_size.tolist(), pcr.tolist(),
                                                       max_points, max_voxels)
            voxels, coords, num_points = (_np(voxels), _np(coords), _np(num_points))
            if not data_dict.get('use_lead_xyz', True):
                voxels = voxels[..., 3:]
            data_dict['voxels'] = voxels.astype(np.float32)
            data_dict['voxel_coords'] = coords.astype(np.int32)
            data_dict['voxel_num_points'] = num_points.astype(np.int32)
            return data_dict
        return run

    def forward(self, data_dict):
        for proc in self.data_processor_queue:
            data_dict = proc(data_dict)
        return data_dict


def _np(x):
    return x.cpu().numpy() if hasattr(x, 'cpu') else np.asarray(x)
