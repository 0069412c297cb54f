"""Pseudo-labels out: KITTI label_2 files with 3D boxes and scores, and their evaluation.

Every weak label (2D box) the labeller accepted gets one line, in the order of the input file:
`type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y score`, the 2D box being the
input box. Objects the annotator could not label (2D box under MIN_BOX_HEIGHT, empty frustum)
keep their 2D box with KITTI's unknown 3D values (-1 -1 -1 -1000 -1000 -1000 -10) and score 0,
so no labelled 2D box is dropped silently. Files are written atomically.

Evaluation against ground truth (KITTI AP and per-object quality) reads 3D fields only here,
for reporting, never for training.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..geometry import Calibration, alpha_from_ry, boxes3d_lidar_to_kitti_camera

UNKNOWN_3D = (-1.0, -1.0, -1.0, -1000.0, -1000.0, -1000.0, -10.0)


def set_unknown_3d(anno: Dict[str, np.ndarray], i: int) -> None:
    """Row i of a KITTI annotation dict gets KITTI's unknown 3D values (and alpha -10)."""
    anno['dimensions'][i] = UNKNOWN_3D[0:3]
    anno['location'][i] = UNKNOWN_3D[3:6]
    anno['rotation_y'][i] = anno['alpha'][i] = UNKNOWN_3D[6]


def _atomic_write(path: str, text: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def label_line(cls: str, box2d, trunc: float, occ: int, box_cam=None, score: float = 0.0) -> str:
    """One KITTI line; box_cam (x, y, z bottom, l, h, w, ry) or None for an unlabelled object."""
    x1, y1, x2, y2 = (float(v) for v in box2d)
    if box_cam is None:
        h, w, l, x, y, z, ry = UNKNOWN_3D
        alpha = -10.0
    else:
        x, y, z, l, h, w, ry = (float(v) for v in box_cam)
        alpha = float(alpha_from_ry(np.array([ry]), np.array([x]), np.array([z]))[0])
    trunc = max(float(trunc), 0.0)
    occ = max(int(occ), 0)
    return (f'{cls} {trunc:.2f} {occ:d} {alpha:.2f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} '
            f'{h:.2f} {w:.2f} {l:.2f} {x:.2f} {y:.2f} {z:.2f} {ry:.2f} {score:.4f}')


def frame_annotation(labels: Sequence, preds: Dict[int, dict], calib: Calibration,
                     include_unlabelled: bool = False) -> dict:
    """KITTI annotation dict of one frame. labels: WeakLabel list; preds: obj_index ->
    {'box_lidar': (7,), 'score': float}."""
    rows = [lab for lab in labels if include_unlabelled or lab.obj_index in preds]
    n = len(rows)
    anno = {'name': np.array([lab.cls for lab in rows], dtype='<U16'),
            'truncated': np.array([max(lab.truncation, 0.0) for lab in rows], dtype=np.float64),
            'occluded': np.array([max(lab.occlusion, 0) for lab in rows], dtype=np.int64),
            'bbox': np.array([lab.box2d for lab in rows], dtype=np.float64).reshape(n, 4),
            'dimensions': np.zeros((n, 3)), 'location': np.zeros((n, 3)), 'rotation_y': np.zeros(n),
            'alpha': np.zeros(n), 'score': np.zeros(n), 'obj_index': np.array([lab.obj_index for lab in rows], dtype=np.int64)}
    for i, lab in enumerate(rows):
        p = preds.get(lab.obj_index)
        if p is None:
            set_unknown_3d(anno, i)
            continue
        cam = boxes3d_lidar_to_kitti_camera(np.asarray(p['box_lidar'], dtype=np.float64)[None], calib)[0]
        anno['location'][i] = cam[0:3]
        anno['dimensions'][i] = [cam[3], cam[4], cam[5]]  # KITTI annos: l, h, w
        anno['rotation_y'][i] = cam[6]
        anno['alpha'][i] = alpha_from_ry(np.array([cam[6]]), cam[0:1], cam[2:3])[0]
        anno['score'][i] = float(p['score'])
    return anno


def write_label_files(out_dir: str, frames: Iterable[str], labels_by_frame: Dict[str, list],
                      preds_by_frame: Dict[str, Dict[int, dict]], calib_fn) -> int:
    """Write <out_dir>/<id>.txt for every frame (empty files for frames without objects).
    Returns the number of lines written. calib_fn(frame_id) -> Calibration."""
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for fid in frames:
        labels = labels_by_frame.get(fid, [])
        preds = preds_by_frame.get(fid, {})
        lines = []
        calib = calib_fn(fid) if any(lab.obj_index in preds for lab in labels) else None
        for lab in labels:
            p = preds.get(lab.obj_index)
            cam = None if p is None else boxes3d_lidar_to_kitti_camera(
                np.asarray(p['box_lidar'], dtype=np.float64)[None], calib)[0]
            lines.append(label_line(lab.cls, lab.box2d, lab.truncation, lab.occlusion, cam,
                                    0.0 if p is None else float(p['score'])))
        _atomic_write(os.path.join(out_dir, f'{fid}.txt'), '\n'.join(lines) + ('\n' if lines else ''))
        total += len(lines)
    return total


def has_3d_ground_truth(label_dir: str, frame_ids: Sequence[str]) -> bool:
    """True when some label file of the frames carries real 3D fields (not KITTI's unknowns)."""
    for fid in frame_ids:
        path = os.path.join(label_dir, f'{fid}.txt')
        if not os.path.isfile(path):
            continue
        for line in open(path):
            t = line.split()
            if len(t) >= 15 and t[0] != 'DontCare':
                try:
                    if float(t[13]) > -999 and float(t[8]) > 0:
                        return True
                except ValueError:
                    continue
    return False


def evaluate_pseudo_labels(label_dir: str, frame_ids: Sequence[str], dt_annos: List[dict],
                           class_names: Sequence[str]) -> Optional[dict]:
    """KITTI AP (R40, 3D and BEV at the class's strict and loose overlaps) and per-object
    quality of the pseudo-labels against the label files' 3D ground truth, or None when the
    files carry none. Returns {'table': str, 'ap': {...}, 'quality': {...}}."""
    from ..evaluation.kitti import do_eval, get_label_annos
    from ..evaluation.kitti.eval import MIN_OVERLAPS, class_indices
    from ..evaluation.pseudo_label_quality import format_quality_table, pseudo_label_quality
    if not has_3d_ground_truth(label_dir, frame_ids):
        return None
    gt = get_label_annos(label_dir, list(frame_ids))
    classes = [c for c in class_names if c in ('Car', 'Pedestrian', 'Cyclist', 'Van', 'Person_sitting', 'Truck')]
    dts = [{k: v for k, v in a.items() if k != 'obj_index'} for a in dt_annos]
    ci = class_indices(classes)
    mo = MIN_OVERLAPS[:, :, ci]
    res = do_eval(gt, dts, ci, mo)
    bev40, d3_40 = res[5], res[6]
    ap, rows = {}, [f"{'class':<12}{'AP3D@strict':>12}{'AP3D@loose':>12}{'BEV@strict':>12}{'BEV@loose':>12}  (R40 moderate)"]
    for j, cls in enumerate(classes):
        strict, loose = float(mo[0, 2, j]), float(mo[1, 2, j])
        vals = [float(d3_40[j, 1, 0]), float(d3_40[j, 1, 1]), float(bev40[j, 1, 0]), float(bev40[j, 1, 1])]
        ap[cls] = {f'3d_R40_moderate@{strict}': vals[0], f'3d_R40_moderate@{loose}': vals[1],
                   f'bev_R40_moderate@{strict}': vals[2], f'bev_R40_moderate@{loose}': vals[3]}
        rows.append(f'{cls:<12}' + ''.join(f'{v:>12.2f}' for v in vals))
    quality = pseudo_label_quality(gt, dts, classes)
    table = '\n'.join(rows) + '\n' + format_quality_table(quality)
    summary = {c: {k: v for k, v in s.items() if k != 'per_object'} for c, s in quality.items()}
    return {'table': table, 'ap': ap, 'quality': summary, 'quality_full': quality, 'gt_annos': gt}
