"""Scene layout: a straight street (gently sloped ground, lanes, kerbside parking, sidewalks),
building rows, poles, trees and bushes around it, and the objects from objects.py.

The sensor rides in a right-hand lane at the LiDAR origin, 1.73 m above the ground (KITTI's
mounting height).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from pcdet_ext.geometry import Calibration

from .labels import quantize_boxes
from .lidar_model import Primitives
from .objects import object_parts, place_objects

SENSOR_HEIGHT = 1.73
LANE_WIDTH = 3.3
PARKING_WIDTH = 2.3


@dataclass
class RoadLayout:
    """A straight road through the scene, in road coordinates (s along, d to the left)."""
    heading: float          # road direction in the LiDAR frame (yaw)
    offset: float           # d of the LiDAR origin (negative: the sensor drives on the right)
    lanes_per_side: int
    sidewalk_width: float
    parking_width: float = PARKING_WIDTH
    lane_centres: List[Tuple[float, int]] = field(default_factory=list)  # (d, +1 along / -1 against)

    @property
    def half_width(self) -> float:
        return self.parking_width + LANE_WIDTH * self.lanes_per_side

    def to_world(self, s, d):
        """Road (s, d) -> LiDAR (x, y); d is measured from the road centre line."""
        c, sn = np.cos(self.heading), np.sin(self.heading)
        dd = np.asarray(d) + self.offset
        return c * np.asarray(s) - sn * dd, sn * np.asarray(s) + c * dd


def sample_layout(rng: np.random.Generator) -> RoadLayout:
    lanes = int(rng.choice([1, 2], p=[0.6, 0.4]))
    ego_lane = int(rng.integers(lanes))
    centres = [(-(k + 0.5) * LANE_WIDTH, 1) for k in range(lanes)] + \
              [((k + 0.5) * LANE_WIDTH, -1) for k in range(lanes)]
    # The origin sits in one of the right-hand lanes; offset shifts the road so it does.
    offset = (ego_lane + 0.5) * LANE_WIDTH + rng.normal(0, 0.25)
    return RoadLayout(heading=float(np.clip(rng.normal(0, 0.05), -0.15, 0.15)), offset=offset,
                      lanes_per_side=lanes, sidewalk_width=float(rng.uniform(2.0, 4.5)),
                      lane_centres=centres)


@dataclass
class Ground:
    """The plane z = g0 + gx * x + gy * y (LiDAR frame)."""
    g0: float
    gx: float
    gy: float

    def z(self, x, y):
        return self.g0 + self.gx * np.asarray(x) + self.gy * np.asarray(y)

    def as_array(self) -> np.ndarray:
        return np.array([self.g0, self.gx, self.gy])


@dataclass
class SceneSample:
    layout: RoadLayout
    ground: Ground
    boxes_lidar: np.ndarray      # (N, 7) labelled-class objects, as a loader reads their labels
    boxes_camera: np.ndarray     # (N, 7) the same as label values (x, y, z, l, h, w, ry)
    names: List[str]
    parts: List[np.ndarray]      # per object, (P, 7) solid part boxes
    primitives: Primitives       # everything the LiDAR can hit


class _Clutter:
    """Accumulates static primitives; small ones keep clear of the objects."""

    def __init__(self, boxes_lidar: np.ndarray):
        self.obj_xy = boxes_lidar[:, :2] if len(boxes_lidar) else np.zeros((0, 2))
        self.obj_r = 0.5 * np.hypot(boxes_lidar[:, 3], boxes_lidar[:, 4]) if len(boxes_lidar) else np.zeros(0)
        self.boxes, self.box_refl = [], []
        self.cyls, self.cyl_refl = [], []
        self.spheres, self.sph_refl = [], []

    def clear_of_objects(self, x, y, r) -> bool:
        if len(self.obj_xy) == 0:
            return True
        dist = np.hypot(self.obj_xy[:, 0] - x, self.obj_xy[:, 1] - y)
        return bool((dist > self.obj_r + r + 0.3).all()) and np.hypot(x, y) > r + 3.0


def _add_buildings(rng, layout: RoadLayout, ground: Ground, clutter: _Clutter, side: int):
    """A row of blocks along one side of the street, with gaps (side streets, driveways)."""
    s = rng.uniform(-70, -40)
    front = layout.half_width + layout.sidewalk_width
    while s < 130:
        length = rng.uniform(8, 30)
        if rng.random() < 0.8:
            setback, depth, height = rng.uniform(0, 6), rng.uniform(8, 15), rng.uniform(4, 14)
            d = side * (front + setback + depth / 2)
            x, y = layout.to_world(s + length / 2, d)
            zb = ground.z(x, y) - 0.5
            clutter.boxes.append([x, y, zb + (height + 0.5) / 2, length, depth, height + 0.5, layout.heading])
            clutter.box_refl.append(rng.uniform(0.15, 0.6))
        s += length + (rng.uniform(2, 12) if rng.random() < 0.35 else rng.uniform(0, 1.0))


def _add_vegetation_and_poles(rng, layout: RoadLayout, ground: Ground, clutter: _Clutter, side: int,
                              has_buildings: bool):
    kerb = layout.half_width
    for _ in range(int(rng.integers(2, 9))):  # poles at the kerb: lamps, signs
        s, r = rng.uniform(-40, 90), rng.uniform(0.06, 0.15)
        x, y = layout.to_world(s, side * (kerb + rng.uniform(0.2, 0.5)))
        if clutter.clear_of_objects(x, y, r):
            zg = ground.z(x, y)
            clutter.cyls.append([x, y, zg - 0.2, zg + rng.uniform(3.0, 8.0), r])
            clutter.cyl_refl.append(rng.uniform(0.4, 0.8))
    for _ in range(int(rng.integers(0, 9))):  # street trees: trunk and a crown of blobs
        s = rng.uniform(-40, 100)
        x, y = layout.to_world(s, side * (kerb + rng.uniform(0.5, max(0.6, layout.sidewalk_width - 0.5))))
        crown = rng.uniform(1.0, 2.3)
        if not clutter.clear_of_objects(x, y, crown + 0.5):
            continue
        zg = ground.z(x, y)
        trunk_h = rng.uniform(2.0, 3.5)
        clutter.cyls.append([x, y, zg - 0.2, zg + trunk_h + 0.5 * crown, rng.uniform(0.12, 0.3)])
        clutter.cyl_refl.append(rng.uniform(0.2, 0.4))
        for _ in range(int(rng.integers(2, 5))):
            r = crown * rng.uniform(0.6, 1.0)
            clutter.spheres.append([x + rng.uniform(-0.6, 0.6) * crown, y + rng.uniform(-0.6, 0.6) * crown,
                                    zg + trunk_h + r * rng.uniform(0.6, 1.0), r])
            clutter.sph_refl.append(rng.uniform(0.1, 0.35))
    # bushes and hedges in front of the buildings (or filling open land)
    n_bush = int(rng.integers(0, 8 if has_buildings else 16))
    for _ in range(n_bush):
        r = rng.uniform(0.4, 1.3)
        d = side * (kerb + layout.sidewalk_width + rng.uniform(0.2, 1.5 if has_buildings else 15.0) + r)
        x, y = layout.to_world(rng.uniform(-40, 110), d)
        if clutter.clear_of_objects(x, y, r):
            clutter.spheres.append([x, y, ground.z(x, y) + 0.6 * r, r])
            clutter.sph_refl.append(rng.uniform(0.1, 0.35))


def build_scene(rng: np.random.Generator, calib: Calibration) -> SceneSample:
    """Draw one street scene: layout, sloped ground, objects at label precision, scenery."""
    layout = sample_layout(rng)
    slope = np.clip(rng.normal(0, 0.012, size=2), -0.03, 0.03)
    ground = Ground(-SENSOR_HEIGHT, float(slope[0]), float(slope[1]))
    boxes, names = place_objects(rng, layout, ground.z)
    boxes, boxes_cam = quantize_boxes(boxes, calib)
    parts = [object_parts(b, n, rng) for b, n in zip(boxes, names)]

    clutter = _Clutter(boxes)
    for side in (-1, 1):
        has_buildings = rng.random() < 0.8
        if has_buildings:
            _add_buildings(rng, layout, ground, clutter, side)
        _add_vegetation_and_poles(rng, layout, ground, clutter, side, has_buildings)

    part_boxes = np.concatenate(parts) if parts else np.zeros((0, 7))
    part_owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)]) if parts \
        else np.zeros(0, np.int64)
    # Object surfaces: cars painted 0.2-0.7 (some bright), people and bikes duller.
    obj_refl = np.array([rng.uniform(0.2, 0.7) if n == 'Car' else rng.uniform(0.15, 0.5) for n in names])
    static_boxes = np.asarray(clutter.boxes, dtype=np.float64).reshape(-1, 7)
    prims = Primitives(
        boxes=np.concatenate([part_boxes, static_boxes]),
        box_reflect=np.concatenate([obj_refl[part_owner] if len(part_owner) else np.zeros(0),
                                    np.asarray(clutter.box_refl)]),
        box_owner=np.concatenate([part_owner, np.full(len(static_boxes), -1)]).astype(np.int64),
        cylinders=np.asarray(clutter.cyls, dtype=np.float64).reshape(-1, 5),
        cyl_reflect=np.asarray(clutter.cyl_refl), cyl_owner=np.full(len(clutter.cyls), -1),
        spheres=np.asarray(clutter.spheres, dtype=np.float64).reshape(-1, 4),
        sphere_reflect=np.asarray(clutter.sph_refl), sphere_owner=np.full(len(clutter.spheres), -1),
        ground=ground.as_array(), ground_reflect=float(rng.uniform(0.3, 0.5)))
    return SceneSample(layout=layout, ground=ground, boxes_lidar=boxes, boxes_camera=boxes_cam,
                       names=names, parts=parts,
                       primitives=prims)
