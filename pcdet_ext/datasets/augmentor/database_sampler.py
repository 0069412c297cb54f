"""gt_sampling: paste labelled objects from the gt database into training scenes (SECOND's
copy-paste), as OpenPCDet's DataBaseSampler, with a seeded generator."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from ..data_io import DataFileError, load_pickle
from .object_paste import paste_objects


class DataBaseSampler:
    """Config keys: DB_INFO_PATH, PREPARE {filter_by_min_points, filter_by_difficulty},
    SAMPLE_GROUPS ['Car:15', ...], NUM_POINT_FEATURES, REMOVE_EXTRA_WIDTH, LIMIT_WHOLE_SCENE,
    USE_ROAD_PLANE, DATABASE_WITH_FAKELIDAR (False only)."""

    def __init__(self, root_path, sampler_cfg, class_names, logger=None, rng=None, load=True):
        self.root_path = Path(root_path)
        self.class_names = list(class_names)
        self.logger = logger
        self.rng = rng if rng is not None else np.random.default_rng()
        # Read every key now (config validation reports unread keys as typos).
        self.db_info_paths = list(sampler_cfg.DB_INFO_PATH)
        self.prepare = dict(sampler_cfg.get('PREPARE', {}) or {})
        self.sample_group_specs = list(sampler_cfg.SAMPLE_GROUPS)
        self.num_point_features = int(sampler_cfg.NUM_POINT_FEATURES)
        self.remove_extra_width = tuple(sampler_cfg.get('REMOVE_EXTRA_WIDTH', [0.0, 0.0, 0.0]))
        self.limit_whole_scene = bool(sampler_cfg.get('LIMIT_WHOLE_SCENE', False))
        self.use_road_plane = bool(sampler_cfg.get('USE_ROAD_PLANE', False))
        if sampler_cfg.get('DATABASE_WITH_FAKELIDAR', False):
            raise ValueError('gt_sampling: DATABASE_WITH_FAKELIDAR is not supported (the gt '
                             'database is written in LiDAR coordinates)')
        unknown = sorted(set(self.prepare) - {'filter_by_min_points', 'filter_by_difficulty'})
        if unknown:
            raise ValueError(f'gt_sampling: unknown PREPARE step(s) {unknown}; known: '
                             f'filter_by_min_points, filter_by_difficulty')
        self.sample_groups: Dict[str, dict] = {}
        self.sample_class_num: Dict[str, int] = {}
        for spec in self.sample_group_specs:
            name, num = self._split_spec(spec, 'SAMPLE_GROUPS')
            if name in self.class_names:  # groups for classes the model ignores are skipped
                self.sample_class_num[name] = num
        self.db_infos: Dict[str, List[dict]] = {n: [] for n in self.class_names}
        if load:
            self.load_database()

    @staticmethod
    def _split_spec(spec, key):
        try:
            name, num = str(spec).split(':')
            return name, int(num)
        except ValueError:
            raise ValueError(f'gt_sampling: {key} entry {spec!r} must look like "Car:15"') from None

    def load_database(self):
        for rel in self.db_info_paths:
            infos = load_pickle(self.root_path / rel, what='gt database info file')
            for name in self.class_names:
                self.db_infos[name].extend(infos.get(name, []))
        for step, val in self.prepare.items():
            self.db_infos = getattr(self, step)(self.db_infos, val)
        for name, num in self.sample_class_num.items():
            self.sample_groups[name] = {'sample_num': num, 'pointer': len(self.db_infos[name]),
                                        'indices': np.arange(len(self.db_infos[name]))}
        if self.logger is not None:
            counts = ', '.join(f'{k}: {len(v)}' for k, v in self.db_infos.items())
            self.logger.info(f'gt_sampling database: {counts}')

    def __getstate__(self):
        d = dict(self.__dict__)
        d['logger'] = None
        return d

    def filter_by_difficulty(self, db_infos, removed_difficulty):
        removed = set(int(x) for x in removed_difficulty)
        return {k: [i for i in v if int(i['difficulty']) not in removed] for k, v in db_infos.items()}

    def filter_by_min_points(self, db_infos, min_gt_points_list):
        out = dict(db_infos)
        for spec in min_gt_points_list:
            name, min_num = self._split_spec(spec, 'filter_by_min_points')
            if min_num > 0 and name in out:
                out[name] = [i for i in out[name] if i['num_points_in_gt'] >= min_num]
        return out

    def sample_with_fixed_number(self, class_name, sample_group, sample_num):
        """Walk a shuffled permutation of the class's objects, reshuffling when exhausted."""
        infos = self.db_infos[class_name]
        pointer, indices = sample_group['pointer'], sample_group['indices']
        if pointer + sample_num > len(infos):
            indices = self.rng.permutation(len(infos))
            pointer = 0
        picked = [infos[i] for i in indices[pointer:pointer + sample_num]]
        sample_group['pointer'] = pointer + sample_num
        sample_group['indices'] = indices
        return picked

    @staticmethod
    def put_boxes_on_road_planes(gt_boxes, road_plane, calib):
        """Move boxes vertically so their bottoms sit on the road plane (rect frame)."""
        a, b, c, d = road_plane
        centre_cam = calib.lidar_to_rect(gt_boxes[:, 0:3])
        centre_cam[:, 1] = (-d - a * centre_cam[:, 0] - c * centre_cam[:, 2]) / b
        ground_lidar_z = calib.rect_to_lidar(centre_cam)[:, 2]
        mv_height = gt_boxes[:, 2] - gt_boxes[:, 5] / 2 - ground_lidar_z
        gt_boxes[:, 2] -= mv_height
        return gt_boxes, mv_height

    def _load_object_points(self, info):
        path = self.root_path / info['path']
        if not path.is_file():
            raise DataFileError(f'{path}: gt database object file not found (listed in '
                                f'{self.db_info_paths}); re-run tools/create_data.py')
        size = path.stat().st_size
        if size % (4 * self.num_point_features):
            raise DataFileError(f'{path}: size {size} is not a multiple of '
                                f'{4 * self.num_point_features} bytes (NUM_POINT_FEATURES='
                                f'{self.num_point_features})')
        return np.fromfile(str(path), dtype=np.float32).reshape(-1, self.num_point_features)

    def __call__(self, data_dict):
        from ...ops.iou3d_nms import boxes_iou_bev
        gt_boxes = data_dict['gt_boxes']
        gt_names = data_dict['gt_names'].astype(str)
        existed = gt_boxes[:, :7].astype(np.float32)
        picked_infos, picked_boxes = [], []
        for class_name, group in self.sample_groups.items():
            num = self.sample_class_num[class_name]
            if self.limit_whole_scene:
                num = num - int((gt_names == class_name).sum())
            if num <= 0 or len(self.db_infos[class_name]) == 0:
                continue
            sampled = self.sample_with_fixed_number(class_name, group, num)
            boxes = np.stack([s['box3d_lidar'][:7] for s in sampled]).astype(np.float32)
            # A candidate survives only if it overlaps neither the scene's boxes (incl. those
            # already pasted) nor any other candidate of this draw.
            iou_other = np.asarray(boxes_iou_bev(boxes, boxes), dtype=np.float64)
            np.fill_diagonal(iou_other, 0)
            bad = iou_other.max(axis=1) > 0
            if len(existed):
                bad |= np.asarray(boxes_iou_bev(boxes, existed), dtype=np.float64).max(axis=1) > 0
            keep = np.nonzero(~bad)[0]
            existed = np.concatenate([existed, boxes[keep]], axis=0)
            picked_infos.extend(sampled[k] for k in keep)
            picked_boxes.append(boxes[keep])
        if picked_infos:
            data_dict = self.add_sampled_boxes_to_scene(data_dict, np.concatenate(picked_boxes),
                                                        picked_infos)
        data_dict.pop('gt_boxes_mask', None)
        return data_dict

    def add_sampled_boxes_to_scene(self, data_dict, sampled_boxes, sampled_infos):
        mask = data_dict['gt_boxes_mask']
        gt_boxes = data_dict['gt_boxes'][mask]
        gt_names = data_dict['gt_names'][mask]
        points = data_dict['points']
        mv_height = None
        if self.use_road_plane and data_dict.get('road_plane') is not None:
            sampled_boxes, mv_height = self.put_boxes_on_road_planes(
                sampled_boxes, data_dict['road_plane'], data_dict['calib'])
        obj_points_list = []
        for i, info in enumerate(sampled_infos):
            pts = self._load_object_points(info)[:, :points.shape[1]].copy()
            pts[:, :3] += info['box3d_lidar'][:3].astype(np.float32)
            if mv_height is not None:
                pts[:, 2] -= mv_height[i]
            obj_points_list.append(pts)
        sampled_boxes = sampled_boxes.astype(gt_boxes.dtype)
        points, gt_boxes = paste_objects(points, gt_boxes, obj_points_list, sampled_boxes,
                                         remove_extra_width=self.remove_extra_width)
        data_dict['points'] = points
        data_dict['gt_boxes'] = gt_boxes
        data_dict['gt_names'] = np.concatenate([gt_names, np.array([s['name'] for s in sampled_infos])])
        return data_dict
