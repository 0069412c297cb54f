"""Weak labels: class + 2D box (+ truncation, occlusion, score) and nothing else.

Integrity rule (DESIGN.md section 3): ALPI never reads 3D ground truth. The KITTI label reader
therefore splits each line and touches only columns 0-7 (type, truncated, occluded, alpha,
bbox) and, for 2D-detector outputs in KITTI format, the score in column 15. Columns 8-14
(dimensions, location, rotation_y) are never converted, so files whose 3D fields are KITTI's
unknown values (-1 -1 -1 -1000 -1000 -1000 -10), random numbers or junk give identical records.
alpha (column 3) is an observation angle derived from the 3D box, so it is not read either.

Bad lines are skipped and counted; each one logs a warning naming file:line and the reason.
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .size_priors import SizePriors

logger = logging.getLogger('pcdet_ext.alpi')

# Every class KITTI label files may contain. Known but unselected classes (Van, DontCare...)
# are skipped quietly; anything else is an unknown class and gets a warning.
KITTI_CLASSES = ('Car', 'Van', 'Truck', 'Pedestrian', 'Person_sitting', 'Cyclist', 'Tram', 'Misc',
                 'DontCare')

ImageShape = Tuple[int, int]  # (H, W)


@dataclass
class WeakLabel:
    frame_id: str
    obj_index: int        # position of the object's line in its file / frame (0-based, stable)
    cls: str
    box2d: np.ndarray     # (4,) float64 x1, y1, x2, y2 in image_2 pixels (clipped to the image)
    truncation: float     # -1 when unknown (detections)
    occlusion: int        # -1 when unknown (detections)
    score: float = 1.0    # 1.0 for human labels
    source: str = ''      # 'file:line', for messages

    @property
    def width(self) -> float:
        return float(self.box2d[2] - self.box2d[0])

    @property
    def height(self) -> float:
        return float(self.box2d[3] - self.box2d[1])


@dataclass
class ReadReport:
    """What a reader kept and skipped: counts per reason plus the warning messages."""
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    messages: List[str] = field(default_factory=list)

    def skip(self, reason: str, where: str, detail: str, warn: bool = True) -> None:
        self.skipped[reason] += 1
        if warn:
            msg = f'{where}: {detail}; object skipped ({reason})'
            self.messages.append(msg)
            logger.warning(msg)

    def merge(self, other: 'ReadReport') -> 'ReadReport':
        self.kept += other.kept
        self.skipped.update(other.skipped)
        self.messages.extend(other.messages)
        return self

    def summary(self) -> str:
        parts = ', '.join(f'{k} {v}' for k, v in sorted(self.skipped.items()))
        return f'kept {self.kept}, skipped {sum(self.skipped.values())}' + (f' ({parts})' if parts else '')


def read_image_shape(image_path: str) -> ImageShape:
    """(H, W) of an image from its header only (PIL opens lazily)."""
    from PIL import Image
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f'{image_path}: image not found (needed for the image size)')
    with Image.open(image_path) as im:
        w, h = im.size
    return int(h), int(w)


def normalize_frame_id(frame_id: str) -> str:
    """KITTI ids are 6-digit strings; '7' in a detections file means '000007'."""
    frame_id = frame_id.strip()
    return frame_id.zfill(6) if frame_id.isdigit() and len(frame_id) < 6 else frame_id


class _LabelPolicy:
    """Shared per-object checks of both readers: class filter, box sanity, image bounds."""

    def __init__(self, class_names: Optional[Sequence[str]], priors: Optional[SizePriors],
                 min_score: float, min_box_size: float):
        self.priors = priors if priors is not None else SizePriors()
        self.class_names = list(class_names) if class_names is not None else self.priors.names()
        self.min_score = float(min_score)
        self.min_box_size = float(min_box_size)

    def check(self, cls: str, box: np.ndarray, score: float, image_shape: Optional[ImageShape],
              where: str, report: ReadReport) -> Optional[np.ndarray]:
        """The clipped box, or None after recording why the object is skipped."""
        if cls not in self.class_names:
            if cls in KITTI_CLASSES:
                report.skip('other_class', where, f'class {cls!r} not selected', warn=False)
            else:
                report.skip('unknown_class', where, f'unknown class {cls!r} (not a KITTI class and '
                            f'not in CLASS_NAMES {self.class_names})')
            return None
        if cls not in self.priors:
            report.skip('unknown_class', where, f'class {cls!r} has no size prior (add it under '
                        f'SIZE_PRIORS)')
            return None
        if not np.all(np.isfinite(box)) or not math.isfinite(score):
            report.skip('malformed', where, 'NaN or inf in box or score')
            return None
        if score < self.min_score:
            report.skip('low_score', where, f'score {score:g} < {self.min_score:g}', warn=False)
            return None
        x1, y1, x2, y2 = box
        if x2 - x1 < self.min_box_size or y2 - y1 < self.min_box_size:
            report.skip('degenerate_box', where, f'degenerate 2D box {box.tolist()} '
                        f'(needs x2 - x1 and y2 - y1 >= {self.min_box_size:g} px)')
            return None
        if image_shape is not None:
            h, w = image_shape
            if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
                report.skip('outside_image', where, f'2D box {box.tolist()} lies outside the '
                            f'{w}x{h} image')
                return None
            box = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, w - 1.0), min(y2, h - 1.0)])
            if box[2] - box[0] < self.min_box_size or box[3] - box[1] < self.min_box_size:
                report.skip('degenerate_box', where, f'2D box {box.tolist()} degenerate after '
                            f'clipping to the {w}x{h} image')
                return None
        elif x2 <= 0 or y2 <= 0:
            report.skip('outside_image', where, f'2D box {box.tolist()} lies outside the image')
            return None
        return box


def _floats(tokens: Sequence[str]) -> Optional[List[float]]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def read_kitti_weak_labels(path: str, frame_id: Optional[str] = None,
                           class_names: Optional[Sequence[str]] = None,
                           priors: Optional[SizePriors] = None,
                           image_shape: Optional[ImageShape] = None, min_score: float = 0.0,
                           min_box_size: float = 1.0, require_score: bool = False,
                           report: Optional[ReadReport] = None) -> Tuple[List[WeakLabel], ReadReport]:
    """Weak labels of one KITTI label_2 file (human labels or KITTI-format detections).

    A line with 16+ columns carries a score in column 15; human files have 15 and score 1.0
    (require_score=True makes a missing score a malformed line). class_names defaults to the
    classes with a size prior. image_shape (H, W) enables the outside-image check and clipping.
    """
    report = report if report is not None else ReadReport()
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: label file not found')
    frame_id = frame_id if frame_id is not None else os.path.splitext(os.path.basename(path))[0]
    policy = _LabelPolicy(class_names, priors, min_score, min_box_size)
    out: List[WeakLabel] = []
    with open(path, 'r') as f:
        lines = f.read().splitlines()
    obj_index = -1
    for lineno, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        obj_index += 1
        where = f'{path}:{lineno}'
        if len(tokens) < 8:
            report.skip('malformed', where, f'{len(tokens)} columns, a KITTI label line needs at '
                        f'least 8 (type truncated occluded alpha x1 y1 x2 y2)')
            continue
        cls = tokens[0]
        nums = _floats([tokens[1], tokens[2]] + tokens[4:8])  # column 3 (alpha) is 3D-derived
        if nums is None:
            report.skip('malformed', where, f'non-numeric truncation/occlusion/bbox in {line[:80]!r}')
            continue
        trunc, occ = nums[0], nums[1]
        if not math.isfinite(trunc) or not math.isfinite(occ) or occ != int(occ):
            report.skip('malformed', where, f'truncation must be a number and occlusion an integer, '
                        f'got {tokens[1]!r} {tokens[2]!r}')
            continue
        if len(tokens) >= 16:
            score_val = _floats([tokens[15]])
            if score_val is None:
                report.skip('malformed', where, f'non-numeric score {tokens[15]!r} in column 15')
                continue
            score = score_val[0]
        elif require_score:
            report.skip('malformed', where, f'{len(tokens)} columns; a detection line needs a score '
                        f'in column 15')
            continue
        else:
            score = 1.0
        box = policy.check(cls, np.array(nums[2:6], dtype=np.float64), score, image_shape, where, report)
        if box is None:
            continue
        out.append(WeakLabel(frame_id, obj_index, cls, box, float(trunc), int(occ), float(score), where))
        report.kept += 1
    return out, report


def read_detections_file(path: str, class_names: Optional[Sequence[str]] = None,
                         priors: Optional[SizePriors] = None,
                         image_shapes: Union[None, Dict[str, ImageShape], 'callable'] = None,
                         min_score: float = 0.0, min_box_size: float = 1.0,
                         report: Optional[ReadReport] = None
                         ) -> Tuple[Dict[str, List[WeakLabel]], ReadReport]:
    """A 2D detector's output: lines `frame_id class x1 y1 x2 y2 score` ('#' comments allowed).

    Returns {frame_id: [WeakLabel]} (digit-only ids zero-padded to 6). image_shapes maps a
    frame id to (H, W) (a dict or a callable) for the outside-image check and clipping.
    """
    report = report if report is not None else ReadReport()
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: detections file not found')
    policy = _LabelPolicy(class_names, priors, min_score, min_box_size)
    out: Dict[str, List[WeakLabel]] = {}
    per_frame: Counter = Counter()
    shape_cache: Dict[str, Optional[ImageShape]] = {}
    with open(path, 'r') as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        tokens = line.split('#', 1)[0].split()
        if not tokens:
            continue
        where = f'{path}:{lineno}'
        if len(tokens) != 7:
            report.skip('malformed', where, f'{len(tokens)} columns, expected 7 '
                        f'(frame_id class x1 y1 x2 y2 score)')
            continue
        frame_id = normalize_frame_id(tokens[0])
        obj_index = per_frame[frame_id]
        per_frame[frame_id] += 1
        nums = _floats(tokens[2:7])
        if nums is None:
            report.skip('malformed', where, f'non-numeric box or score in {line[:80]!r}')
            continue
        if frame_id not in shape_cache:
            if image_shapes is None:
                shape_cache[frame_id] = None
            elif callable(image_shapes):
                shape_cache[frame_id] = image_shapes(frame_id)
            else:
                shape_cache[frame_id] = image_shapes.get(frame_id)
        box = policy.check(tokens[1], np.array(nums[0:4], dtype=np.float64), nums[4],
                           shape_cache[frame_id], where, report)
        if box is None:
            continue
        out.setdefault(frame_id, []).append(
            WeakLabel(frame_id, obj_index, tokens[1], box, -1.0, -1, float(nums[4]), where))
        report.kept += 1
    return out, report


def read_weak_label_dir(label_dir: str, frame_ids: Iterable[str], image_dir: Optional[str] = None,
                        **kwargs) -> Tuple[Dict[str, List[WeakLabel]], ReadReport]:
    """read_kitti_weak_labels over `<label_dir>/<id>.txt`; image sizes from `<image_dir>/<id>.png`."""
    report = ReadReport()
    out: Dict[str, List[WeakLabel]] = {}
    for fid in frame_ids:
        shape = read_image_shape(os.path.join(image_dir, f'{fid}.png')) if image_dir else None
        out[fid], _ = read_kitti_weak_labels(os.path.join(label_dir, f'{fid}.txt'), frame_id=fid,
                                             image_shape=shape, report=report, **kwargs)
    return out, report
