"""Proxy objects: synthetic 3D objects labelled by construction, injected into real frustums.

A proxy takes the frustum of a real weak label (2D box + class) and puts a synthetic object
where that 2D box says an object of the class would be, without any 3D ground truth:

- size: drawn from the class size prior (normal, clipped to +-2 std);
- heading: uniform rotation_y;
- depth: the one where the drawn height fills the 2D box, z = f_y * h / box height (jittered);
  the centre lies on the ray through the 2D box centre at that depth;
- points: the object (the synthetic generator's part model, or a plain box) is scanned by the
  synthetic LiDAR model (`datasets.synthetic.LidarModel`: beam pattern, range-dependent
  density and dropout, range noise), so only surfaces the sensor sees get points;
- occlusion both ways: real points inside the proxy or behind it (their ray enters the proxy
  first) are removed, and proxy points behind a real point on the same laser ray are dropped.

The proxy's 2D box is its projected 3D box, its frustum is cut from the edited scan by the
same FrustumExtractor as real objects, and its frustum-frame 3D target is exact.

Copy-paste mode (`paste_instance`): a pseudo-labelled real instance (its points inside its
pseudo box) is turned about the LiDAR z axis into another object's frustum, which keeps its
range, hence its point density and beam pattern, and is injected the same way.

Every draw is seeded by (SEED, frame id, object index, purpose), never by call order.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from ..geometry import (Calibration, boxes3d_kitti_camera_to_lidar, boxes3d_lidar_to_imageboxes,
                        rotate_points_along_z)
from .frustum import FrustumExtractor, FrustumSample
from .size_priors import SizePriors
from .weak_labels import ReadReport, WeakLabel

logger = logging.getLogger('pcdet_ext.alpi')

PROXY_SHAPES = ('parts', 'box')
# Proxy / pasted samples get object indices from here on, so they never collide with real ones.
PROXY_INDEX_BASE = 1_000_000
PASTE_INDEX_BASE = 2_000_000


@dataclass
class InjectedSample:
    """A frustum with an exact (proxy) or pseudo (pasted) 3D target."""
    sample: FrustumSample
    box_frustum: np.ndarray   # (7,) target in the sample's frustum frame
    box_lidar: np.ndarray     # (7,) the same box in the LiDAR frame
    kind: str                 # 'proxy' or 'paste'


def _rng(seed: int, frame_id: str, obj_index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(str(frame_id).encode()), int(obj_index), purpose])


# ----------------------------------------------------------------------------- occlusion

def ray_box_entry(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Distance from the sensor (LiDAR origin) at which the ray towards each point enters `box`
    (LiDAR box, 7 values); inf where the ray misses it."""
    from ..datasets.synthetic.lidar_model import LidarModel
    p = np.asarray(points, dtype=np.float64)[:, :3]
    r = np.linalg.norm(p, axis=1)
    d = p / np.maximum(r, 1e-9)[:, None]
    t, _ = LidarModel._hit_box(d, np.asarray(box, dtype=np.float64))
    return t


def occluded_by_box(points: np.ndarray, box: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Mask of points inside `box` (grown by margin) or hidden behind it from the sensor."""
    grown = np.asarray(box, dtype=np.float64).copy()
    grown[3:6] += 2 * margin
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    t = ray_box_entry(points, grown)
    r = np.linalg.norm(np.asarray(points, dtype=np.float64)[:, :3], axis=1)
    return np.isfinite(t) & (t < r)


def _ray_cells(points: np.ndarray, lidar) -> np.ndarray:
    """Laser-ray cell id (nearest beam, azimuth step) of each point."""
    p = np.asarray(points, dtype=np.float64)[:, :3]
    az = np.mod(np.arctan2(p[:, 1], p[:, 0]), 2 * np.pi)
    col = np.round(az / lidar.az_step).astype(np.int64) % lidar.num_azimuth
    elev = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    row = np.abs(elev[:, None] - lidar.elevations[None]).argmin(axis=1)
    return row * lidar.num_azimuth + col


def hidden_by_scene(obj_points: np.ndarray, scene_points: np.ndarray, lidar, tol: float = 0.1) -> np.ndarray:
    """Mask of object points behind a scene point on the same laser ray (the scene occludes)."""
    if len(obj_points) == 0 or len(scene_points) == 0:
        return np.zeros(len(obj_points), dtype=bool)
    obj_cells = _ray_cells(obj_points, lidar)
    # only scene points on the object's rays matter: restrict before the per-cell minimum
    scene_cells = _ray_cells(scene_points, lidar)
    sel = np.isin(scene_cells, obj_cells)
    if not sel.any():
        return np.zeros(len(obj_points), dtype=bool)
    cells, inv = np.unique(scene_cells[sel], return_inverse=True)
    nearest = np.full(len(cells), np.inf)
    np.minimum.at(nearest, inv, np.linalg.norm(scene_points[sel, :3], axis=1))
    pos = np.searchsorted(cells, obj_cells)
    pos = np.clip(pos, 0, len(cells) - 1)
    found = cells[pos] == obj_cells
    r = np.linalg.norm(obj_points[:, :3], axis=1)
    return found & (nearest[pos] < r - tol)


def sector_mask(points: np.ndarray, box: np.ndarray, pad: float = 0.1) -> np.ndarray:
    """Points whose azimuth from the sensor lies within box's angular extent (+ pad radians):
    the only ones an object there can hide or be hidden by, and (pad covering the camera /
    LiDAR offset) the only ones its frustum can hold. Keeps the per-proxy work small."""
    rho = float(np.hypot(box[0], box[1]))
    radius = 0.5 * float(np.hypot(box[3], box[4]))
    if rho <= radius + 1e-3:
        return np.ones(len(points), dtype=bool)
    half = np.arcsin(min(1.0, radius / rho)) + pad
    diff = np.arctan2(points[:, 1], points[:, 0]) - np.arctan2(box[1], box[0])
    diff = (diff + np.pi) % (2 * np.pi) - np.pi
    return np.abs(diff) <= half


def inject_object(scene_points: np.ndarray, box: np.ndarray, obj_points: np.ndarray, lidar,
                  margin: float = 0.05) -> np.ndarray:
    """The scan with an object added: scene points inside/behind it removed, object points
    hidden by what remains in front removed. Features beyond xyz are kept (object points must
    have the same number of columns)."""
    keep = ~occluded_by_box(scene_points, box, margin)
    scene = scene_points[keep]
    visible = ~hidden_by_scene(obj_points, scene, lidar)
    return np.concatenate([scene, obj_points[visible].astype(scene.dtype)], axis=0)


# ----------------------------------------------------------------------------- scanning

def scan_object(box: np.ndarray, cls: str, rng: np.random.Generator, lidar, shape: str = 'parts',
                num_features: int = 1) -> np.ndarray:
    """LiDAR returns of one object alone: (M, 3 + num_features) points (intensity first)."""
    from ..datasets.synthetic.lidar_model import Primitives
    from ..datasets.synthetic.objects import CLASS_NAMES as PART_CLASSES, object_parts
    box = np.asarray(box, dtype=np.float64)
    if shape == 'parts' and cls in PART_CLASSES:
        solids = object_parts(box, cls, rng)
    else:  # 'box', or a class the part model does not know: the label box itself
        solids = box[None]
    reflect = np.full(len(solids), float(rng.uniform(0.2, 0.7)))
    scan = lidar.cast(Primitives(boxes=solids, box_reflect=reflect, box_owner=np.zeros(len(solids), np.int64)),
                      rng, num_objects=1)
    pts = scan.points[scan.point_owner == 0]
    if num_features != 1:  # match the real scan's feature columns (pad with zeros / cut)
        feats = np.zeros((len(pts), num_features), dtype=np.float32)
        feats[:, :min(1, num_features)] = pts[:, 3:3 + min(1, num_features)]
        pts = np.concatenate([pts[:, :3], feats], axis=1)
    return pts


# ----------------------------------------------------------------------------- proxies

class ProxyGenerator:
    """Builds proxy samples in the frustums of real weak labels.

    Config keys (all optional): RATIO 30 (proxies per 100 real objects), SHAPE 'parts' | 'box',
    DEPTH_JITTER 0.1 (relative, uniform), SIZE_CLIP 2.0 (std), OCCLUSION_MARGIN 0.05 m,
    MIN_POINTS 5 (fewer proxy points: the draw is rejected), MAX_TRIES 3, COPY_PASTE_RATIO 0
    (pasted pseudo-labelled instances per 100 real objects, from step 1 on), SEED 0.
    """

    def __init__(self, cfg=None, priors: Optional[SizePriors] = None,
                 extractor: Optional[FrustumExtractor] = None, lidar=None):
        cfg = cfg if cfg is not None else {}
        get = cfg.get
        self.ratio = float(get('RATIO', 30.0))
        self.shape = str(get('SHAPE', 'parts'))
        self.depth_jitter = float(get('DEPTH_JITTER', 0.1))
        self.size_clip = float(get('SIZE_CLIP', 2.0))
        self.margin = float(get('OCCLUSION_MARGIN', 0.05))
        self.min_points = int(get('MIN_POINTS', 5))
        self.max_tries = int(get('MAX_TRIES', 3))
        self.copy_paste_ratio = float(get('COPY_PASTE_RATIO', 0.0))
        self.seed = int(get('SEED', 0))
        if self.shape not in PROXY_SHAPES:
            raise ValueError(f'PROXY.SHAPE must be one of {PROXY_SHAPES}, got {self.shape!r}')
        if self.ratio < 0 or self.copy_paste_ratio < 0:
            raise ValueError(f'PROXY.RATIO ({self.ratio}) and COPY_PASTE_RATIO ({self.copy_paste_ratio}) '
                             f'must be >= 0 (percent of the real objects)')
        if not 0 <= self.depth_jitter < 0.5:
            raise ValueError(f'PROXY.DEPTH_JITTER must be in [0, 0.5), got {self.depth_jitter}')
        self.priors = priors if priors is not None else SizePriors()
        self.extractor = extractor if extractor is not None else FrustumExtractor()
        if lidar is None:
            from ..datasets.synthetic.frame import default_lidar
            lidar = default_lidar()
        self.lidar = lidar

    # -- which real objects host a proxy
    def choose_hosts(self, labels: Sequence[WeakLabel], ratio: Optional[float] = None,
                     purpose: int = 0) -> List[int]:
        """Indices into labels (R% of them, at least one when R > 0 and labels exist), a
        deterministic function of SEED and the labels' identities."""
        ratio = self.ratio if ratio is None else ratio
        n = int(round(len(labels) * ratio / 100.0))
        if ratio > 0 and labels and n == 0:
            n = 1
        if n == 0:
            return []
        keys = np.array([zlib.crc32(f'{self.seed}/{purpose}/{lab.frame_id}/{lab.obj_index}'.encode())
                         for lab in labels], dtype=np.int64)
        order = np.argsort(keys, kind='stable')
        # more proxies than real objects: cycle through the hosts again
        return [int(order[i % len(order)]) for i in range(n)]

    # -- one proxy
    def place(self, label: WeakLabel, calib: Calibration, rng: np.random.Generator) -> np.ndarray:
        """A LiDAR box for a proxy of label.cls behind label.box2d (no 3D ground truth)."""
        prior = self.priors[label.cls]
        mean, std = np.array(prior.mean), np.array(prior.std)
        lwh = mean + std * np.clip(rng.standard_normal(3), -self.size_clip, self.size_clip)
        lwh = np.maximum(lwh, 0.1)
        fy = float(calib.P2[1, 1])
        depth = fy * lwh[2] / max(label.height, 1.0)
        depth *= 1.0 + rng.uniform(-self.depth_jitter, self.depth_jitter)
        u = 0.5 * (label.box2d[0] + label.box2d[2])
        v = 0.5 * (label.box2d[1] + label.box2d[3])
        centre = calib.img_to_rect(np.float64(u), np.float64(v), np.float64(depth)).reshape(3)
        ry = rng.uniform(-np.pi, np.pi)
        cam = np.array([[centre[0], centre[1] + lwh[2] / 2, centre[2], lwh[0], lwh[2], lwh[1], ry]])
        return boxes3d_kitti_camera_to_lidar(cam, calib)[0]

    def _sample_from(self, frame_id: str, index: int, cls: str, points: np.ndarray, box: np.ndarray,
                     calib: Calibration, image_shape, report: ReadReport, kind: str
                     ) -> Optional[InjectedSample]:
        box2d = boxes3d_lidar_to_imageboxes(box[None], calib, image_shape)[0]
        lab = WeakLabel(frame_id, index, cls, box2d, 0.0, 0, 1.0, f'{kind} {index}')
        sub = ReadReport()
        samples, _ = self.extractor.extract(points, calib, [lab], frame_id=frame_id,
                                            image_shape=image_shape, report=sub)
        if not samples:
            reason = next(iter(sub.skipped), 'empty_frustum')
            report.skip(f'{kind}_{reason}', f'frame {frame_id} {kind} {index}', reason, warn=False)
            return None
        s = samples[0]
        return InjectedSample(s, s.from_lidar_boxes(box[None])[0].astype(np.float32), box.astype(np.float32), kind)

    def make_proxy(self, frame_id: str, points: np.ndarray, calib: Calibration, host: WeakLabel,
                   proxy_index: int, image_shape=None, report: Optional[ReadReport] = None
                   ) -> Optional[InjectedSample]:
        """A proxy in host's frustum; None (counted in report) when no draw gives a usable one."""
        report = report if report is not None else ReadReport()
        if host.cls not in self.priors:
            report.skip('unknown_class', f'frame {frame_id} object {host.obj_index}',
                        f'no size prior for class {host.cls!r}; no proxy')
            return None
        nfeat = np.asarray(points).shape[1] - 3
        for attempt in range(self.max_tries):
            rng = _rng(self.seed, frame_id, proxy_index, 1000 + attempt)
            box = self.place(host, calib, rng)
            obj = scan_object(box, host.cls, rng, self.lidar, self.shape, num_features=nfeat)
            if len(obj) < self.min_points:
                continue
            pts = np.asarray(points)
            edited = inject_object(pts[sector_mask(pts, box)], box, obj, self.lidar, self.margin)
            out = self._sample_from(frame_id, PROXY_INDEX_BASE + proxy_index, host.cls, edited, box, calib,
                                    image_shape, report, 'proxy')
            if out is not None:
                report.kept += 1
                return out
            return None
        report.skip('proxy_too_few_points', f'frame {frame_id} proxy {proxy_index}',
                    f'fewer than {self.min_points} LiDAR returns in {self.max_tries} draws', warn=False)
        return None

    # -- copy-paste of pseudo-labelled instances
    def paste_instance(self, frame_id: str, points: np.ndarray, calib: Calibration, host: WeakLabel,
                       src_points: np.ndarray, src_box: np.ndarray, cls: str, paste_index: int,
                       image_shape=None, report: Optional[ReadReport] = None) -> Optional[InjectedSample]:
        """Paste an instance (its points and pseudo box, LiDAR frame of its own scan) into host's
        frustum: turned about the sensor's z axis to the host's azimuth, same range."""
        report = report if report is not None else ReadReport()
        u = 0.5 * (host.box2d[0] + host.box2d[2])
        v = 0.5 * (host.box2d[1] + host.box2d[3])
        ray = calib.rect_to_lidar(calib.img_to_rect(np.float64(u), np.float64(v), np.float64(10.0)).reshape(1, 3))[0]
        delta = float(np.arctan2(ray[1], ray[0]) - np.arctan2(src_box[1], src_box[0]))
        box = np.asarray(src_box, dtype=np.float64).copy()
        box[:2] = rotate_points_along_z(box[None, None, :3], np.array([delta]))[0, 0, :2]
        box[6] += delta
        obj = np.asarray(src_points, dtype=np.float32).copy()
        obj[:, :3] = rotate_points_along_z(obj[None, :, :3].astype(np.float64), np.array([delta]))[0]
        pts = np.asarray(points)
        edited = inject_object(pts[sector_mask(pts, box)], box, obj, self.lidar, self.margin)
        out = self._sample_from(frame_id, PASTE_INDEX_BASE + paste_index, cls, edited, box, calib,
                                image_shape, report, 'paste')
        if out is not None:
            report.kept += 1
        return out
