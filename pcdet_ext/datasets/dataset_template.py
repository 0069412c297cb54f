"""DatasetTemplate: the OpenPCDet dataset base (prepare_data, collate_batch, predictions).

batch_dict keys as OpenPCDet: points (N, 1+C) with batch index first, voxels (V, P, C),
voxel_coords (V, 4) [b, z, y, x], voxel_num_points (V,), gt_boxes (B, max, 8) with the
1-based class index last, frame_id, calib, image_shape, use_lead_xyz, batch_size.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch.utils.data as torch_data

from ..geometry import alpha_from_ry, boxes3d_kitti_camera_to_imageboxes, boxes3d_lidar_to_kitti_camera
from .augmentor.data_augmentor import DataAugmentor
from .processor.data_processor import DataProcessor
from .processor.point_feature_encoder import PointFeatureEncoder


class DatasetTemplate(torch_data.Dataset):
    def __init__(self, dataset_cfg=None, class_names=None, training=True, root_path=None, logger=None):
        super().__init__()
        self.dataset_cfg = dataset_cfg
        self.training = training
        self.class_names = list(class_names) if class_names is not None else None
        self.logger = logger
        self.root_path = Path(root_path) if root_path is not None else Path(dataset_cfg.DATA_PATH)
        if dataset_cfg is not None and root_path is not None:
            _ = dataset_cfg.get('DATA_PATH')  # read: an explicit root_path overrides it
        self.total_epochs = 0
        self._merge_all_iters_to_one_epoch = False
        if self.dataset_cfg is None or class_names is None:
            return
        self.point_cloud_range = np.array(self.dataset_cfg.POINT_CLOUD_RANGE, dtype=np.float32)
        if self.point_cloud_range.shape != (6,) or (self.point_cloud_range[3:] <= self.point_cloud_range[:3]).any():
            raise ValueError(f'POINT_CLOUD_RANGE must be [x0, y0, z0, x1, y1, z1] with x1 > x0 etc., '
                             f'got {list(self.dataset_cfg.POINT_CLOUD_RANGE)}')
        self.point_feature_encoder = PointFeatureEncoder(self.dataset_cfg.POINT_FEATURE_ENCODING,
                                                         point_cloud_range=self.point_cloud_range)
        # Built in both modes so every augmentor key is read (and checked); only training
        # loads the gt database and uses it.
        aug_cfg = self.dataset_cfg.get('DATA_AUGMENTOR', None)
        augmentor = DataAugmentor(self.root_path, aug_cfg if aug_cfg is not None else [],
                                  self.class_names, logger=self.logger, load_database=training)
        self.data_augmentor = augmentor if training else None
        self.data_processor = DataProcessor(self.dataset_cfg.DATA_PROCESSOR,
                                            point_cloud_range=self.point_cloud_range,
                                            training=self.training,
                                            num_point_features=self.point_feature_encoder.num_point_features)
        self.grid_size = self.data_processor.grid_size
        self.voxel_size = self.data_processor.voxel_size
        self.rng = np.random.default_rng()

    @property
    def mode(self):
        return 'train' if self.training else 'test'

    def __getstate__(self):
        d = dict(self.__dict__)
        d['logger'] = None
        return d

    def set_random_seed(self, seed: int):
        """Reseed every random source of the pipeline (augmentor, shuffling, resampling)."""
        ss = np.random.SeedSequence(seed)
        a, p, r = ss.spawn(3)
        if self.data_augmentor is not None:
            self.data_augmentor.reseed(a)
        self.data_processor.reseed(p)
        self.rng = np.random.default_rng(r)

    def merge_all_iters_to_one_epoch(self, merge=True, epochs=None):
        self._merge_all_iters_to_one_epoch = merge
        self.total_epochs = epochs if merge else 0

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError

    def prepare_data(self, data_dict):
        """Augment (training), keep configured classes, add the class column, encode point
        features, run the processor queue. A training frame left with no boxes is replaced
        by a random other frame (as OpenPCDet)."""
        if self.training:
            if 'gt_boxes' not in data_dict:
                raise ValueError(f'frame {data_dict.get("frame_id")}: training needs gt_boxes '
                                 f'(is the info file from a split without labels?)')
            mask = np.array([n in self.class_names for n in data_dict['gt_names']], dtype=bool)
            calib = data_dict.get('calib')
            data_dict = self.data_augmentor.forward({**data_dict, 'gt_boxes_mask': mask})
            if calib is not None:
                data_dict['calib'] = calib
        if data_dict.get('gt_boxes', None) is not None:
            keep = np.array([n in self.class_names for n in data_dict['gt_names']], dtype=bool)
            boxes = np.asarray(data_dict['gt_boxes'], dtype=np.float32).reshape(-1, 7)[keep]
            names = data_dict['gt_names'][keep]
            classes = np.array([self.class_names.index(n) + 1 for n in names], dtype=np.float32)
            data_dict['gt_boxes'] = np.concatenate([boxes, classes[:, None]], axis=1)
            data_dict['gt_names'] = names
            if data_dict.get('gt_boxes2d') is not None:
                data_dict['gt_boxes2d'] = data_dict['gt_boxes2d'][keep]
        if data_dict.get('points') is not None:
            data_dict = self.point_feature_encoder.forward(data_dict)
        data_dict = self.data_processor.forward(data_dict)
        if self.training and len(data_dict['gt_boxes']) == 0:
            self._empty_redraws = getattr(self, '_empty_redraws', 0) + 1
            if self._empty_redraws > 100:
                self._empty_redraws = 0
                raise RuntimeError(f'{type(self).__name__}: 100 frames in a row had no boxes of '
                                   f'{self.class_names} after augmentation and range filtering; '
                                   f'check CLASS_NAMES and POINT_CLOUD_RANGE against the data')
            return self.__getitem__(int(self.rng.integers(len(self))))
        self._empty_redraws = 0
        data_dict.pop('gt_names', None)
        return data_dict

    @staticmethod
    def collate_batch(batch_list, _unused=False):
        data = defaultdict(list)
        for sample in batch_list:
            for k, v in sample.items():
                data[k].append(v)
        batch_size = len(batch_list)
        ret = {}
        for key, val in data.items():
            if len(val) != batch_size:
                raise ValueError(f'collate_batch: key {key!r} is present in {len(val)} of '
                                 f'{batch_size} samples')
            try:
                if key in ('voxels', 'voxel_num_points'):
                    ret[key] = np.concatenate(val, axis=0)
                elif key in ('points', 'voxel_coords'):
                    ret[key] = np.concatenate(
                        [np.pad(v, ((0, 0), (1, 0)), mode='constant', constant_values=i)
                         for i, v in enumerate(val)], axis=0)
                elif key in ('gt_boxes', 'gt_boxes2d'):
                    width = max(v.shape[-1] for v in val) if key == 'gt_boxes' else 4
                    max_gt = max(len(v) for v in val)
                    out = np.zeros((batch_size, max_gt, width), dtype=np.float32)
                    for i, v in enumerate(val):
                        if len(v):
                            out[i, :len(v), :v.shape[-1]] = v
                    ret[key] = out
                elif key == 'calib':
                    arr = np.empty(batch_size, dtype=object)
                    arr[:] = val
                    ret[key] = arr
                else:
                    ret[key] = np.stack(val, axis=0)
            except ValueError as e:
                raise ValueError(f'collate_batch: cannot batch key {key!r}: {e}') from None
        ret['batch_size'] = batch_size
        return ret

    # ---- predictions ----------------------------------------------------------------------
    @staticmethod
    def _to_np(x):
        return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)

    def generate_prediction_dicts(self, batch_dict, pred_dicts, class_names, output_path=None):
        """pred_dicts: per frame {pred_boxes (N, 7) LiDAR, pred_scores (N,), pred_labels (N,)
        1-based}. Returns KITTI annos (camera boxes, 2D boxes clipped to the image) and writes
        label_2-style files into output_path when given."""
        annos = []
        for index, box_dict in enumerate(pred_dicts):
            scores = self._to_np(box_dict['pred_scores']).astype(np.float64).reshape(-1)
            boxes = self._to_np(box_dict['pred_boxes']).astype(np.float64).reshape(-1, 7)
            labels = self._to_np(box_dict['pred_labels']).astype(np.int64).reshape(-1)
            n = len(scores)
            pred = {'name': np.zeros(n, dtype='<U16'), 'truncated': np.zeros(n), 'occluded': np.zeros(n),
                    'alpha': np.zeros(n), 'bbox': np.zeros((n, 4)), 'dimensions': np.zeros((n, 3)),
                    'location': np.zeros((n, 3)), 'rotation_y': np.zeros(n), 'score': np.zeros(n),
                    'boxes_lidar': np.zeros((n, 7))}
            if n:
                if labels.min() < 1 or labels.max() > len(class_names):
                    raise ValueError(f'generate_prediction_dicts: pred_labels must be 1..'
                                     f'{len(class_names)}, got range [{labels.min()}, {labels.max()}]')
                calib = batch_dict['calib'][index]
                image_shape = self._to_np(batch_dict['image_shape'][index])
                cam = boxes3d_lidar_to_kitti_camera(boxes, calib)
                pred['name'] = np.array(class_names)[labels - 1]
                pred['alpha'] = alpha_from_ry(cam[:, 6], cam[:, 0], cam[:, 2])
                pred['bbox'] = boxes3d_kitti_camera_to_imageboxes(cam, calib, image_shape=image_shape)
                pred['dimensions'] = cam[:, 3:6]
                pred['location'] = cam[:, 0:3]
                pred['rotation_y'] = cam[:, 6]
                pred['score'] = scores
                pred['boxes_lidar'] = boxes
            pred['frame_id'] = batch_dict['frame_id'][index]
            annos.append(pred)
            if output_path is not None:
                self._write_prediction(pred, Path(output_path))
        return annos

    @staticmethod
    def _write_prediction(pred, output_path: Path):
        from .kitti.kitti_label_io import write_label_file
        output_path.mkdir(parents=True, exist_ok=True)
        n = len(pred['name'])
        out = dict(pred, truncated=-np.ones(n), occluded=-np.ones(n))
        write_label_file(out, output_path / f"{pred['frame_id']}.txt", with_score=True)

    def evaluation(self, det_annos, class_names, **kwargs):
        raise NotImplementedError
