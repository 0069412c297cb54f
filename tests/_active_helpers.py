"""Shared builders for the active-learning tests: a tiny synthetic KITTI pool, a small dataset
config, a deterministic fake scorer that reads only points, hand-made summaries."""
from pathlib import Path

import numpy as np

from pcdet_ext.config import ConfigDict, cfg_from_yaml_file
from pcdet_ext.datasets.data_io import read_lidar_bin
from pcdet_ext.active.summaries import FrameSummary

REPO = Path(__file__).resolve().parents[1]
CLASSES = ['Car', 'Pedestrian', 'Cyclist']
RANGE = [0.0, -12.8, -3.0, 25.6, 12.8, 1.0]


def tiny_data_cfg(tmp_dir: Path, root: Path, extra: str = '') -> ConfigDict:
    """The shipped kitti_dataset.yaml on a small range with coarse voxels (fast on CPU)."""
    f = Path(tmp_dir) / 'tiny_data.yaml'
    f.write_text(
        f'_BASE_CONFIG_: {REPO / "cfgs/dataset_configs/kitti_dataset.yaml"}\n'
        f'DATA_PATH: {root}\n'
        f'POINT_CLOUD_RANGE: {RANGE}\n'
        'DATA_PROCESSOR:\n'
        '    - NAME: mask_points_and_boxes_outside_range\n'
        '      REMOVE_OUTSIDE_BOXES: True\n'
        '    - NAME: shuffle_points\n'
        "      SHUFFLE_ENABLED: {'train': True, 'test': False}\n"
        '    - NAME: transform_points_to_voxels\n'
        '      VOXEL_SIZE: [0.4, 0.4, 0.1]\n'
        '      MAX_POINTS_PER_VOXEL: 5\n'
        "      MAX_NUMBER_OF_VOXELS: {'train': 16000, 'test': 16000}\n" + extra)
    return cfg_from_yaml_file(str(f), ConfigDict())


def fake_summary(root: Path, fid: str, num_class: int = 3, feat_dim: int = 8) -> FrameSummary:
    """A deterministic 'model' that looks only at the frame's points: boxes at the densest BEV
    cells, scores and features from point statistics. Never touches labels."""
    pts = read_lidar_bin(Path(root) / 'training' / 'velodyne' / f'{fid}.bin')
    pts = pts[(pts[:, 0] > 2) & (pts[:, 0] < 40) & (np.abs(pts[:, 1]) < 20) & (pts[:, 2] > -1.2)]
    cells = np.floor(pts[:, :2] / 4.0).astype(np.int64)
    keys, counts = np.unique(cells, axis=0, return_counts=True)
    top = np.argsort(-counts, kind='stable')[:6]
    boxes, scores, labels, probs, feats, npts = [], [], [], [], [], []
    for j, k in enumerate(top):
        cx, cy = (keys[k] + 0.5) * 4.0
        inside = (cells == keys[k]).all(axis=1)
        z = pts[inside, 2]
        label = 1 + (int(counts[k]) % num_class)
        size = {1: (3.9, 1.6, 1.5), 2: (0.8, 0.6, 1.7), 3: (1.8, 0.6, 1.7)}[label]
        boxes.append([cx, cy, -1.0, *size, 0.1 * j])
        s = float(1 / (1 + np.exp(-(np.log1p(counts[k]) - 5.0))))
        scores.append(s)
        labels.append(label)
        p = np.full(num_class, (1 - s) / max(num_class - 1, 1))
        p[label - 1] = s
        probs.append(p)
        feats.append(np.resize([z.mean(), z.std(), np.log1p(counts[k]), cx / 40, cy / 20,
                                pts[inside, 3].mean()], feat_dim))
        npts.append(int(counts[k]))
    feats = np.array(feats, dtype=np.float32)
    return FrameSummary(fid, np.array(boxes), np.array(scores), np.array(labels), np.array(probs),
                        box_features=feats, frame_feature=feats.mean(0), box_num_points=np.array(npts))


def fake_pool_summaries(root: Path, ids) -> dict:
    return {f: fake_summary(root, f) for f in ids}


def hand_summary(fid, scores, labels=None, feat=None, num_class=3, feat_dim=4, x0=10.0):
    """A FrameSummary with boxes spaced 6 m apart along y, given scores (and labels, features)."""
    scores = np.asarray(scores, dtype=np.float32)
    k = len(scores)
    labels = np.ones(k, dtype=np.int64) if labels is None else np.asarray(labels)
    boxes = np.array([[x0, -20 + 6 * i, -1.0, 3.9, 1.6, 1.5, 0.0] for i in range(k)], dtype=np.float32)
    probs = np.zeros((k, num_class), dtype=np.float32)
    probs[np.arange(k), labels - 1] = scores
    feats = np.tile(np.asarray(feat if feat is not None else np.zeros(feat_dim), np.float32), (k, 1))
    return FrameSummary(fid, boxes.reshape(k, 7), scores, labels, probs, box_features=feats.reshape(k, -1),
                        frame_feature=np.asarray(feat if feat is not None else np.zeros(feat_dim), np.float32),
                        box_num_points=np.full(k, 50))
