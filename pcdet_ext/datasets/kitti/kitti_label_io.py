"""KITTI label_2 files: parsing into annotation arrays, writing them back, difficulty levels.

A label line: type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score].
Annotation dicts keep OpenPCDet's info layout: dimensions are (l, h, w) camera-frame sizes,
location the bottom centre in the rectified camera frame.
"""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from ..data_io import DataFileError, atomic_write_text

KITTI_CLASSES = ('Car', 'Van', 'Truck', 'Pedestrian', 'Person_sitting', 'Cyclist', 'Tram',
                 'Misc', 'DontCare')
ANNO_KEYS = ('name', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions', 'location',
             'rotation_y', 'score', 'difficulty')


class KittiLabelError(DataFileError):
    """A label_2 file has a malformed line."""


def difficulty_level(bbox: np.ndarray, truncated: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """KITTI difficulty per object: 0 easy, 1 moderate, 2 hard, -1 none (by 2D height,
    truncation and occlusion, the official thresholds)."""
    height = bbox[:, 3] - bbox[:, 1] + 1
    level = np.full(len(bbox), -1, dtype=np.int32)
    hard = (height >= 25) & (truncated <= 0.5) & (occluded <= 2)
    moderate = (height >= 25) & (truncated <= 0.3) & (occluded <= 1)
    easy = (height >= 40) & (truncated <= 0.15) & (occluded <= 0)
    level[hard] = 2
    level[moderate] = 1
    level[easy] = 0
    return level


def empty_annos() -> Dict[str, np.ndarray]:
    return {'name': np.zeros(0, dtype='<U16'), 'truncated': np.zeros(0), 'occluded': np.zeros(0),
            'alpha': np.zeros(0), 'bbox': np.zeros((0, 4)), 'dimensions': np.zeros((0, 3)),
            'location': np.zeros((0, 3)), 'rotation_y': np.zeros(0), 'score': np.zeros(0),
            'difficulty': np.zeros(0, dtype=np.int32)}


def parse_label_lines(lines: List[str], source: str = '<lines>') -> Dict[str, np.ndarray]:
    """Parse label_2 lines into annotation arrays. DontCare objects are moved to the end
    (OpenPCDet's `index` and gt_boxes_lidar rely on that order)."""
    rows = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise KittiLabelError(f'{source}:{lineno}: expected 15 or 16 fields '
                                  f'(type, truncated, occluded, alpha, bbox x4, h w l, x y z, '
                                  f'rotation_y[, score]), got {len(fields)}: {line.strip()[:80]!r}')
        try:
            vals = [float(v) for v in fields[1:]]
        except ValueError:
            raise KittiLabelError(f'{source}:{lineno}: non-numeric field in {line.strip()[:80]!r}') \
                from None
        if not np.all(np.isfinite(vals)):
            raise KittiLabelError(f'{source}:{lineno}: NaN or inf in {line.strip()[:80]!r}')
        rows.append((fields[0], vals))
    rows.sort(key=lambda r: r[0] == 'DontCare')  # stable: DontCare last
    annos = empty_annos()
    if not rows:
        return annos
    v = np.array([r[1] + ([-1.0] if len(r[1]) == 14 else []) for r in rows], dtype=np.float64)
    annos['name'] = np.array([r[0] for r in rows])
    annos['truncated'] = v[:, 0]
    annos['occluded'] = v[:, 1]
    annos['alpha'] = v[:, 2]
    annos['bbox'] = v[:, 3:7]
    annos['dimensions'] = v[:, [9, 7, 8]]  # file h w l -> (l, h, w)
    annos['location'] = v[:, 10:13]
    annos['rotation_y'] = v[:, 13]
    annos['score'] = v[:, 14]
    annos['difficulty'] = difficulty_level(annos['bbox'], annos['truncated'], annos['occluded'])
    return annos


def read_label_file(path) -> Dict[str, np.ndarray]:
    path = str(path)
    if not os.path.isfile(path):
        raise KittiLabelError(f'{path}: label file not found')
    with open(path) as f:
        return parse_label_lines(f.read().splitlines(), source=path)


def format_label_lines(annos: Dict[str, np.ndarray], with_score: bool = True) -> List[str]:
    """Annotation arrays -> label_2 lines (dimensions written back in the file's h w l order)."""
    lines = []
    n = len(annos['name'])
    trunc = annos.get('truncated', np.zeros(n))
    occ = annos.get('occluded', np.zeros(n))
    for i in range(n):
        l, h, w = annos['dimensions'][i]
        x1, y1, x2, y2 = annos['bbox'][i]
        x, y, z = annos['location'][i]
        line = (f"{annos['name'][i]} {float(trunc[i]):.2f} {int(occ[i])} {annos['alpha'][i]:.4f} "
                f"{x1:.4f} {y1:.4f} {x2:.4f} {y2:.4f} {h:.4f} {w:.4f} {l:.4f} "
                f"{x:.4f} {y:.4f} {z:.4f} {annos['rotation_y'][i]:.4f}")
        if with_score and 'score' in annos:
            line += f" {annos['score'][i]:.4f}"
        lines.append(line)
    return lines


def write_label_file(annos: Dict[str, np.ndarray], path, with_score: bool = True) -> None:
    lines = format_label_lines(annos, with_score=with_score)
    atomic_write_text('\n'.join(lines) + ('\n' if lines else ''), path)
