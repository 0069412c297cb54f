"""POINT_FEATURE_ENCODING: pick and order the per-point features the network sees."""
from __future__ import annotations

import numpy as np


class PointFeatureEncoder:
    """Config keys: encoding_type (absolute_coordinates_encoding), used_feature_list,
    src_feature_list. x, y, z always lead."""

    ENCODINGS = ('absolute_coordinates_encoding',)

    def __init__(self, config, point_cloud_range=None):
        self.point_encoding_config = config
        self.encoding_type = config.encoding_type
        self.used_feature_list = list(config.used_feature_list)
        self.src_feature_list = list(config.src_feature_list)
        self.point_cloud_range = point_cloud_range
        if self.encoding_type not in self.ENCODINGS:
            raise ValueError(f'POINT_FEATURE_ENCODING.encoding_type {self.encoding_type!r} is not '
                             f'supported; known: {list(self.ENCODINGS)}')
        if self.src_feature_list[0:3] != ['x', 'y', 'z']:
            raise ValueError(f'POINT_FEATURE_ENCODING.src_feature_list must start with x, y, z; '
                             f'got {self.src_feature_list}')
        missing = [f for f in self.used_feature_list if f not in self.src_feature_list]
        if missing:
            raise ValueError(f'POINT_FEATURE_ENCODING.used_feature_list has {missing} which are '
                             f'not in src_feature_list {self.src_feature_list}')
        self._extra_idx = [self.src_feature_list.index(f) for f in self.used_feature_list
                           if f not in ('x', 'y', 'z')]

    @property
    def num_point_features(self) -> int:
        return 3 + len(self._extra_idx)

    def forward(self, data_dict):
        data_dict['points'], data_dict['use_lead_xyz'] = getattr(self, self.encoding_type)(
            data_dict['points'])
        return data_dict

    def absolute_coordinates_encoding(self, points):
        if points.shape[1] < len(self.src_feature_list):
            raise ValueError(f'points have {points.shape[1]} features but src_feature_list '
                             f'names {len(self.src_feature_list)}: {self.src_feature_list}')
        feats = np.concatenate([points[:, 0:3]] + [points[:, i:i + 1] for i in self._extra_idx], axis=1)
        return feats, True
