"""Frustums: the LiDAR points behind each 2D box, in a frame whose +z axis is the box's centre ray.

Frustum frame. The ray through the 2D box centre leaves the camera's optical centre
o = Calibration.img_to_rect(u, v, 0) along d = img_to_rect(u, v, 1) - o (rectified camera
frame). A point p maps to the frustum frame as

    p_f = Rx(pitch) @ Ry(yaw).T @ (p - o),   yaw = atan2(d_x, d_z),  pitch = atan2(d_y, |d_xz|)

with Ry the KITTI rotation about camera y (Ry(a) @ [1, 0, 0] = [cos a, 0, -sin a]) and Rx the
rotation about x that lifts the ray onto +z. Every point of the centre ray then has x = y = 0,
and slices along z are slices along the ray (ALIGN_PITCH=False gives F-PointNet's yaw-only
frame, where only x = 0 holds).

Boxes in the frustum frame are (x, y, z, l, w, h, heading): geometric centre in the frustum
frame, KITTI sizes, heading = rotation_y - yaw (close to KITTI's observation angle alpha,
which is what the points show). Boxes stay upright in the camera frame, so mapping back is
rigid: centre_rect = R.T @ c + o, rotation_y = heading + yaw. LiDAR and image conversions then
go through pcdet_ext.geometry.

Resampling: the first `num_real_points` rows of `points` are distinct real points; when a
frustum has fewer real points than NUM_POINTS the rest repeat randomly chosen real points.
Every random draw is seeded by (SEED, frame id, object index, epoch), not by call order, so a
frustum is the same whichever process or order builds it.
"""
from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..geometry import (Calibration, boxes3d_kitti_camera_to_lidar, boxes3d_kitti_camera_to_lidar_torch,
                        boxes3d_lidar_to_kitti_camera, limit_period)
from .weak_labels import ReadReport, WeakLabel

logger = logging.getLogger('pcdet_ext.alpi')


# ----------------------------------------------------------------------------- frustum frame

def frustum_frame(box2d, calib: Calibration, align_pitch: bool = True):
    """(R (3, 3), origin (3,), yaw, pitch) of the frustum through box2d (x1, y1, x2, y2)."""
    u = 0.5 * (box2d[0] + box2d[2])
    v = 0.5 * (box2d[1] + box2d[3])
    origin = calib.img_to_rect(np.float64(u), np.float64(v), np.float64(0.0))
    d = calib.img_to_rect(np.float64(u), np.float64(v), np.float64(1.0)) - origin
    yaw = float(np.arctan2(d[0], d[2]))
    pitch = float(np.arctan2(d[1], np.hypot(d[0], d[2]))) if align_pitch else 0.0
    return frustum_rotation(yaw, pitch), np.asarray(origin, dtype=np.float64), yaw, pitch


def frustum_rotation(yaw: float, pitch: float) -> np.ndarray:
    """R = Rx(pitch) @ Ry(yaw).T: rectified-camera directions -> frustum-frame directions."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    ry_t = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rx @ ry_t


def rect_to_frustum(pts_rect: np.ndarray, rot: np.ndarray, origin: np.ndarray) -> np.ndarray:
    return (np.asarray(pts_rect, dtype=np.float64)[:, :3] - origin) @ rot.T


def frustum_to_rect(pts_f: np.ndarray, rot: np.ndarray, origin: np.ndarray) -> np.ndarray:
    return np.asarray(pts_f, dtype=np.float64)[:, :3] @ rot + origin


# ----------------------------------------------------------------------------- box mapping

def frustum_boxes_to_camera(boxes_f, rot: np.ndarray, origin: np.ndarray, yaw: float) -> np.ndarray:
    """(N, 7) frustum boxes (x, y, z centre, l, w, h, heading) -> KITTI camera boxes
    (x, y, z bottom centre, l, h, w, rotation_y) in the rectified frame."""
    b = np.asarray(boxes_f, dtype=np.float64).reshape(-1, 7)
    centre = frustum_to_rect(b[:, 0:3], rot, origin)
    l, w, h = b[:, 3:4], b[:, 4:5], b[:, 5:6]
    centre[:, 1:2] += h / 2  # camera y points down: centre -> bottom
    return np.concatenate([centre, l, h, w, limit_period(b[:, 6:7] + yaw)], axis=1)


def camera_boxes_to_frustum(boxes_cam, rot: np.ndarray, origin: np.ndarray, yaw: float) -> np.ndarray:
    """Inverse of frustum_boxes_to_camera (targets for proxies and pseudo-labels)."""
    b = np.asarray(boxes_cam, dtype=np.float64).reshape(-1, 7)
    centre = b[:, 0:3].copy()
    l, h, w = b[:, 3:4], b[:, 4:5], b[:, 5:6]
    centre[:, 1:2] -= h / 2
    return np.concatenate([rect_to_frustum(centre, rot, origin), l, w, h,
                           limit_period(b[:, 6:7] - yaw)], axis=1)


def frustum_boxes_to_lidar(boxes_f, rot, origin, yaw, calib: Calibration) -> np.ndarray:
    """(N, 7) frustum boxes -> (N, 7) LiDAR boxes (x, y, z, dx, dy, dz, heading)."""
    return boxes3d_kitti_camera_to_lidar(frustum_boxes_to_camera(boxes_f, rot, origin, yaw), calib)


def lidar_boxes_to_frustum(boxes_lidar, rot, origin, yaw, calib: Calibration) -> np.ndarray:
    return camera_boxes_to_frustum(boxes3d_lidar_to_kitti_camera(boxes_lidar, calib), rot, origin, yaw)


def frustum_boxes_to_lidar_torch(boxes_f: torch.Tensor, rot: torch.Tensor, origin: torch.Tensor,
                                 yaw: torch.Tensor, rect_to_lidar: torch.Tensor) -> torch.Tensor:
    """Differentiable, batched frustum_boxes_to_lidar: boxes_f (N, 7), rot (N, 3, 3), origin
    (N, 3), yaw (N,), rect_to_lidar (N, 4, 4) or (4, 4). For the 2D and corner losses."""
    dt = boxes_f.dtype
    centre = (rot.to(dt).transpose(1, 2) @ boxes_f[:, 0:3, None])[:, :, 0] + origin.to(dt)
    l, w, h = boxes_f[:, 3:4], boxes_f[:, 4:5], boxes_f[:, 5:6]
    bottom = centre + torch.cat([torch.zeros_like(h), h / 2, torch.zeros_like(h)], dim=1)
    cam = torch.cat([bottom, l, h, w, limit_period(boxes_f[:, 6:7] + yaw.to(dt)[:, None])], dim=1)
    return boxes3d_kitti_camera_to_lidar_torch(cam, rect_to_lidar)


# ----------------------------------------------------------------------------- samples

@dataclass
class FrustumSample:
    frame_id: str
    obj_index: int
    cls: str
    score: float
    truncation: float
    occlusion: int
    box2d: np.ndarray            # (4,) the label's 2D box: the 2D loss target
    box2d_input: np.ndarray      # (4,) the (possibly jittered) box the frustum was cut with
    points: np.ndarray           # (NUM_POINTS, 3 + C) float32: frustum-frame xyz + features
    point_indices: np.ndarray    # (NUM_POINTS,) int64 rows of the frame's point array
    num_real_points: int         # distinct real points (the first rows of `points`)
    rot: np.ndarray              # (3, 3) rect -> frustum rotation
    origin: np.ndarray           # (3,) ray origin in the rect frame
    yaw: float                   # frustum rotation angle about camera y
    pitch: float
    calib: Dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # P2, R0_rect, Tr_velo_to_cam

    def calibration(self) -> Calibration:
        return Calibration(self.calib)

    def to_camera_boxes(self, boxes_f) -> np.ndarray:
        return frustum_boxes_to_camera(boxes_f, self.rot, self.origin, self.yaw)

    def to_lidar_boxes(self, boxes_f) -> np.ndarray:
        return frustum_boxes_to_lidar(boxes_f, self.rot, self.origin, self.yaw, self.calibration())

    def from_camera_boxes(self, boxes_cam) -> np.ndarray:
        return camera_boxes_to_frustum(boxes_cam, self.rot, self.origin, self.yaw)

    def from_lidar_boxes(self, boxes_lidar) -> np.ndarray:
        return lidar_boxes_to_frustum(boxes_lidar, self.rot, self.origin, self.yaw, self.calibration())


# Per-sample arrays stacked by collate_frustums and stored by FrustumWriter.
_SAMPLE_ARRAYS = ('points', 'point_indices', 'num_real_points', 'box2d', 'box2d_input', 'rot', 'origin',
                  'yaw', 'pitch', 'score', 'truncation', 'occlusion', 'obj_index')


def collate_frustums(samples: Sequence[FrustumSample], class_names: Optional[Sequence[str]] = None
                     ) -> Dict[str, np.ndarray]:
    """Stack samples into numpy arrays, with the per-sample camera matrices the losses need:
    P2 (B, 3, 4), lidar_to_rect / rect_to_lidar (B, 4, 4); cls_index when class_names given."""
    out = {k: np.stack([np.asarray(getattr(s, k)) for s in samples]) for k in _SAMPLE_ARRAYS}
    calibs = [s.calibration() for s in samples]
    out['P2'] = np.stack([c.P2 for c in calibs])
    out['lidar_to_rect'] = np.stack([c.lidar_to_rect_mat for c in calibs])
    out['rect_to_lidar'] = np.stack([c.rect_to_lidar_mat for c in calibs])
    out['frame_id'] = np.array([s.frame_id for s in samples])
    out['cls'] = np.array([s.cls for s in samples])
    if class_names is not None:
        names = list(class_names)
        unknown = sorted({s.cls for s in samples} - set(names))
        if unknown:
            raise ValueError(f'collate_frustums: classes {unknown} are not in CLASS_NAMES {names}')
        out['cls_index'] = np.array([names.index(s.cls) for s in samples], dtype=np.int64)
    return out


def _sample_seed(seed: int, frame_id: str, obj_index: int, epoch: int, training: bool) -> List[int]:
    return [int(seed), zlib.crc32(str(frame_id).encode()), int(obj_index), int(epoch), int(training)]


class FrustumExtractor:
    """Cuts one frustum per weak label out of a frame's point cloud.

    Config keys (all optional): NUM_POINTS 1024, MIN_BOX_HEIGHT 25 px, MIN_POINTS 1 (fewer real
    points: skipped as empty), MIN_DEPTH 0 m (points must be ahead of the camera, rect depth >
    MIN_DEPTH), JITTER_2D 0.05 (training: centre shift and scale, fraction of w / h),
    ALIGN_PITCH True, SEED 0.
    """

    def __init__(self, cfg=None):
        cfg = cfg if cfg is not None else {}
        get = cfg.get
        self.num_points = int(get('NUM_POINTS', 1024))
        self.min_box_height = float(get('MIN_BOX_HEIGHT', 25.0))
        self.min_points = int(get('MIN_POINTS', 1))
        self.min_depth = float(get('MIN_DEPTH', 0.0))
        self.jitter_2d = float(get('JITTER_2D', 0.05))
        self.align_pitch = bool(get('ALIGN_PITCH', True))
        self.seed = int(get('SEED', 0))
        if self.num_points < 1 or self.min_points < 1:
            raise ValueError(f'FrustumExtractor: NUM_POINTS ({self.num_points}) and MIN_POINTS '
                             f'({self.min_points}) must be >= 1')
        if not 0 <= self.jitter_2d < 0.5:
            raise ValueError(f'FrustumExtractor: JITTER_2D must be in [0, 0.5), got {self.jitter_2d}')

    def jitter_box(self, box2d: np.ndarray, rng: np.random.Generator, image_shape=None) -> np.ndarray:
        """Shift the centre and scale w / h by up to JITTER_2D of the box size."""
        j = self.jitter_2d
        w, h = box2d[2] - box2d[0], box2d[3] - box2d[1]
        du, dv, sw, sh = rng.uniform(-j, j, size=4)
        cu = 0.5 * (box2d[0] + box2d[2]) + du * w
        cv = 0.5 * (box2d[1] + box2d[3]) + dv * h
        w, h = w * (1 + sw), h * (1 + sh)
        out = np.array([cu - w / 2, cv - h / 2, cu + w / 2, cv + h / 2])
        if image_shape is not None:
            out[[0, 2]] = np.clip(out[[0, 2]], 0, image_shape[1] - 1)
            out[[1, 3]] = np.clip(out[[1, 3]], 0, image_shape[0] - 1)
        return out

    def _resample(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = idx.shape[0]
        if n >= self.num_points:
            return idx[np.sort(rng.choice(n, self.num_points, replace=False))]
        extra = rng.choice(n, self.num_points - n, replace=True)
        return np.concatenate([idx, idx[extra]])

    def extract(self, points: np.ndarray, calib: Calibration, labels: Iterable[WeakLabel],
                frame_id: Optional[str] = None, training: bool = False, epoch: int = 0,
                image_shape=None, report: Optional[ReadReport] = None
                ) -> Tuple[List[FrustumSample], ReadReport]:
        """Frustums of one frame. points: (N, 3 + C) LiDAR points (x, y, z, features...)."""
        report = report if report is not None else ReadReport()
        labels = list(labels)
        if frame_id is None:
            frame_id = labels[0].frame_id if labels else ''
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f'frame {frame_id}: points must be (N, 3+C), got {pts.shape}')
        if not labels:
            return [], report
        rect = calib.lidar_to_rect(pts[:, :3])
        uv, depth = calib.rect_to_img(rect)
        ahead = np.nonzero(depth > self.min_depth)[0]  # projections of points behind are meaningless
        uv, rect = uv[ahead], rect[ahead]
        calib_dict = calib.to_dict()
        samples = []
        for lab in labels:
            where = f'frame {frame_id} object {lab.obj_index} ({lab.cls})'
            if lab.height < self.min_box_height:
                report.skip('too_small', where, f'2D box {lab.height:.1f} px tall < '
                            f'MIN_BOX_HEIGHT {self.min_box_height:g}', warn=False)
                continue
            rng = np.random.default_rng(_sample_seed(self.seed, frame_id, lab.obj_index, epoch, training))
            box_in = self.jitter_box(lab.box2d, rng, image_shape) if training and self.jitter_2d > 0 \
                else np.asarray(lab.box2d, dtype=np.float64).copy()
            inside = np.nonzero((uv[:, 0] >= box_in[0]) & (uv[:, 0] <= box_in[2]) &
                                (uv[:, 1] >= box_in[1]) & (uv[:, 1] <= box_in[3]))[0]
            if inside.shape[0] < self.min_points:
                report.skip('empty_frustum', where, f'{inside.shape[0]} LiDAR points in the frustum '
                            f'of 2D box {np.round(box_in, 1).tolist()} (MIN_POINTS {self.min_points})')
                continue
            chosen = self._resample(inside, rng)
            rot, origin, yaw, pitch = frustum_frame(box_in, calib, self.align_pitch)
            xyz_f = rect_to_frustum(rect[chosen], rot, origin)
            feats = pts[ahead[chosen], 3:]
            samples.append(FrustumSample(
                frame_id=frame_id, obj_index=lab.obj_index, cls=lab.cls, score=lab.score,
                truncation=lab.truncation, occlusion=lab.occlusion,
                box2d=np.asarray(lab.box2d, dtype=np.float64).copy(), box2d_input=box_in,
                points=np.concatenate([xyz_f, feats], axis=1).astype(np.float32),
                point_indices=ahead[chosen].astype(np.int64), num_real_points=int(inside.shape[0]),
                rot=rot, origin=origin, yaw=yaw, pitch=pitch, calib=calib_dict))
            report.kept += 1
        return samples, report


# ----------------------------------------------------------------------------- on disk

class FrustumWriter:
    """Streams frustums to `<out_dir>/<frame_id>.npz`, one file per frame (K samples stacked),
    so a KITTI-size split never sits in memory. Files are written atomically (tmp + rename);
    `done(frame_id)` lets a killed build resume. close() writes manifest.json with the
    per-frame sample counts and the skip counts."""

    def __init__(self, out_dir: str, compress: bool = False):
        self.out_dir = out_dir
        self.compress = compress
        os.makedirs(out_dir, exist_ok=True)
        self.counts: Dict[str, int] = {}
        self.report = ReadReport()

    def path(self, frame_id: str) -> str:
        return os.path.join(self.out_dir, f'{frame_id}.npz')

    def done(self, frame_id: str) -> bool:
        return os.path.isfile(self.path(frame_id))

    def write(self, frame_id: str, samples: Sequence[FrustumSample], calib: Calibration,
              num_features: int) -> None:
        k = len(samples)
        arrays = {'frame_id': np.array(frame_id), 'num_features': np.array(num_features)}
        arrays.update({f'calib_{key}': val for key, val in calib.to_dict().items()})
        if k:
            arrays.update({key: np.stack([np.asarray(getattr(s, key)) for s in samples])
                           for key in _SAMPLE_ARRAYS})
            arrays['point_indices'] = arrays['point_indices'].astype(np.int32)  # a scan has < 2^31 points
            arrays['cls'] = np.array([s.cls for s in samples])
        tmp = self.path(frame_id) + '.tmp'
        with open(tmp, 'wb') as f:
            (np.savez_compressed if self.compress else np.savez)(f, **arrays)
        os.replace(tmp, self.path(frame_id))
        self.counts[frame_id] = k

    def adopt(self, frame_id: str) -> None:
        """Count a frame an earlier (possibly killed) run already wrote."""
        with np.load(self.path(frame_id), allow_pickle=False) as z:
            self.counts[frame_id] = int(z['obj_index'].shape[0]) if 'obj_index' in z.files else 0

    def close(self) -> None:
        manifest = {'frames': self.counts, 'kept': self.report.kept, 'skipped': dict(self.report.skipped)}
        path = os.path.join(self.out_dir, 'manifest.json')
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(tmp, path)


def load_frame_frustums(path: str) -> List[FrustumSample]:
    """The samples of one frame file written by FrustumWriter."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f'{path}: not a readable frustum file ({e})') from None
    calib = {k[len('calib_'):]: data[k] for k in data if k.startswith('calib_')}
    frame_id = str(data['frame_id'])
    if 'points' not in data:
        return []
    return [FrustumSample(
        frame_id=frame_id, obj_index=int(data['obj_index'][i]), cls=str(data['cls'][i]),
        score=float(data['score'][i]), truncation=float(data['truncation'][i]),
        occlusion=int(data['occlusion'][i]), box2d=data['box2d'][i], box2d_input=data['box2d_input'][i],
        points=data['points'][i], point_indices=data['point_indices'][i].astype(np.int64),
        num_real_points=int(data['num_real_points'][i]), rot=data['rot'][i], origin=data['origin'][i],
        yaw=float(data['yaw'][i]), pitch=float(data['pitch'][i]), calib=calib)
        for i in range(data['points'].shape[0])]


def write_frustum_split(frames: Iterable[Tuple[str, np.ndarray, Calibration, List[WeakLabel]]],
                        out_dir: str, extractor: FrustumExtractor, total: Optional[int] = None,
                        resume: bool = True, progress: bool = True) -> FrustumWriter:
    """Build the frustums of a split on disk. frames yields (frame_id, points, calib, labels)
    lazily (a generator reading one frame at a time keeps memory flat)."""
    from tqdm import tqdm
    writer = FrustumWriter(out_dir)
    for frame_id, points, calib, labels in tqdm(frames, total=total, disable=not progress,
                                                desc='frustums'):
        if resume and writer.done(frame_id):
            writer.adopt(frame_id)
            continue
        samples, _ = extractor.extract(points, calib, labels, frame_id=frame_id, report=writer.report)
        writer.write(frame_id, samples, calib, num_features=np.asarray(points).shape[1] - 3)
    writer.close()
    return writer


class FrustumStore:
    """Random access to the samples of a FrustumWriter folder, one frame file open at a time."""

    def __init__(self, out_dir: str):
        manifest = os.path.join(out_dir, 'manifest.json')
        if not os.path.isfile(manifest):
            raise FileNotFoundError(f'{manifest}: no frustum manifest (build interrupted? rerun '
                                    f'write_frustum_split, it resumes)')
        with open(manifest) as f:
            frames = json.load(f)['frames']
        self.out_dir = out_dir
        self.index = [(fid, k) for fid in sorted(frames) for k in range(frames[fid])]
        self._cache: Tuple[Optional[str], List[FrustumSample]] = (None, [])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> FrustumSample:
        fid, k = self.index[i]
        if self._cache[0] != fid:
            self._cache = (fid, load_frame_frustums(os.path.join(self.out_dir, f'{fid}.npz')))
        return self._cache[1][k]

    def __iter__(self) -> Iterator[FrustumSample]:
        for i in range(len(self)):
            yield self[i]
