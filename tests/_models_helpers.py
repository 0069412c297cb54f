"""Shared builders for the detector tests: a tiny geometry, a stand-in dataset and a hand-made batch."""
from pathlib import Path

import numpy as np
import torch

from pcdet_ext.config import ConfigDict, cfg_from_yaml_file
from pcdet_ext.models import build_network
from pcdet_ext.ops.voxelize import hard_voxelize

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = ['Car', 'Pedestrian', 'Cyclist']
# Small scene so that a forward/backward takes well under a second on one CPU core.
RANGE = [0.0, -12.8, -3.0, 25.6, 12.8, 1.0]
VOXEL = {'SECONDNet': [0.4, 0.4, 0.1], 'PointPillar': [0.4, 0.4, 4.0]}
CFG = {'SECONDNet': 'cfgs/kitti_models/second.yaml', 'PointPillar': 'cfgs/kitti_models/pointpillar.yaml'}


class PointFeatureEncoder:
    num_point_features = 4


class TinyDataset:
    """What build_network reads from a dataset (OpenPCDet's attribute names)."""

    def __init__(self, voxel_size, point_cloud_range=RANGE, class_names=CLASS_NAMES):
        self.class_names = list(class_names)
        self.point_feature_encoder = PointFeatureEncoder()
        self.point_cloud_range = np.array(point_cloud_range, dtype=np.float32)
        self.voxel_size = list(voxel_size)
        self.grid_size = np.round((self.point_cloud_range[3:6] - self.point_cloud_range[0:3])
                                  / np.array(voxel_size)).astype(np.int64)
        self.depth_downsample_factor = None


def load_model_cfg(name: str, small: bool = True):
    """MODEL section of the KITTI yaml (read from the repo file), optionally with a narrow 2D backbone."""
    cfg = ConfigDict()
    # The model yaml's DATA_CONFIG base is not needed here: read MODEL only.
    cfg_from_yaml_file(REPO / CFG[name], cfg)
    model_cfg = cfg.MODEL
    if small:
        bb = model_cfg.BACKBONE_2D
        bb.LAYER_NUMS = [1] * len(bb.LAYER_NUMS)
        bb.NUM_FILTERS = [16 * (i + 1) for i in range(len(bb.NUM_FILTERS))]
        bb.NUM_UPSAMPLE_FILTERS = [16] * len(bb.NUM_UPSAMPLE_FILTERS)
    return cfg, model_cfg


def build(name: str, small: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    cfg, model_cfg = load_model_cfg(name, small)
    dataset = TinyDataset(VOXEL[name])
    return build_network(model_cfg, num_class=len(CLASS_NAMES), dataset=dataset), dataset, cfg


def _box_surface_points(box, rng, n=250):
    """Points on the four sides and the top of a LiDAR box (x, y, z, dx, dy, dz, heading)."""
    x, y, z, dx, dy, dz, h = box
    u = rng.uniform(-0.5, 0.5, size=(n, 3))
    face = rng.integers(0, 5, size=n)
    u[face == 0, 0] = 0.5
    u[face == 1, 0] = -0.5
    u[face == 2, 1] = 0.5
    u[face == 3, 1] = -0.5
    u[face == 4, 2] = 0.5
    local = u * np.array([dx, dy, dz])
    c, s = np.cos(h), np.sin(h)
    pts = np.stack([local[:, 0] * c - local[:, 1] * s + x, local[:, 0] * s + local[:, 1] * c + y,
                    local[:, 2] + z], axis=1)
    return pts


def make_frame(rng, boxes):
    n = 600
    ground = np.stack([rng.uniform(0.5, 25, n), rng.uniform(-12.5, 12.5, n),
                       np.full(n, -1.73) + rng.normal(0, 0.02, n)], axis=1)
    pts = np.concatenate([ground] + [_box_surface_points(b, rng) for b in boxes[:, :7]], axis=0)
    intensity = rng.uniform(0, 1, size=(pts.shape[0], 1))
    return np.concatenate([pts, intensity], axis=1).astype(np.float32)


DEFAULT_BOXES = [
    np.array([[10.0, 3.0, -0.95, 3.9, 1.6, 1.56, 0.3, 1], [18.0, -5.0, -0.9, 4.2, 1.7, 1.5, -1.2, 1],
              [6.0, -2.0, -0.87, 0.7, 0.6, 1.75, 0.0, 2]], dtype=np.float32),
    np.array([[14.0, 6.0, -0.95, 3.8, 1.6, 1.5, 2.9, 1], [8.0, -6.0, -0.85, 1.8, 0.6, 1.7, 1.0, 3]],
             dtype=np.float32),
]


def make_batch(dataset, boxes_per_frame=None, seed=0, max_points=5, max_voxels=20000):
    """Collated batch_dict with OpenPCDet's keys, built by hand: points, voxels (hard_voxelize), gt_boxes."""
    rng = np.random.default_rng(seed)
    boxes_per_frame = boxes_per_frame if boxes_per_frame is not None else DEFAULT_BOXES
    points, voxels, coords, num_points = [], [], [], []
    for b, boxes in enumerate(boxes_per_frame):
        pts = make_frame(rng, boxes)
        v, c, n = hard_voxelize(pts, dataset.voxel_size, dataset.point_cloud_range, max_points, max_voxels)
        points.append(np.pad(pts, ((0, 0), (1, 0)), constant_values=b))
        voxels.append(v)
        coords.append(np.pad(np.asarray(c), ((0, 0), (1, 0)), constant_values=b))
        num_points.append(n)
    m = max(len(bx) for bx in boxes_per_frame)
    gt = np.zeros((len(boxes_per_frame), m, 8), dtype=np.float32)
    for b, boxes in enumerate(boxes_per_frame):
        gt[b, :len(boxes)] = boxes
    return {
        'batch_size': len(boxes_per_frame),
        'points': torch.from_numpy(np.concatenate(points)).float(),
        'voxels': torch.from_numpy(np.concatenate(voxels)).float(),
        'voxel_coords': torch.from_numpy(np.concatenate(coords)).float(),  # float as after load_data_to_gpu
        'voxel_num_points': torch.from_numpy(np.concatenate(num_points)).float(),
        'gt_boxes': torch.from_numpy(gt),
        'frame_id': np.array([str(i) for i in range(len(boxes_per_frame))]),
    }
