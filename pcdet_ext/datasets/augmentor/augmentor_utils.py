"""World-frame augmentations on (gt_boxes (N, 7+), points (M, 3+)), as OpenPCDet.

Each takes an np.random.Generator so a seeded dataset replays the same augmentations.
Boxes may carry velocities in columns 7:9 (rotated / flipped along with the box).
"""
from __future__ import annotations

import numpy as np

from ...geometry import rotate_points_along_z


def random_flip_along_x(gt_boxes, points, rng: np.random.Generator, enable=None):
    """Mirror across the x axis (y -> -y) with probability 0.5."""
    if enable is None:
        enable = bool(rng.random() < 0.5)
    if enable:
        gt_boxes[:, 1] = -gt_boxes[:, 1]
        gt_boxes[:, 6] = -gt_boxes[:, 6]
        points[:, 1] = -points[:, 1]
        if gt_boxes.shape[1] > 8:
            gt_boxes[:, 8] = -gt_boxes[:, 8]
    return gt_boxes, points, enable


def random_flip_along_y(gt_boxes, points, rng: np.random.Generator, enable=None):
    """Mirror across the y axis (x -> -x) with probability 0.5."""
    if enable is None:
        enable = bool(rng.random() < 0.5)
    if enable:
        gt_boxes[:, 0] = -gt_boxes[:, 0]
        gt_boxes[:, 6] = -(gt_boxes[:, 6] + np.pi)
        points[:, 0] = -points[:, 0]
        if gt_boxes.shape[1] > 7:
            gt_boxes[:, 7] = -gt_boxes[:, 7]
    return gt_boxes, points, enable


def global_rotation(gt_boxes, points, rot_range, rng: np.random.Generator, angle=None):
    """Rotate the whole scene around +z by an angle drawn from rot_range."""
    if angle is None:
        angle = float(rng.uniform(rot_range[0], rot_range[1]))
    ang = np.array([angle])
    points[:, :3] = rotate_points_along_z(points[None, :, :3].astype(np.float64), ang)[0]
    if len(gt_boxes):
        gt_boxes[:, 0:3] = rotate_points_along_z(gt_boxes[None, :, 0:3].astype(np.float64), ang)[0]
        gt_boxes[:, 6] += angle
        if gt_boxes.shape[1] > 8:
            vel = np.concatenate([gt_boxes[:, 7:9], np.zeros((len(gt_boxes), 1))], axis=1)
            gt_boxes[:, 7:9] = rotate_points_along_z(vel[None].astype(np.float64), ang)[0][:, :2]
    return gt_boxes, points, angle


def global_scaling(gt_boxes, points, scale_range, rng: np.random.Generator, scale=None):
    """Scale the whole scene (positions and sizes) by a factor drawn from scale_range."""
    if scale is None:
        if scale_range[1] - scale_range[0] < 1e-3:
            return gt_boxes, points, 1.0
        scale = float(rng.uniform(scale_range[0], scale_range[1]))
    points[:, :3] *= scale
    gt_boxes[:, :6] *= scale
    if gt_boxes.shape[1] > 8:
        gt_boxes[:, 7:9] *= scale
    return gt_boxes, points, scale
