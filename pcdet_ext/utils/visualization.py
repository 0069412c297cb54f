"""PNG views of detections: bird's-eye view (points, predicted and ground-truth boxes) and the
boxes projected on image_2. Matplotlib's Agg canvas is used directly (no global backend state).
All box conversions come from pcdet_ext.geometry."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..geometry import (boxes3d_kitti_camera_to_corners, boxes3d_lidar_to_kitti_camera, boxes_bev_corners,
                        corners_to_image_boxes)

PRED_COLOR = '#e8412c'
GT_COLOR = '#24b34b'


def _np(x):
    if x is None:
        return None
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _save(fig: Figure, out_path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f'.{out_path.stem}.tmp{os.getpid()}{out_path.suffix}')
    FigureCanvasAgg(fig)
    fig.savefig(str(tmp), dpi=fig.dpi)
    os.replace(tmp, out_path)
    return out_path


def _label(i, labels, scores, class_names):
    parts = []
    if labels is not None and class_names is not None and 1 <= int(labels[i]) <= len(class_names):
        parts.append(class_names[int(labels[i]) - 1])
    if scores is not None:
        parts.append(f'{float(scores[i]):.2f}')
    return ' '.join(parts)


def draw_bev(points, out_path, pred_boxes=None, pred_scores=None, pred_labels=None, gt_boxes=None,
             class_names: Optional[Sequence[str]] = None, pc_range=None, title: Optional[str] = None,
             max_points: int = 60000) -> Path:
    """Top view, x forward (up in the image), y left. Boxes are LiDAR (x, y, z, dx, dy, dz, heading);
    a short line from the centre marks the heading. Returns the PNG path."""
    pts = _np(points)
    pred, gt = _np(pred_boxes), _np(gt_boxes)
    scores, labels = _np(pred_scores), _np(pred_labels)
    fig = Figure(figsize=(8, 8), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    if pts is not None and len(pts):
        if len(pts) > max_points:  # thin for speed; a fixed stride keeps it deterministic
            pts = pts[:: int(np.ceil(len(pts) / max_points))]
        ax.scatter(-pts[:, 1], pts[:, 0], s=0.3, c=pts[:, 2], cmap='viridis', linewidths=0)
    for boxes, color, name in ((gt, GT_COLOR, 'ground truth'), (pred, PRED_COLOR, 'prediction')):
        if boxes is None or len(boxes) == 0:
            continue
        corners = boxes_bev_corners(boxes[:, :7])  # (N, 4, 2)
        for i, c in enumerate(corners):
            poly = np.vstack([c, c[:1]])
            ax.plot(-poly[:, 1], poly[:, 0], color=color, linewidth=1.2, label=name if i == 0 else None)
            half = boxes[i, 3] / 2
            front = boxes[i, :2] + half * np.array([np.cos(boxes[i, 6]), np.sin(boxes[i, 6])])
            ax.plot([-boxes[i, 1], -front[1]], [boxes[i, 0], front[0]], color=color, linewidth=1.0)
            if boxes is pred:
                text = _label(i, labels, scores, class_names)
                if text:
                    ax.text(-c[:, 1].max(), c[:, 0].max(), text, color=color, fontsize=6)
    if pc_range is not None:
        r = list(pc_range)
        ax.set_xlim(-r[4], -r[1])
        ax.set_ylim(r[0], r[3])
    ax.set_aspect('equal')
    ax.set_xlabel('-y (m, left is positive y)')
    ax.set_ylabel('x (m, forward)')
    ax.legend(loc='upper right', fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, out_path)


def _box_edges():
    bottom = [(0, 1), (1, 2), (2, 3), (3, 0)]
    top = [(4, 5), (5, 6), (6, 7), (7, 4)]
    return bottom + top + [(i, i + 4) for i in range(4)]


def project_boxes_to_image(boxes_lidar, calib, min_depth: float = 0.5):
    """(N, 7) LiDAR boxes -> (projected corners (M, 8, 2), kept indices (M,)) for boxes fully in
    front of the camera."""
    boxes = _np(boxes_lidar)
    if boxes is None or len(boxes) == 0:
        return np.zeros((0, 8, 2)), np.zeros((0,), dtype=np.int64)
    cam = boxes3d_lidar_to_kitti_camera(boxes[:, :7], calib)
    corners = boxes3d_kitti_camera_to_corners(cam)
    keep = np.where(corners[:, :, 2].min(axis=1) > min_depth)[0]
    if len(keep) == 0:
        return np.zeros((0, 8, 2)), keep
    _, uv = corners_to_image_boxes(corners[keep], calib)
    return uv, keep


def draw_image_boxes(image, calib, out_path, pred_boxes=None, pred_scores=None, pred_labels=None, gt_boxes=None,
                     class_names: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Path:
    """image_2 (H, W, 3) with the 3D boxes' projected edges (green: ground truth, red: predictions)."""
    img = _np(image)
    h, w = img.shape[:2]
    fig = Figure(figsize=(w / 100.0, h / 100.0 + 0.3), dpi=100)
    ax = fig.add_axes([0, 0, 1, h / (h + 30.0)])
    ax.imshow(img)
    scores, labels = _np(pred_scores), _np(pred_labels)
    for boxes, color in ((gt_boxes, GT_COLOR), (pred_boxes, PRED_COLOR)):
        uv, keep = project_boxes_to_image(boxes, calib)
        for j, corners in enumerate(uv):
            for a, b in _box_edges():
                ax.plot([corners[a, 0], corners[b, 0]], [corners[a, 1], corners[b, 1]], color=color, linewidth=1.0)
            if boxes is pred_boxes:
                text = _label(keep[j], labels, scores, class_names)
                if text:
                    ax.text(corners[:, 0].min(), corners[:, 1].min() - 2, text, color=color, fontsize=6)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, out_path)
