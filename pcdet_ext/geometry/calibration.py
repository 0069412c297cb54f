"""KITTI calibration: parsing and the frame transforms (LiDAR <-> rectified camera <-> image_2).

One home for every transform between frames; boxes.py builds the box conversions on top.
"""
from __future__ import annotations

import os
from typing import Dict

import numpy as np


class CalibrationError(ValueError):
    """A calibration file is missing, truncated or malformed."""


_REQUIRED = ('P2', 'R0_rect', 'Tr_velo_to_cam')
_SIZES = {'P0': 12, 'P1': 12, 'P2': 12, 'P3': 12, 'R0_rect': 9, 'R_rect': 9,
          'Tr_velo_to_cam': 12, 'Tr_velo_cam': 12, 'Tr_imu_to_velo': 12, 'Tr_imu_velo': 12}
# Some KITTI-derived files spell the keys differently; map them onto the canonical names.
_ALIASES = {'R_rect': 'R0_rect', 'Tr_velo_cam': 'Tr_velo_to_cam', 'Tr_imu_velo': 'Tr_imu_to_velo'}


def parse_calib_file(path: str) -> Dict[str, np.ndarray]:
    """Read a KITTI calib .txt into {key: flat float array}; errors name the file and the line."""
    if not os.path.isfile(path):
        raise CalibrationError(f'{path}: calibration file not found')
    out: Dict[str, np.ndarray] = {}
    with open(path, 'r') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if ':' not in line:
                raise CalibrationError(f'{path}:{lineno}: expected "KEY: values", got {line[:60]!r}')
            key, vals = line.split(':', 1)
            key = _ALIASES.get(key.strip(), key.strip())
            try:
                arr = np.array([float(v) for v in vals.split()], dtype=np.float64)
            except ValueError:
                raise CalibrationError(f'{path}:{lineno}: non-numeric value in {key}') from None
            want = _SIZES.get(key)
            if want is not None and arr.size != want:
                raise CalibrationError(f'{path}:{lineno}: {key} has {arr.size} values, expected {want}')
            if not np.all(np.isfinite(arr)):
                raise CalibrationError(f'{path}:{lineno}: {key} contains NaN or inf')
            out[key] = arr
    missing = [k for k in _REQUIRED if k not in out]
    if missing:
        raise CalibrationError(f'{path}: missing calibration entries {missing}')
    return out


class Calibration:
    """KITTI camera/LiDAR calibration for image_2.

    P2 (3x4) projects rectified camera coordinates to image_2 pixels; R0 (3x3) rectifies the
    reference camera frame; V2C (3x4) maps LiDAR to the reference camera frame.
    Accepts a calib file path or a dict with keys P2, R0_rect, Tr_velo_to_cam.
    """

    def __init__(self, calib):
        self.source = calib if isinstance(calib, str) else '<dict>'
        raw = parse_calib_file(calib) if isinstance(calib, str) else calib
        try:
            self.P2 = np.asarray(raw['P2'], dtype=np.float64).reshape(3, 4)
            self.R0 = np.asarray(raw['R0_rect'] if 'R0_rect' in raw else raw['R0'],
                                 dtype=np.float64).reshape(3, 3)
            self.V2C = np.asarray(raw['Tr_velo_to_cam'] if 'Tr_velo_to_cam' in raw else raw['V2C'],
                                  dtype=np.float64).reshape(3, 4)
        except (KeyError, ValueError) as e:
            raise CalibrationError(f'{self.source}: bad calibration dict ({e})') from None
        # Intrinsics, used to back-project (u, v, depth) to the rectified camera frame.
        self.cu, self.cv = self.P2[0, 2], self.P2[1, 2]
        self.fu, self.fv = self.P2[0, 0], self.P2[1, 1]
        self.tx = self.P2[0, 3] / (-self.fu)
        self.ty = self.P2[1, 3] / (-self.fv)
        # LiDAR -> rect as one 4x4, and its inverse, so each transform is a single matmul.
        v2c = np.eye(4)
        v2c[:3, :4] = self.V2C
        r0 = np.eye(4)
        r0[:3, :3] = self.R0
        self.lidar_to_rect_mat = r0 @ v2c
        self.rect_to_lidar_mat = np.linalg.inv(self.lidar_to_rect_mat)

    def to_dict(self) -> Dict[str, np.ndarray]:
        return {'P2': self.P2.copy(), 'R0_rect': self.R0.copy(), 'Tr_velo_to_cam': self.V2C.copy()}

    def write(self, path: str) -> None:
        """Write a KITTI-format calib file (P0..P3 = P2, identity IMU transform)."""
        fmt = lambda a: ' '.join(f'{v:.12e}' for v in np.asarray(a).reshape(-1))
        lines = [f'P{i}: {fmt(self.P2)}' for i in range(4)]
        lines += [f'R0_rect: {fmt(self.R0)}', f'Tr_velo_to_cam: {fmt(self.V2C)}',
                  f'Tr_imu_to_velo: {fmt(np.eye(4)[:3])}']
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    @staticmethod
    def _affine(pts: np.ndarray, mat: np.ndarray) -> np.ndarray:
        """pts (N, 3) -> (N, rows) for mat (rows, 4) in homogeneous form.

        Written as column sums rather than a matmul: (N x 4) @ (4 x 4) goes through
        multi-threaded BLAS, which is 10-20x slower than this on a busy 2-core machine.
        """
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        return np.stack([x * m[0] + y * m[1] + z * m[2] + m[3] for m in mat], axis=1)

    def lidar_to_rect(self, pts_lidar: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts_lidar, dtype=np.float64)[:, :3]
        return self._affine(pts, self.lidar_to_rect_mat[:3])

    def rect_to_lidar(self, pts_rect: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts_rect, dtype=np.float64)[:, :3]
        return self._affine(pts, self.rect_to_lidar_mat[:3])

    def rect_to_img(self, pts_rect: np.ndarray):
        """Project rectified points to image_2. Returns (uv (N,2), depth in rect frame (N,))."""
        pts = np.asarray(pts_rect, dtype=np.float64)[:, :3]
        proj = self._affine(pts, self.P2)
        depth = proj[:, 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            uv = proj[:, :2] / depth[:, None]
        return uv, depth - self.P2[2, 3]

    def lidar_to_img(self, pts_lidar: np.ndarray):
        return self.rect_to_img(self.lidar_to_rect(pts_lidar))

    def img_to_rect(self, u: np.ndarray, v: np.ndarray, depth_rect: np.ndarray) -> np.ndarray:
        """Back-project pixels with a depth (rect-frame z) to rectified 3D points."""
        x = ((u - self.cu) * depth_rect) / self.fu + self.tx
        y = ((v - self.cv) * depth_rect) / self.fv + self.ty
        return np.stack([x, y, depth_rect], axis=-1)
