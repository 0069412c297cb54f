"""Which pseudo-labels of step k become 3D-supervised instances at step k + 1.

A pseudo box is kept when all three hold:
- its score >= SCORE_THRESH (a number, or {class: number});
- the 2D box of its projected corners (clipped to the image when the image size is known)
  overlaps the label's 2D box with IoU >= IOU_2D_THRESH: the 3D box must explain the evidence;
- its depth (rectified camera z of the box centre) lies in DEPTH_RANGE [min, max] metres.

Only the weak label's 2D box is compared, never 3D ground truth. Counts: `total`, `kept`, and
per failed criterion `low_score`, `low_iou_2d`, `depth_out_of_range` (a box failing two
criteria counts in both; a box out of the depth range is not also counted as low_iou_2d).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..geometry import Calibration, boxes3d_lidar_to_imageboxes, boxes3d_lidar_to_kitti_camera, check_boxes


def paired_iou_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row i of a with row i of b, (N, 4) x1, y1, x2, y2 -> (N,)."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class PseudoLabelFilter:
    """Config keys: SCORE_THRESH 0.5 (or per class), IOU_2D_THRESH 0.5 (or per class),
    DEPTH_RANGE [0.5, 80.0]."""

    def __init__(self, cfg=None):
        cfg = cfg if cfg is not None else {}
        self.score_thresh = self._per_class(cfg.get('SCORE_THRESH', 0.5), 'SCORE_THRESH')
        self.iou_2d_thresh = self._per_class(cfg.get('IOU_2D_THRESH', 0.5), 'IOU_2D_THRESH')
        depth = cfg.get('DEPTH_RANGE', [0.5, 80.0])
        if len(depth) != 2 or not float(depth[0]) < float(depth[1]):
            raise ValueError(f'PseudoLabelFilter: DEPTH_RANGE must be [min, max] with min < max, got {depth}')
        self.depth_range = (float(depth[0]), float(depth[1]))

    @staticmethod
    def _per_class(value, key: str) -> Union[float, Dict[str, float]]:
        if isinstance(value, Mapping):
            return {str(k): float(v) for k, v in value.items()}
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f'PseudoLabelFilter: {key} must be a number or {{class: number}}, '
                             f'got {value!r}') from None

    @staticmethod
    def _thresholds(value, classes: Optional[Sequence[str]], n: int, key: str) -> np.ndarray:
        if not isinstance(value, dict):
            return np.full(n, value)
        if classes is None:
            raise ValueError(f'PseudoLabelFilter: {key} is per class, pass classes=')
        missing = sorted({c for c in classes if c not in value})
        if missing:
            raise ValueError(f'PseudoLabelFilter: {key} has no threshold for classes {missing}')
        return np.array([value[c] for c in classes], dtype=np.float64)

    def __call__(self, boxes_lidar, scores, label_box2d, calib: Calibration,
                 classes: Optional[Sequence[str]] = None, image_shape=None
                 ) -> Tuple[np.ndarray, Counter]:
        """boxes_lidar (N, 7), scores (N,), label_box2d (N, 4) of one frame -> (keep mask, counts)."""
        boxes = check_boxes(np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7), 'boxes_lidar')
        n = boxes.shape[0]
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        label_box2d = np.asarray(label_box2d, dtype=np.float64).reshape(-1, 4)
        if scores.shape[0] != n or label_box2d.shape[0] != n:
            raise ValueError(f'PseudoLabelFilter: {n} boxes but {scores.shape[0]} scores and '
                             f'{label_box2d.shape[0]} 2D label boxes')
        if classes is not None and len(classes) != n:
            raise ValueError(f'PseudoLabelFilter: {n} boxes but {len(classes)} classes')
        counts: Counter = Counter(total=n, kept=0, low_score=0, low_iou_2d=0, depth_out_of_range=0)
        if n == 0:
            return np.zeros(0, dtype=bool), counts
        depth = boxes3d_lidar_to_kitti_camera(boxes, calib)[:, 2]
        ok_depth = (depth >= self.depth_range[0]) & (depth <= self.depth_range[1])
        ok_score = scores >= self._thresholds(self.score_thresh, classes, n, 'SCORE_THRESH')
        iou = np.zeros(n)
        if ok_depth.any():  # boxes behind the camera have no meaningful projection
            proj = boxes3d_lidar_to_imageboxes(boxes[ok_depth], calib, image_shape)
            iou[ok_depth] = paired_iou_2d(proj, label_box2d[ok_depth])
        ok_iou = iou >= self._thresholds(self.iou_2d_thresh, classes, n, 'IOU_2D_THRESH')
        keep = ok_depth & ok_score & ok_iou
        counts = Counter(total=n, kept=int(keep.sum()), low_score=int((~ok_score).sum()),
                         low_iou_2d=int((~ok_iou & ok_depth).sum()),
                         depth_out_of_range=int((~ok_depth).sum()))
        return keep, counts
