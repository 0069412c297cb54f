"""Info creation as OpenPCDet: kitti_infos_{split}.pkl, kitti_dbinfos_train.pkl, gt_database/.

Every file is written atomically (temp name + os.replace) so a failed run leaves either the
previous outputs or nothing, never a half-written pickle or database.
"""
from __future__ import annotations

import copy
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...geometry import Calibration, boxes3d_kitti_camera_to_lidar, points_in_image
from ..data_io import (DEFAULT_IMAGE_SHAPE, DataFileError, atomic_pickle_dump, read_image_shape,
                       read_lidar_bin, read_split_file, replace_dir)
from .kitti_label_io import read_label_file

SPLITS = ('train', 'val', 'trainval', 'test')


def split_folder(root: Path, split: str) -> Path:
    return Path(root) / ('testing' if split == 'test' else 'training')


def _calib_info(calib: Calibration) -> Dict[str, np.ndarray]:
    def pad(m):
        out = np.eye(4)
        out[:m.shape[0], :m.shape[1]] = m
        return out
    return {'P2': pad(calib.P2), 'R0_rect': pad(calib.R0), 'Tr_velo_to_cam': pad(calib.V2C)}


def frame_info(split_dir: Path, sample_idx: str, has_label: bool = True,
               count_inside_pts: bool = True) -> dict:
    """One frame's info dict in OpenPCDet's layout."""
    from ...ops.roiaware_pool3d import points_in_boxes_mask
    split_dir = Path(split_dir)
    img_shape = read_image_shape(split_dir / 'image_2' / f'{sample_idx}.png')
    info = {'point_cloud': {'num_features': 4, 'lidar_idx': sample_idx},
            'image': {'image_idx': sample_idx,
                      'image_shape': np.array(img_shape or DEFAULT_IMAGE_SHAPE, dtype=np.int32)}}
    calib = Calibration(str(split_dir / 'calib' / f'{sample_idx}.txt'))
    info['calib'] = _calib_info(calib)
    if not has_label:
        return info
    annos = read_label_file(split_dir / 'label_2' / f'{sample_idx}.txt')
    num_gt = len(annos['name'])
    num_objects = int((annos['name'] != 'DontCare').sum())
    annos['index'] = np.array(list(range(num_objects)) + [-1] * (num_gt - num_objects), dtype=np.int32)
    cam = np.concatenate([annos['location'][:num_objects], annos['dimensions'][:num_objects],
                          annos['rotation_y'][:num_objects, None]], axis=1)
    annos['gt_boxes_lidar'] = boxes3d_kitti_camera_to_lidar(cam, calib).reshape(-1, 7)
    if count_inside_pts:
        points = read_lidar_bin(split_dir / 'velodyne' / f'{sample_idx}.bin')
        fov = points_in_image(points, calib, info['image']['image_shape'])
        num_points = -np.ones(num_gt, dtype=np.int32)
        if num_objects > 0:
            mask = np.asarray(points_in_boxes_mask(points[fov, :3], annos['gt_boxes_lidar']))
            num_points[:num_objects] = mask.sum(axis=1)
        annos['num_points_in_gt'] = num_points
    info['annos'] = annos
    return info


def get_infos(root, split: str, workers: int = 4, has_label: Optional[bool] = None,
              count_inside_pts: bool = True, progress: bool = True,
              cache: Optional[dict] = None) -> List[dict]:
    """Infos of every frame of ImageSets/{split}.txt. `cache` (a dict) shares frames between
    splits (trainval = train + val) so each frame is read once."""
    root = Path(root)
    ids = read_split_file(root / 'ImageSets' / f'{split}.txt')
    split_dir = split_folder(root, split)
    if has_label is None:
        has_label = split != 'test'
    if ids and not split_dir.is_dir():
        raise DataFileError(f'{split_dir}: folder not found (needed by ImageSets/{split}.txt)')

    def one(idx):
        key = (str(split_dir), idx, has_label, count_inside_pts)
        if cache is not None and key in cache:
            return copy.deepcopy(cache[key])
        info = frame_info(split_dir, idx, has_label=has_label, count_inside_pts=count_inside_pts)
        if cache is not None:
            cache[key] = info
        return copy.deepcopy(info) if cache is not None else info

    it = ids
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            it = ex.map(one, ids)
            return list(_progress(it, len(ids), f'{split} infos', progress))
    return [one(i) for i in _progress(it, len(ids), f'{split} infos', progress)]


def _progress(it, total, desc, enabled):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, leave=False)


def create_groundtruth_database(root, infos: Sequence[dict], split: str = 'train',
                                used_classes: Optional[Sequence[str]] = None,
                                progress: bool = True) -> Dict[str, List[dict]]:
    """Cut every labelled object's points (box-centred) into gt_database/ and write
    kitti_dbinfos_{split}.pkl. Returns the db infos by class."""
    from ...ops.roiaware_pool3d import points_in_boxes_mask
    root = Path(root)
    db_name = 'gt_database' if split == 'train' else f'gt_database_{split}'
    db_dir = root / db_name
    tmp_dir = Path(tempfile.mkdtemp(prefix=f'.{db_name}.', dir=root))
    split_dir = split_folder(root, split)
    all_db_infos: Dict[str, List[dict]] = {}
    try:
        for info in _progress(infos, len(infos), 'gt database', progress):
            sample_idx = info['point_cloud']['lidar_idx']
            annos = info['annos']
            gt_boxes = annos['gt_boxes_lidar']
            if len(gt_boxes) == 0:
                continue
            points = read_lidar_bin(split_dir / 'velodyne' / f'{sample_idx}.bin')
            inside = np.asarray(points_in_boxes_mask(points[:, :3], gt_boxes))
            for i in range(len(gt_boxes)):
                name = annos['name'][i]
                filename = f'{sample_idx}_{name}_{i}.bin'
                gt_points = points[inside[i]].copy()
                gt_points[:, :3] -= gt_boxes[i, :3].astype(np.float32)
                gt_points.astype(np.float32).tofile(str(tmp_dir / filename))
                if used_classes is None or name in used_classes:
                    all_db_infos.setdefault(name, []).append({
                        'name': name, 'path': f'{db_name}/{filename}', 'image_idx': sample_idx,
                        'gt_idx': i, 'box3d_lidar': gt_boxes[i].astype(np.float32),
                        'num_points_in_gt': int(gt_points.shape[0]),
                        'difficulty': int(annos['difficulty'][i]), 'bbox': annos['bbox'][i],
                        'score': float(annos['score'][i])})
        replace_dir(tmp_dir, db_dir)
    except BaseException:
        import shutil
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    atomic_pickle_dump(all_db_infos, root / f'kitti_dbinfos_{split}.pkl')
    return all_db_infos


def create_kitti_infos(data_path, workers: int = 4, progress: bool = True, log=print) -> Dict[str, str]:
    """The whole `create_data.py kitti` job. Reads everything first, then writes, so a
    bad file anywhere stops the run before any output is replaced."""
    root = Path(data_path)
    if not root.is_dir():
        raise DataFileError(f'{root}: dataset folder not found')
    imagesets = root / 'ImageSets'
    present = [s for s in SPLITS if (imagesets / f'{s}.txt').is_file()]
    if not {'train', 'val'} <= set(present):
        raise DataFileError(
            f'{imagesets}: missing split lists {sorted({"train", "val"} - set(present))}. Place the '
            f'standard KITTI ImageSets lists (train.txt, val.txt, trainval.txt, test.txt) in '
            f'{imagesets}/')
    cache: dict = {}
    infos = {s: get_infos(root, s, workers=workers, progress=progress, cache=cache) for s in present}
    written = {}
    for s in present:
        out = root / f'kitti_infos_{s}.pkl'
        atomic_pickle_dump(infos[s], out)
        written[s] = str(out)
        log(f'kitti info {s} file is saved to {out} ({len(infos[s])} frames)')
    db = create_groundtruth_database(root, infos['train'], split='train', progress=progress)
    written['dbinfos_train'] = str(root / 'kitti_dbinfos_train.pkl')
    counts = ', '.join(f'{k}: {len(v)}' for k, v in sorted(db.items()))
    log(f'gt database saved to {root / "gt_database"} ({counts})')
    return written
