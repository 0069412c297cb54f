"""KittiDataset: OpenPCDet's KITTI loader (also reads the embedded synthetic data, which is
written in the same layout)."""
from __future__ import annotations

import copy

import numpy as np

from ...geometry import Calibration, boxes3d_kitti_camera_to_lidar, points_in_image
from ...registry import register
from ..dataset_template import DatasetTemplate
from ..data_io import DataFileError, load_pickle, read_lidar_bin, read_road_plane
from .kitti_label_io import KITTI_CLASSES, read_label_file


@register('dataset')
class KittiDataset(DatasetTemplate):
    """Config keys: DATA_PATH, DATA_SPLIT {train, test}, INFO_PATH {train: [..], test: [..]},
    POINT_CLOUD_RANGE, FOV_POINTS_ONLY, GET_ITEM_LIST, DATA_AUGMENTOR, POINT_FEATURE_ENCODING,
    DATA_PROCESSOR (and DATASET, the registry name)."""

    GET_ITEMS = ('points', 'gt_boxes2d', 'calib_matricies')

    def __init__(self, dataset_cfg, class_names, training=True, root_path=None, logger=None):
        super().__init__(dataset_cfg=dataset_cfg, class_names=class_names, training=training,
                         root_path=root_path, logger=logger)
        _ = self.dataset_cfg.get('DATASET')
        self.data_split = dict(self.dataset_cfg.DATA_SPLIT)
        self.info_path = {k: list(v) for k, v in dict(self.dataset_cfg.INFO_PATH).items()}
        self.fov_points_only = bool(self.dataset_cfg.get('FOV_POINTS_ONLY', True))
        self.get_item_list = list(self.dataset_cfg.get('GET_ITEM_LIST', ['points']))
        bad = [g for g in self.get_item_list if g not in self.GET_ITEMS]
        if bad:
            raise ValueError(f'GET_ITEM_LIST: unsupported item(s) {bad}; supported: {list(self.GET_ITEMS)}')
        if self.mode not in self.data_split or self.mode not in self.info_path:
            raise ValueError(f'DATA_SPLIT and INFO_PATH need a {self.mode!r} entry')
        self.split = self.data_split[self.mode]
        self.root_split_path = self.root_path / ('training' if self.split != 'test' else 'testing')
        split_file = self.root_path / 'ImageSets' / f'{self.split}.txt'
        self.sample_id_list = ([x.strip() for x in split_file.read_text().splitlines() if x.strip()]
                               if split_file.exists() else None)
        self.kitti_infos = []
        self.include_kitti_data(self.mode)
        self._check_class_names()

    def include_kitti_data(self, mode):
        for rel in self.info_path[mode]:
            infos = load_pickle(self.root_path / rel, what='KITTI info file')
            if not isinstance(infos, list):
                raise DataFileError(f'{self.root_path / rel}: expected a list of frame infos, '
                                    f'got {type(infos).__name__}')
            self.kitti_infos.extend(infos)
        if self.logger is not None:
            self.logger.info(f'Total samples for KITTI dataset ({mode}): {len(self.kitti_infos)}')

    def _check_class_names(self):
        """A class name that is neither a KITTI type nor present in the infos is a typo."""
        seen = set()
        for info in self.kitti_infos:
            if 'annos' in info:
                seen.update(str(n) for n in info['annos']['name'])
        known = set(KITTI_CLASSES) | seen
        unknown = [c for c in self.class_names if c not in known]
        if unknown:
            raise ValueError(f'CLASS_NAMES: unknown class name(s) {unknown}; known: '
                             f'{sorted(known - {"DontCare"})}')

    def set_split(self, split):
        self.split = split
        self.root_split_path = self.root_path / ('training' if split != 'test' else 'testing')
        split_file = self.root_path / 'ImageSets' / f'{split}.txt'
        self.sample_id_list = ([x.strip() for x in split_file.read_text().splitlines() if x.strip()]
                               if split_file.exists() else None)

    # ---- file access ------------------------------------------------------------------------
    def get_lidar(self, idx):
        return read_lidar_bin(self.root_split_path / 'velodyne' / f'{idx}.bin')

    def get_calib(self, idx):
        return Calibration(str(self.root_split_path / 'calib' / f'{idx}.txt'))

    def get_label(self, idx):
        return read_label_file(self.root_split_path / 'label_2' / f'{idx}.txt')

    def get_road_plane(self, idx):
        return read_road_plane(self.root_split_path / 'planes' / f'{idx}.txt')

    @staticmethod
    def get_fov_flag(points, img_shape, calib):
        return points_in_image(points, calib, img_shape)

    # ---- dataset protocol ----------------------------------------------------------------
    def __len__(self):
        if self._merge_all_iters_to_one_epoch:
            return len(self.kitti_infos) * self.total_epochs
        return len(self.kitti_infos)

    def __getitem__(self, index):
        if self._merge_all_iters_to_one_epoch:
            index = index % len(self.kitti_infos)
        info = copy.deepcopy(self.kitti_infos[index])
        sample_idx = info['point_cloud']['lidar_idx']
        img_shape = np.asarray(info['image']['image_shape'], dtype=np.int32)
        calib = self.get_calib(sample_idx)
        input_dict = {'frame_id': sample_idx, 'calib': calib}
        if 'annos' in info:
            annos = info['annos']
            keep = annos['name'] != 'DontCare'
            cam = np.concatenate([annos['location'][keep], annos['dimensions'][keep],
                                  annos['rotation_y'][keep][:, None]], axis=1).astype(np.float32)
            input_dict['gt_names'] = annos['name'][keep]
            input_dict['gt_boxes'] = boxes3d_kitti_camera_to_lidar(cam, calib).astype(np.float32).reshape(-1, 7)
            if 'gt_boxes2d' in self.get_item_list:
                input_dict['gt_boxes2d'] = annos['bbox'][keep]
            plane = self.get_road_plane(sample_idx)
            if plane is not None:
                input_dict['road_plane'] = plane
        if 'points' in self.get_item_list:
            points = self.get_lidar(sample_idx)
            if self.fov_points_only:
                points = points[self.get_fov_flag(points, img_shape, calib)]
            input_dict['points'] = points
        if 'calib_matricies' in self.get_item_list:
            input_dict['trans_lidar_to_cam'] = calib.lidar_to_rect_mat.astype(np.float32)
            input_dict['trans_cam_to_img'] = calib.P2.astype(np.float32)
        data_dict = self.prepare_data(input_dict)
        data_dict['image_shape'] = img_shape
        return data_dict

    def evaluation(self, det_annos, class_names, **kwargs):
        if not self.kitti_infos or 'annos' not in self.kitti_infos[0]:
            return 'no ground truth in this split', {}
        from ...evaluation.kitti import get_official_eval_result
        eval_det = copy.deepcopy(det_annos)
        eval_gt = [copy.deepcopy(info['annos']) for info in self.kitti_infos]
        return get_official_eval_result(eval_gt, eval_det, class_names)
