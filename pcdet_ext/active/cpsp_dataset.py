"""CPSPDataset: pseudo-scenes from CPSP banks, as an OpenPCDet dataset (registry 'dataset').

Config (DATA_CONFIG), on top of the usual POINT_CLOUD_RANGE, POINT_FEATURE_ENCODING,
DATA_PROCESSOR, DATA_AUGMENTOR (without gt_sampling: its database holds the full training set's
ground truth) and FOV_POINTS_ONLY:

    DATASET: CPSPDataset
    DATA_PATH: data/synthetic          # the KITTI-layout root the banks point into
    CPSP:
        BANK_FILE: output/.../cpsp_banks.pkl   # written by CPSPBanks.save (absolute or DATA_PATH-relative)
        NUM_SCENES: 500                # scenes per epoch
        OBJECTS_PER_SCENE: {Car: 15, Pedestrian: 8, Cyclist: 8}
        NEGATIVES_PER_SCENE: 5
        LABELLED_FRAME_SHARE: 0.2      # share of plain labelled frames
        GROUND_ALIGN: True
        OBJECT_ROTATION: 0.0           # turn each pasted object about the sensor by up to this (rad)
        SEED: 0

Scene i of epoch e is drawn from np.random.default_rng([SEED, e, i]): the same scenes whatever
the worker split. `set_epoch(e)` moves to the next epoch's scenes; `refresh_banks(summaries)`
refreshes the pseudo bank with the current model (every K epochs, from the training tool).
DATA_SPLIT / INFO_PATH / GET_ITEM_LIST (from a KITTI base config) are accepted and unused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets.data_io import DEFAULT_IMAGE_SHAPE, read_image_shape
from ..datasets.dataset_template import DatasetTemplate
from ..geometry import Calibration, points_in_image
from ..registry import register
from .cpsp import CPSPBanks, check_object_rotation, compose_scene, labelled_scene, refresh_pseudo_bank

DEFAULT_NUM_SCENES = 500  # pseudo-scenes per epoch when CPSP.NUM_SCENES is unset


def _gt_sampling_enabled(aug_cfg) -> bool:
    if aug_cfg is None:
        return False
    if isinstance(aug_cfg, (list, tuple)):
        return any(c.get('NAME') == 'gt_sampling' for c in aug_cfg)
    disabled = list(aug_cfg.get('DISABLE_AUG_LIST', []) or [])
    return any(c.get('NAME') == 'gt_sampling' and 'gt_sampling' not in disabled
               for c in (aug_cfg.get('AUG_CONFIG_LIST', []) or []))


@register('dataset')
class CPSPDataset(DatasetTemplate):
    def __init__(self, dataset_cfg, class_names, training=True, root_path=None, logger=None, banks=None):
        if _gt_sampling_enabled(dataset_cfg.get('DATA_AUGMENTOR', None)):
            raise ValueError('CPSPDataset: DATA_AUGMENTOR enables gt_sampling, whose database holds the '
                             'whole training set\'s ground truth; CPSP pastes from its own banks. '
                             'Remove gt_sampling (or add it to DISABLE_AUG_LIST)')
        super().__init__(dataset_cfg=dataset_cfg, class_names=class_names, training=training,
                         root_path=root_path, logger=logger)
        _ = dataset_cfg.get('DATASET')
        if hasattr(dataset_cfg, 'raw_get'):  # accepted from a KITTI base config, unused here
            from ..config import mark_read
            for key in ('DATA_SPLIT', 'INFO_PATH', 'GET_ITEM_LIST'):
                mark_read(dataset_cfg, key)
        self.fov_points_only = bool(dataset_cfg.get('FOV_POINTS_ONLY', True))
        if 'CPSP' not in dataset_cfg:
            raise ValueError('CPSPDataset: DATA_CONFIG.CPSP section is missing')
        c = dataset_cfg.CPSP
        self.bank_file = c.get('BANK_FILE', None)
        self.num_scenes = int(c.get('NUM_SCENES', DEFAULT_NUM_SCENES))
        self.objects_per_scene = dict(c.get('OBJECTS_PER_SCENE', {n: 10 for n in self.class_names}))
        self.negatives_per_scene = int(c.get('NEGATIVES_PER_SCENE', 5))
        self.labelled_frame_share = float(c.get('LABELLED_FRAME_SHARE', 0.2))
        self.ground_align = bool(c.get('GROUND_ALIGN', True))
        self.object_rotation = check_object_rotation(c.get('OBJECT_ROTATION', 0.0))
        self.seed = int(c.get('SEED', 0))
        unknown = sorted(set(self.objects_per_scene) - set(self.class_names))
        if unknown:
            raise ValueError(f'CPSP.OBJECTS_PER_SCENE: classes {unknown} are not in CLASS_NAMES {self.class_names}')
        if self.num_scenes < 1:
            raise ValueError(f'CPSP.NUM_SCENES must be >= 1, got {self.num_scenes}')
        if not 0.0 <= self.labelled_frame_share <= 1.0:
            raise ValueError(f'CPSP.LABELLED_FRAME_SHARE must be in [0, 1], got {self.labelled_frame_share}')
        if banks is None:
            if not self.bank_file:
                raise ValueError('CPSPDataset: CPSP.BANK_FILE is not set')
            path = Path(self.bank_file)
            banks = CPSPBanks.load(path if path.is_absolute() else self.root_path / path)
        self.banks = banks
        if list(self.banks.class_names) != list(self.class_names):
            raise ValueError(f'CPSPDataset: banks were built for {self.banks.class_names}, '
                             f'CLASS_NAMES is {self.class_names}')
        self.epoch = 0
        self._calibs = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def refresh_banks(self, new_summaries, match_iou: float = 0.5) -> None:
        self.banks = refresh_pseudo_bank(self.banks, self.root_path, new_summaries, seed=self.seed,
                                         match_iou=match_iou)

    def __len__(self):
        if self._merge_all_iters_to_one_epoch:
            return self.num_scenes * self.total_epochs
        return self.num_scenes

    def _calib(self, fid):
        if fid not in self._calibs:
            split = self.root_path / 'training'
            shape = read_image_shape(split / 'image_2' / f'{fid}.png') or DEFAULT_IMAGE_SHAPE
            self._calibs[fid] = (Calibration(str(split / 'calib' / f'{fid}.txt')), np.array(shape, np.int32))
        return self._calibs[fid]

    def scene(self, index: int) -> dict:
        """The raw composed scene of this epoch's index (before the processing pipeline)."""
        epoch = self.epoch
        if self._merge_all_iters_to_one_epoch:
            epoch, index = divmod(index, self.num_scenes)
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.banks.labelled_frames and rng.random() < self.labelled_frame_share:
            return labelled_scene(self.banks, self.root_path, rng)
        return compose_scene(self.banks, self.root_path, rng, self.objects_per_scene,
                             negatives_per_scene=self.negatives_per_scene, ground_align=self.ground_align,
                             object_rotation=self.object_rotation)

    def __getitem__(self, index):
        s = self.scene(index)
        calib, img_shape = self._calib(s['frame_id'])
        points, boxes, names = s['points'], s['gt_boxes'], s['gt_names']
        if self.fov_points_only:
            points = points[points_in_image(points, calib, img_shape)]
            if len(boxes):
                keep = points_in_image(boxes[:, :3], calib, img_shape)
                boxes, names = boxes[keep], names[keep]
        input_dict = {'frame_id': f'cpsp_{self.epoch}_{index}_{s["frame_id"]}', 'calib': calib,
                      'points': points, 'gt_boxes': boxes, 'gt_names': names}
        data_dict = self.prepare_data(input_dict)
        data_dict['image_shape'] = img_shape
        return data_dict

    def evaluation(self, det_annos, class_names, **kwargs):
        raise NotImplementedError('CPSPDataset is for training; evaluate on the KITTI val split')
