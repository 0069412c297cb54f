"""Generic object pasting: put object point sets (with their boxes) into a scene.

Used by gt sampling, ALPI proxy injection and S-SSAL pseudo-scenes. Scene points inside a
pasted box (optionally enlarged) are removed first, so a pasted object never interpenetrates
what was there; the caller is responsible for choosing boxes that do not overlap each other.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ...geometry import check_boxes, enlarge_box3d


def remove_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Drop the points lying inside any of the (N, 7) LiDAR boxes."""
    if len(boxes) == 0 or len(points) == 0:
        return points
    from ...ops.roiaware_pool3d import points_in_boxes
    idx = np.asarray(points_in_boxes(np.ascontiguousarray(points[:, :3]), np.asarray(boxes[:, :7])))
    return points[idx < 0]


def paste_objects(points: np.ndarray, boxes: Optional[np.ndarray], obj_points_list: Sequence[np.ndarray],
                  obj_boxes: np.ndarray, remove_extra_width=(0.0, 0.0, 0.0),
                  relative: bool = False):
    """Paste objects into a scene.

    points: (M, C) scene points; boxes: (K, B) scene boxes (or None);
    obj_points_list: one (n_i, C) array per object, in scene coordinates, or box-centred
    when relative=True (then the box centre is added, as gt_database files store them);
    obj_boxes: (N, B) boxes of the pasted objects (same width B as `boxes`).
    Returns (points, boxes): the object points first, then the remaining scene points;
    scene boxes followed by the pasted boxes.
    """
    obj_boxes = np.asarray(obj_boxes)
    if len(obj_points_list) != len(obj_boxes):
        raise ValueError(f'paste_objects: {len(obj_points_list)} point sets for '
                         f'{len(obj_boxes)} boxes')
    if len(obj_boxes) == 0:
        return points, boxes
    check_boxes(obj_boxes.reshape(len(obj_boxes), -1).astype(np.float64), 'obj_boxes')
    c = points.shape[1]
    pasted = []
    for i, p in enumerate(obj_points_list):
        p = np.asarray(p, dtype=points.dtype)
        if p.ndim != 2 or p.shape[1] != c:
            raise ValueError(f'paste_objects: obj_points_list[{i}] has shape {p.shape}, '
                             f'expected (n, {c}) like the scene points')
        if relative:
            p = p.copy()
            p[:, :3] += obj_boxes[i, :3].astype(p.dtype)
        pasted.append(p)
    carve = obj_boxes[:, :7].astype(np.float64)
    if any(remove_extra_width):
        carve = enlarge_box3d(carve, remove_extra_width)
    points = remove_points_in_boxes(points, carve)
    points = np.concatenate(pasted + [points], axis=0)
    if boxes is not None:
        boxes = np.concatenate([boxes, obj_boxes.astype(boxes.dtype)], axis=0)
    return points, boxes
