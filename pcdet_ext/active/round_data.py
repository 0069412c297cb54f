"""Training data of one active-learning round, built from the labelled frames only.

The dataset's own `kitti_infos_train.pkl` and gt database hold the ground truth of every
training frame, unlabelled ones included; training on them (or pasting from them) would leak.
Each round therefore writes its own info file and gt database, reading labels through the
LabelOracle (labelled frames only), and the training loader is pointed at them.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from ..datasets.data_io import atomic_pickle_dump, read_lidar_bin, replace_dir
from ..datasets.kitti.kitti_infos import frame_info
from ..geometry import points_in_image
from .pool import LabelOracle

INFOS_NAME = 'kitti_infos_labelled.pkl'
DBINFOS_NAME = 'kitti_dbinfos_labelled.pkl'
DB_DIR = 'gt_database'


def labelled_frame_info(split_dir: Path, oracle: LabelOracle, fid: str, points: np.ndarray) -> dict:
    """OpenPCDet frame info with annos read through the oracle (refuses unlabelled frames)."""
    from ..ops.roiaware_pool3d import points_in_boxes_mask
    info = frame_info(split_dir, fid, has_label=False)
    annos = oracle.read(fid)
    annos.pop('gt_names_lidar', None)
    num_gt = len(annos['name'])
    num_obj = int((annos['name'] != 'DontCare').sum())
    annos['index'] = np.array(list(range(num_obj)) + [-1] * (num_gt - num_obj), dtype=np.int32)
    num_points = -np.ones(num_gt, dtype=np.int32)
    if num_obj:
        fov = points_in_image(points, _calib(split_dir, fid), info['image']['image_shape'])
        mask = np.asarray(points_in_boxes_mask(points[fov, :3], annos['gt_boxes_lidar']))
        num_points[:num_obj] = mask.sum(axis=1)
    annos['num_points_in_gt'] = num_points
    info['annos'] = annos
    return info


def _calib(split_dir: Path, fid: str):
    from ..geometry import Calibration
    return Calibration(str(split_dir / 'calib' / f'{fid}.txt'))


def write_labelled_data(root, oracle: LabelOracle, labelled_ids: Sequence[str], out_dir,
                        class_names: Sequence[str]) -> Dict[str, str]:
    """out_dir/{kitti_infos_labelled.pkl, kitti_dbinfos_labelled.pkl, gt_database/}.

    Database entries carry absolute paths so the gt sampler finds them whatever its root."""
    from ..ops.roiaware_pool3d import points_in_boxes_mask
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_dir = root / 'training'
    db_dir = out_dir / DB_DIR
    tmp_db = Path(tempfile.mkdtemp(prefix=f'.{DB_DIR}.', dir=out_dir))
    infos, db_infos = [], {}
    try:
        for fid in labelled_ids:
            points = read_lidar_bin(split_dir / 'velodyne' / f'{fid}.bin')
            info = labelled_frame_info(split_dir, oracle, fid, points)
            infos.append(info)
            annos = info['annos']
            boxes = annos['gt_boxes_lidar']
            if len(boxes) == 0:
                continue
            inside = np.asarray(points_in_boxes_mask(points[:, :3], boxes))
            for i in range(len(boxes)):
                name = str(annos['name'][i])
                obj = points[inside[i]].copy()
                obj[:, :3] -= boxes[i, :3].astype(np.float32)
                fname = f'{fid}_{name}_{i}.bin'
                obj.astype(np.float32).tofile(str(tmp_db / fname))
                if name in class_names:
                    db_infos.setdefault(name, []).append({
                        'name': name, 'path': str((db_dir / fname).resolve()), 'image_idx': fid,
                        'gt_idx': i, 'box3d_lidar': boxes[i].astype(np.float32),
                        'num_points_in_gt': int(obj.shape[0]), 'difficulty': int(annos['difficulty'][i]),
                        'bbox': annos['bbox'][i], 'score': float(annos['score'][i])})
        replace_dir(tmp_db, db_dir)
    except BaseException:
        shutil.rmtree(tmp_db, ignore_errors=True)
        raise
    for old in out_dir.glob(f'{DB_DIR}.old-*'):
        shutil.rmtree(old, ignore_errors=True)
    atomic_pickle_dump(db_infos, out_dir / DBINFOS_NAME)
    atomic_pickle_dump(infos, out_dir / INFOS_NAME)  # last: its presence means the data is complete
    return {'infos': str(out_dir / INFOS_NAME), 'dbinfos': str(out_dir / DBINFOS_NAME),
            'db_dir': str(db_dir)}


def labelled_training_cfg(dataset_cfg, infos_path, dbinfos_path):
    """A copy of DATA_CONFIG whose training split reads the round's labelled infos and whose
    gt_sampling pastes from the round's labelled database. The copy shares the read record.
    Paths go in absolute: the dataset resolves relative ones against DATA_PATH, not the cwd."""
    cfg = copy.deepcopy(dataset_cfg)
    cfg.INFO_PATH['train'] = [str(Path(infos_path).resolve())]
    aug = cfg.get('DATA_AUGMENTOR', None)
    for entry in (aug.get('AUG_CONFIG_LIST', []) or []) if aug is not None else []:
        if entry.get('NAME') == 'gt_sampling':
            entry['DB_INFO_PATH'] = [str(Path(dbinfos_path).resolve())]
    return cfg
