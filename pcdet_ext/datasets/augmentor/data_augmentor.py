"""DataAugmentor: the DATA_AUGMENTOR.AUG_CONFIG_LIST queue, as OpenPCDet.

Each entry becomes a callable data_dict -> data_dict built (and its config keys read) in
__init__. All randomness comes from one np.random.Generator (`self.rng`), reseeded per
data-loader worker, so a seeded run replays exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...geometry import limit_period
from . import augmentor_utils
from .database_sampler import DataBaseSampler


class DataAugmentor:
    AUGMENTORS = ('gt_sampling', 'random_world_flip', 'random_world_rotation',
                  'random_world_scaling')

    def __init__(self, root_path, augmentor_configs, class_names, logger=None, seed=None,
                 load_database=True):
        self.root_path = Path(root_path)
        self.class_names = list(class_names)
        self.logger = logger
        self.load_database = load_database
        self.rng = np.random.default_rng(seed)
        self.data_augmentor_queue = []
        if isinstance(augmentor_configs, (list, tuple)):
            aug_list, disabled = augmentor_configs, []
        else:
            aug_list = augmentor_configs.get('AUG_CONFIG_LIST', []) or []
            disabled = list(augmentor_configs.get('DISABLE_AUG_LIST', []) or [])
        for cur_cfg in aug_list:
            name = cur_cfg.NAME
            if name not in self.AUGMENTORS:
                raise ValueError(f'DATA_AUGMENTOR: unknown augmentor NAME {name!r}; known: '
                                 f'{list(self.AUGMENTORS)}')
            aug = getattr(self, name)(cur_cfg)  # reads the entry's keys even when disabled
            if name not in disabled:
                self.data_augmentor_queue.append(aug)

    def reseed(self, seed):
        """New generator (also handed to the gt sampler); called per data-loader worker."""
        self.rng = np.random.default_rng(seed)
        for aug in self.data_augmentor_queue:
            if isinstance(aug, DataBaseSampler):
                aug.rng = self.rng

    def __getstate__(self):
        d = dict(self.__dict__)
        d['logger'] = None
        return d

    # ---- builders: read the config entry now, return the callable -----------------------
    def gt_sampling(self, config):
        return DataBaseSampler(self.root_path, config, self.class_names, logger=self.logger,
                               rng=self.rng, load=self.load_database)

    def random_world_flip(self, config):
        axes = list(config.ALONG_AXIS_LIST)
        for a in axes:
            if a not in ('x', 'y'):
                raise ValueError(f'random_world_flip: ALONG_AXIS_LIST entries must be x or y, got {a!r}')

        def flip(data_dict):
            boxes, points = data_dict['gt_boxes'], data_dict['points']
            for a in axes:
                fn = getattr(augmentor_utils, f'random_flip_along_{a}')
                boxes, points, enabled = fn(boxes, points, self.rng)
                data_dict[f'flip_{a}'] = enabled
            data_dict['gt_boxes'], data_dict['points'] = boxes, points
            return data_dict
        return flip

    def random_world_rotation(self, config):
        rot = config.WORLD_ROT_ANGLE
        rot_range = [-rot, rot] if not isinstance(rot, (list, tuple)) else list(rot)

        def rotate(data_dict):
            boxes, points, angle = augmentor_utils.global_rotation(
                data_dict['gt_boxes'], data_dict['points'], rot_range, self.rng)
            data_dict['gt_boxes'], data_dict['points'] = boxes, points
            data_dict['noise_rot'] = angle
            return data_dict
        return rotate

    def random_world_scaling(self, config):
        scale_range = list(config.WORLD_SCALE_RANGE)

        def scale(data_dict):
            boxes, points, s = augmentor_utils.global_scaling(
                data_dict['gt_boxes'], data_dict['points'], scale_range, self.rng)
            data_dict['gt_boxes'], data_dict['points'] = boxes, points
            data_dict['noise_scale'] = s
            return data_dict
        return scale

    # ---- run ----------------------------------------------------------------------------
    def forward(self, data_dict):
        """data_dict: points (N, C), gt_boxes (M, 7), gt_names (M,), gt_boxes_mask (M,)."""
        data_dict['gt_boxes'] = np.array(data_dict['gt_boxes'], dtype=np.float32).reshape(-1, 7)
        for aug in self.data_augmentor_queue:
            data_dict = aug(data_dict)
        data_dict['gt_boxes'][:, 6] = limit_period(data_dict['gt_boxes'][:, 6], offset=0.5,
                                                   period=2 * np.pi)
        data_dict.pop('road_plane', None)
        for k in ('flip_x', 'flip_y', 'noise_rot', 'noise_scale'):
            data_dict.pop(k, None)
        if 'gt_boxes_mask' in data_dict:
            m = data_dict.pop('gt_boxes_mask')
            data_dict['gt_boxes'] = data_dict['gt_boxes'][m]
            data_dict['gt_names'] = data_dict['gt_names'][m]
            if 'gt_boxes2d' in data_dict:
                data_dict['gt_boxes2d'] = data_dict['gt_boxes2d'][m]
        return data_dict
