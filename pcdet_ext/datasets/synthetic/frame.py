"""One synthetic frame: scene, LiDAR scan, KITTI labels. Each frame owns its random stream
(seeded by (seed, frame index)), so frames can be made in any order, in parallel, or again."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from pcdet_ext.geometry import Calibration

from .labels import IMAGE_SHAPE, kitti_calibration, make_labels
from .lidar_model import LidarModel
from .scene import build_scene

_DEFAULT_LIDAR: Optional[LidarModel] = None
_MAX_REDRAWS = 10


def default_lidar() -> LidarModel:
    """The HDL-64E-like sensor the dataset uses (built once per process)."""
    global _DEFAULT_LIDAR
    if _DEFAULT_LIDAR is None:
        _DEFAULT_LIDAR = LidarModel()
    return _DEFAULT_LIDAR


def frame_rng(seed: int, frame_idx: int) -> np.random.Generator:
    """The independent random stream of one frame."""
    if int(seed) < 0 or int(frame_idx) < 0:
        raise ValueError(f'frame_rng: seed and frame_idx must be >= 0, got {seed}, {frame_idx}')
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(frame_idx)]))


def generate_frame(seed_or_rng: Union[int, np.random.Generator], frame_idx: int = 0,
                   lidar: Optional[LidarModel] = None, calib: Optional[Calibration] = None) -> dict:
    """Simulate one frame.

    seed_or_rng: a dataset seed (the frame then uses frame_rng(seed, frame_idx)) or a
    numpy Generator used as is. Returns dict with
      points (N, 4) float32 x, y, z, intensity (LiDAR frame);
      boxes_lidar (M, 7), names (M,): the objects that get label lines (in image_2);
      labels_text: the label_2 file content; label fields box2d, truncation, occlusion,
      alpha, boxes_camera, num_points (M,);
      all_boxes_lidar, all_names, labelled (mask), all_num_points: every simulated object,
      including those outside the camera's view;
      point_owner (N,): object index into all_* (-1: scenery); point_prim (N,): the primitive
      hit (index into scene.primitives boxes, cylinders, spheres in turn; -2 ground);
      calib; scene (SceneSample).
    """
    if isinstance(seed_or_rng, np.random.Generator):
        rng = seed_or_rng
    elif isinstance(seed_or_rng, (int, np.integer)):
        rng = frame_rng(int(seed_or_rng), frame_idx)
    else:
        raise TypeError(f'generate_frame: seed_or_rng must be an int or numpy Generator, '
                        f'got {type(seed_or_rng).__name__}')
    lidar = lidar or default_lidar()
    calib = calib or kitti_calibration()
    for _ in range(_MAX_REDRAWS):
        scene = build_scene(rng, calib)
        n = len(scene.boxes_lidar)
        scan = lidar.cast(scene.primitives, rng, num_objects=n)
        lab = make_labels(scene.boxes_lidar, scene.boxes_camera, scene.names, scan.rays_total,
                          scan.rays_visible, calib, IMAGE_SHAPE)
        # Like real KITTI, every frame has a labelled object (empty label files break loaders).
        if lab['labelled'].any():
            break
    idx = np.nonzero(lab['labelled'])[0]
    names = np.array(scene.names, dtype='<U10') if n else np.zeros(0, dtype='<U10')
    return dict(
        frame_idx=int(frame_idx), points=scan.points,
        boxes_lidar=scene.boxes_lidar[idx], names=names[idx],
        labels_text=''.join(line + '\n' for line in lab['lines']),
        box2d=lab['box2d'], truncation=lab['truncation'], occlusion=lab['occlusion'],
        alpha=lab['alpha'], boxes_camera=lab['boxes_camera'], num_points=scan.num_points[idx],
        all_boxes_lidar=scene.boxes_lidar, all_names=names, labelled=lab['labelled'],
        all_num_points=scan.num_points, rays_total=scan.rays_total, rays_visible=scan.rays_visible,
        point_owner=scan.point_owner, point_prim=scan.point_prim, calib=calib, scene=scene)
