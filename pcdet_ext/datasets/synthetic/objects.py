"""Car / Pedestrian / Cyclist: KITTI-like sizes, counts, distances, headings and crowding,
and the solid parts (a few boxes per object) the LiDAR sees.

Placement works in road coordinates (s along the road, d to its left) through a layout
object from scene.py (`to_world`, `heading`, `half_width`, `lane_centres`, `sidewalk_width`,
`parking_width`); traffic keeps to the right, so lanes with d < 0 run along the road heading.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np

from pcdet_ext.geometry import boxes_bev_corners, limit_period

CLASS_NAMES = ('Car', 'Pedestrian', 'Cyclist')

# (mean, std) of length, width, height in metres, as in KITTI's training labels.
SIZE_STATS: Dict[str, Tuple[Tuple[float, float], ...]] = {
    'Car': ((3.9, 0.4), (1.6, 0.1), (1.5, 0.15)),
    'Pedestrian': ((0.8, 0.2), (0.6, 0.1), (1.75, 0.1)),
    'Cyclist': ((1.75, 0.3), (0.6, 0.1), (1.74, 0.1)),
}
# Free space kept around each class when placing (BEV, metres): cars need door room.
_MARGIN = {'Car': 0.3, 'Pedestrian': 0.1, 'Cyclist': 0.2}
# The ego car, a no-go zone around the sensor (x forward, y left).
EGO_BOX = np.array([0.0, 0.0, -0.9, 5.0, 2.4, 1.6, 0.0])


def sample_size(rng: np.random.Generator, cls: str) -> np.ndarray:
    """(l, w, h) drawn from a normal clipped to +-2.5 std (no absurd objects)."""
    stats = SIZE_STATS[cls]
    z = np.clip(rng.normal(size=3), -2.5, 2.5)
    return np.array([m + s * zi for (m, s), zi in zip(stats, z)])


def sample_counts(rng: np.random.Generator) -> Dict[str, int]:
    """Objects per frame: cars 2-15, pedestrians 0-6, cyclists 0-2 (KITTI-like, a bit denser)."""
    return {'Car': int(rng.integers(2, 16)),
            'Pedestrian': int(rng.choice(7, p=[0.35, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05])),
            'Cyclist': int(rng.choice(3, p=[0.5, 0.35, 0.15]))}


def sample_distance(rng: np.random.Generator, far: float = 70.0, ahead_prob: float = 0.85) -> float:
    """Position along the road: mostly 4 m to `far` ahead (peaked near a third of the way),
    sometimes behind. People are drawn nearer (far=50), as in KITTI."""
    if rng.random() < ahead_prob:
        return 4.0 + (far - 4.0) * rng.beta(1.3, 2.2)
    return rng.uniform(-40.0, 3.0)


# ------------------------------------------------------------------ BEV collision test
def _bev_overlap(cand: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Separating-axis test: cand (4, 2) corners vs others (M, 4, 2) -> (M,) overlap flags."""
    if len(others) == 0:
        return np.zeros(0, dtype=bool)
    quads = [np.broadcast_to(cand, others.shape), others]
    sep = np.zeros(len(others), dtype=bool)
    for q in quads:
        for e in (0, 1):  # two edge directions per rectangle
            edge = q[:, e + 1] - q[:, e]
            axis = np.stack([-edge[:, 1], edge[:, 0]], -1)  # (M, 2)
            pa = np.einsum('mkc,mc->mk', np.broadcast_to(cand, others.shape), axis)
            pb = np.einsum('mkc,mc->mk', others, axis)
            sep |= (pa.max(1) < pb.min(1)) | (pb.max(1) < pa.min(1))
    return ~sep


def _grown_corners(box: np.ndarray, margin: float) -> np.ndarray:
    b = box[None, :7].copy()
    b[:, 3:5] += 2 * margin
    return np.asarray(boxes_bev_corners(b))[0]


class _Placer:
    """Accepts boxes that keep their class margin from every box accepted before."""

    def __init__(self):
        self.corners: List[np.ndarray] = [_grown_corners(EGO_BOX, 0.0)]
        self.boxes: List[np.ndarray] = []
        self.names: List[str] = []

    def try_add(self, box: np.ndarray, cls: str) -> bool:
        grown = _grown_corners(box, _MARGIN[cls])
        if _bev_overlap(grown, np.stack(self.corners)).any():
            return False
        self.corners.append(grown)
        self.boxes.append(box)
        self.names.append(cls)
        return True


def _make_box(layout, ground_z: Callable, s: float, d: float, size: np.ndarray, heading: float):
    x, y = layout.to_world(s, d)
    z = ground_z(x, y) + size[2] / 2
    return np.array([x, y, z, size[0], size[1], size[2], limit_period(heading)])


def place_objects(rng: np.random.Generator, layout, ground_z: Callable,
                  counts: Dict[str, int] = None, max_tries: int = 25) -> Tuple[np.ndarray, List[str]]:
    """Place Car / Pedestrian / Cyclist boxes (LiDAR frame) without BEV overlaps.

    Cars: parked rows along the kerbs (tight gaps: crowding), traffic in the lanes heading
    along or against the road, a few at odd angles. Pedestrians: small groups on the
    sidewalks, some crossing. Cyclists: at the lane edge or on the sidewalk.
    Returns (N, 7) boxes and N class names; objects that find no free spot are dropped.
    """
    counts = sample_counts(rng) if counts is None else counts
    placer = _Placer()
    phi = layout.heading
    row_cursor = {-1: None, 1: None}  # the end of the current parked row per kerb

    for _ in range(counts.get('Car', 0)):
        size = sample_size(rng, 'Car')
        mode = rng.choice(3, p=[0.5, 0.42, 0.08])  # parked, driving, odd angle
        for _ in range(max_tries):
            if mode == 0:
                side = -1 if rng.random() < 0.5 else 1
                cursor = row_cursor[side]
                if cursor is None or rng.random() < 0.25:
                    s = sample_distance(rng)
                else:  # next car in the row: bumper to bumper with a short gap
                    s = cursor + rng.uniform(0.5, 2.0) + size[0] / 2
                d = side * (layout.half_width - size[1] / 2 - rng.uniform(0.15, 0.4))
                heading = phi + (0 if (side < 0) == (rng.random() < 0.85) else np.pi)
                heading += rng.normal(0, 0.03)
            elif mode == 1:
                lane_d, lane_dir = layout.lane_centres[rng.integers(len(layout.lane_centres))]
                s = sample_distance(rng)
                d = lane_d + rng.normal(0, 0.2)
                heading = phi + (0 if lane_dir > 0 else np.pi) + rng.normal(0, 0.03)
            else:
                s = sample_distance(rng)
                d = rng.uniform(-layout.half_width + 1.2, layout.half_width - 1.2)
                heading = rng.uniform(-np.pi, np.pi)
            box = _make_box(layout, ground_z, s, d, size, heading)
            if placer.try_add(box, 'Car'):
                if mode == 0:
                    row_cursor[side] = s + size[0] / 2
                break

    left = counts.get('Pedestrian', 0)
    while left > 0:
        group = min(left, int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])))
        left -= group
        s0 = sample_distance(rng, far=50.0)
        if rng.random() < 0.85:
            side = -1 if rng.random() < 0.5 else 1
            d0 = side * (layout.half_width + rng.uniform(0.5, max(0.6, layout.sidewalk_width - 0.5)))
        else:  # crossing the road
            d0 = rng.uniform(-layout.half_width, layout.half_width)
        for _ in range(group):
            size = sample_size(rng, 'Pedestrian')
            for _ in range(max_tries):
                s, d = s0 + rng.normal(0, 0.8), d0 + rng.normal(0, 0.5)
                box = _make_box(layout, ground_z, s, d, size, rng.uniform(-np.pi, np.pi))
                if placer.try_add(box, 'Pedestrian'):
                    break

    for _ in range(counts.get('Cyclist', 0)):
        size = sample_size(rng, 'Cyclist')
        for _ in range(max_tries):
            side = -1 if rng.random() < 0.6 else 1
            s = sample_distance(rng, far=50.0)
            if rng.random() < 0.7:  # riding at the lane edge, with the traffic
                d = side * (layout.half_width - layout.parking_width - rng.uniform(0.3, 1.0))
                heading = phi + (0 if side < 0 else np.pi) + rng.normal(0, 0.08)
            else:  # on the sidewalk, either way
                d = side * (layout.half_width + rng.uniform(0.5, max(0.6, layout.sidewalk_width - 0.5)))
                heading = phi + (0 if rng.random() < 0.5 else np.pi) + rng.normal(0, 0.15)
            box = _make_box(layout, ground_z, s, d, size, heading)
            if placer.try_add(box, 'Cyclist'):
                break

    boxes = np.stack(placer.boxes) if placer.boxes else np.zeros((0, 7))
    return boxes, list(placer.names)


# ------------------------------------------------------------------ solid parts
def _parts_local(cls: str, l: float, w: float, h: float, rng: np.random.Generator) -> np.ndarray:
    """Parts as (u, v, z_bottom, z_top, length, width) in the object frame (u forward, z from
    the object's bottom). Together they touch every face of the (l, w, h) label box."""
    if cls == 'Car':
        fb = rng.uniform(0.5, 0.6)  # body (wheels included) up to the belt line
        lc, wc = rng.uniform(0.45, 0.6) * l, rng.uniform(0.82, 0.92) * w
        uc = -rng.uniform(0.0, 0.12) * l
        uc = max(uc, -(l - lc) / 2)
        return np.array([[0, 0, 0, fb * h, l, w], [uc, 0, fb * h, h, lc, wc]])
    if cls == 'Pedestrian':
        lt = 0.5 * l
        return np.array([[0, 0, 0, 0.48 * h, l, 0.6 * w],                 # legs, mid-stride
                         [0, 0, 0.48 * h, 0.86 * h, lt, w],                # torso and arms
                         [0, 0, 0.86 * h, h, min(0.25, 0.6 * lt), 0.35 * w]])  # head
    if cls == 'Cyclist':
        lr = 0.45 * l
        return np.array([[0, 0, 0, 0.55 * h, l, max(0.12, 0.25 * w)],     # bicycle
                         [-0.1 * l, 0, 0.45 * h, h, lr, w]])                # rider
    raise ValueError(f'object_parts: unknown class {cls!r}; expected one of {CLASS_NAMES}')


# Label boxes enclose the solid parts with this much room on the sides and top (metres),
# 3 sigma of the range noise: like KITTI's annotations, a box holds its object's points.
LABEL_MARGIN = 0.06


def object_parts(box: np.ndarray, cls: str, rng: np.random.Generator) -> np.ndarray:
    """Solid parts of one object as (P, 7) LiDAR boxes, inside the label box `box` with
    LABEL_MARGIN to spare on the sides and top (the bottom rests on the ground)."""
    x, y, z, l, w, h, yaw = box[:7]
    m = LABEL_MARGIN
    loc = _parts_local(cls, l - 2 * m, w - 2 * m, h - m, rng)
    c, s = np.cos(yaw), np.sin(yaw)
    zb = z - h / 2
    px = x + c * loc[:, 0] - s * loc[:, 1]
    py = y + s * loc[:, 0] + c * loc[:, 1]
    pz = zb + (loc[:, 2] + loc[:, 3]) / 2
    return np.stack([px, py, pz, loc[:, 4], loc[:, 5], loc[:, 3] - loc[:, 2],
                     np.full(len(loc), yaw)], axis=1)
