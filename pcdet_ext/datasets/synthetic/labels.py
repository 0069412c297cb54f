"""The KITTI camera of the synthetic frames, and KITTI label lines for the simulated objects:
2D box in image_2, truncation, occlusion, alpha, with every conversion from pcdet_ext.geometry.
"""
from __future__ import annotations

from typing import List

import numpy as np

from pcdet_ext.geometry import (Calibration, alpha_from_ry, boxes3d_kitti_camera_to_lidar,
                                boxes3d_lidar_to_kitti_camera, boxes_to_corners_3d)

# A real KITTI calibration: training/calib/000001.txt (drive day 2011_09_26).
KITTI_CALIB = {
    'P2': np.array([7.215377e+02, 0.0, 6.095593e+02, 4.485728e+01,
                    0.0, 7.215377e+02, 1.728540e+02, 2.163791e-01,
                    0.0, 0.0, 1.0, 2.745884e-03]),
    'R0_rect': np.array([9.999239e-01, 9.837760e-03, -7.445048e-03,
                         -9.869795e-03, 9.999421e-01, -4.278459e-03,
                         7.402527e-03, 4.351614e-03, 9.999631e-01]),
    'Tr_velo_to_cam': np.array([7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03,
                                1.480249e-02, 7.280733e-04, -9.998902e-01, -7.631618e-02,
                                9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01]),
}
IMAGE_SHAPE = (375, 1242)  # (H, W) of KITTI image_2
# Blocked-ray fractions separating KITTI occlusion levels 0 | 1 | 2 | 3 (3: "unknown",
# which KITTI's evaluation ignores; used for objects the sensor barely or never sees).
OCCLUSION_BOUNDS = (0.1, 0.5, 0.9)
NEAR_PLANE = 0.1  # metres in front of the camera; 3D boxes are clipped here before projecting


def kitti_calibration() -> Calibration:
    return Calibration(KITTI_CALIB)


def quantize_boxes(boxes_lidar: np.ndarray, calib: Calibration):
    """Snap LiDAR boxes to what a label file stores (camera frame, 2 decimals).

    Returns (LiDAR boxes, camera boxes): the camera boxes are the label values; the LiDAR
    boxes are what a KITTI loader makes of them (boxes3d_kitti_camera_to_lidar), and the
    scene is built from those, so labels, loader and points agree exactly. (The camera ->
    LiDAR -> camera trip is not the identity, as in OpenPCDet: the half-height shift is
    applied along each frame's own vertical axis, ~1 cm apart with KITTI's 0.85 deg pitch;
    so label values are never recomputed from the LiDAR boxes.)"""
    if len(boxes_lidar) == 0:
        return np.zeros((0, 7)), np.zeros((0, 7))
    cam = np.round(boxes3d_lidar_to_kitti_camera(boxes_lidar, calib), 2)
    return boxes3d_kitti_camera_to_lidar(cam, calib), cam


# The 12 edges of a box, as corner index pairs (boxes_to_corners_3d order: 0-3 bottom, 4-7 top).
_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4],
                   [0, 4], [1, 5], [2, 6], [3, 7]])


def image_boxes(boxes_lidar: np.ndarray, calib: Calibration, image_shape=IMAGE_SHAPE):
    """Enclosing image_2 boxes of LiDAR boxes (the solids the points lie on), with each box
    first clipped to the part in front of the camera (corners behind it do not project).
    For boxes wholly in front this equals geometry.boxes3d_lidar_to_imageboxes up to the
    ~1 cm camera/LiDAR half-height quirk noted in quantize_boxes.

    Returns (full (N, 4) unclipped boxes, clipped (N, 4) boxes inside the image,
    in_image (N,) bool: some part of the box is ahead of the camera and inside the image)."""
    n = len(boxes_lidar)
    full = np.zeros((n, 4))
    ahead = np.zeros(n, dtype=bool)
    corners = np.asarray(boxes_to_corners_3d(np.asarray(boxes_lidar, dtype=np.float64)))
    corners = calib.lidar_to_rect(corners.reshape(-1, 3)).reshape(n, 8, 3)  # rect frame
    for i in range(n):
        c = corners[i]
        front = c[:, 2] >= NEAR_PLANE
        if not front.any():
            continue
        pts = [c[front]]
        a, b = c[_EDGES[:, 0]], c[_EDGES[:, 1]]
        cross = (a[:, 2] - NEAR_PLANE) * (b[:, 2] - NEAR_PLANE) < 0
        if cross.any():  # where an edge pierces the near plane
            a, b = a[cross], b[cross]
            f = (NEAR_PLANE - a[:, 2]) / (b[:, 2] - a[:, 2])
            pts.append(a + f[:, None] * (b - a))
        uv, _ = calib.rect_to_img(np.concatenate(pts))
        full[i] = [uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()]
        ahead[i] = True
    h, w = image_shape
    clipped = full.copy()
    clipped[:, [0, 2]] = np.clip(full[:, [0, 2]], 0, w - 1)
    clipped[:, [1, 3]] = np.clip(full[:, [1, 3]], 0, h - 1)
    in_image = ahead & (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return full, clipped, in_image


def truncation(full: np.ndarray, clipped: np.ndarray) -> np.ndarray:
    """Fraction of the projected box area outside the image."""
    area = lambda b: np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    a_full = area(full)
    return np.clip(1 - area(clipped) / np.maximum(a_full, 1e-9), 0.0, 1.0)


def occlusion_level(rays_total: np.ndarray, rays_visible: np.ndarray) -> np.ndarray:
    """KITTI occlusion 0-3 from the fraction of an object's LiDAR rays blocked by nearer
    geometry; objects no ray reaches are 3."""
    blocked = 1 - rays_visible / np.maximum(rays_total, 1)
    level = np.searchsorted(np.asarray(OCCLUSION_BOUNDS), blocked, side='left')
    return np.where(rays_visible > 0, level, 3).astype(np.int64)


def format_label_line(name: str, trunc: float, occ: int, alpha: float, box2d, cam_box) -> str:
    """One 15-column KITTI label line; cam_box is (x, y, z, l, h, w, ry), written h w l."""
    x, y, z, l, h, w, ry = cam_box
    x1, y1, x2, y2 = box2d
    return (f'{name} {trunc:.2f} {int(occ)} {alpha:.2f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} '
            f'{h:.2f} {w:.2f} {l:.2f} {x:.2f} {y:.2f} {z:.2f} {ry:.2f}')


def make_labels(boxes_lidar: np.ndarray, boxes_cam: np.ndarray, names: List[str],
                rays_total: np.ndarray, rays_visible: np.ndarray, calib: Calibration,
                image_shape=IMAGE_SHAPE) -> dict:
    """Label every object that shows in image_2 (like KITTI, others get no line).
    boxes_lidar and boxes_cam are the pair quantize_boxes returns.

    Returns dict(labelled (N,) bool, lines [str], and per labelled object: box2d, truncation,
    occlusion, alpha, boxes_camera)."""
    n = len(boxes_lidar)
    if n == 0:
        return dict(labelled=np.zeros(0, bool), lines=[], box2d=np.zeros((0, 4)),
                    truncation=np.zeros(0), occlusion=np.zeros(0, np.int64), alpha=np.zeros(0),
                    boxes_camera=np.zeros((0, 7)))
    cam = np.asarray(boxes_cam, dtype=np.float64)
    full, clipped, in_image = image_boxes(boxes_lidar, calib, image_shape)
    trunc = truncation(full, clipped)
    occ = occlusion_level(rays_total, rays_visible)
    alpha = alpha_from_ry(cam[:, 6], cam[:, 0], cam[:, 2])
    idx = np.nonzero(in_image)[0]
    lines = [format_label_line(names[i], trunc[i], occ[i], alpha[i], clipped[i], cam[i]) for i in idx]
    return dict(labelled=in_image, lines=lines, box2d=clipped[idx], truncation=trunc[idx],
                occlusion=occ[idx], alpha=alpha[idx], boxes_camera=cam[idx])
