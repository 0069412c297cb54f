"""Box conventions and conversions: the one home for them (DESIGN.md section 3).

LiDAR boxes: (x, y, z, dx, dy, dz, heading), centre of the box, heading around +z from +x.
KITTI camera boxes: (x, y, z, l, h, w, ry) in the rectified camera frame, (x, y, z) the
bottom centre, as OpenPCDet stores them (the label file itself orders dimensions h, w, l).

Functions taking boxes accept numpy arrays or torch tensors and return the same type.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .calibration import Calibration

# Unit-cube corner template in OpenPCDet order: 0-3 the bottom face, 4-7 the top face,
# 0/1/4/5 on the front (+x, heading direction) side.
_CORNER_SIGNS = ((1, 1, -1), (1, -1, -1), (-1, -1, -1), (-1, 1, -1),
                 (1, 1, 1), (1, -1, 1), (-1, -1, 1), (-1, 1, 1))


def _to_torch(x):
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x), True
    return x, False


def _back(x: torch.Tensor, was_numpy: bool):
    return x.numpy() if was_numpy else x


def check_boxes(boxes, name: str = 'boxes', dims: int = 7):
    """Validate an (N, >=dims) box array: clear ValueError naming the argument on bad input."""
    if not isinstance(boxes, (np.ndarray, torch.Tensor)):
        raise ValueError(f'{name}: expected a numpy array or torch tensor, got {type(boxes).__name__}')
    if boxes.ndim != 2 or boxes.shape[1] < dims:
        raise ValueError(f'{name}: expected shape (N, {dims}), got {tuple(boxes.shape)}')
    if boxes.dtype not in (np.float32, np.float64, torch.float32, torch.float64, torch.float16):
        raise ValueError(f'{name}: expected a floating dtype, got {boxes.dtype}')
    bad = ~np.isfinite(boxes[:, :dims]).all(1) if isinstance(boxes, np.ndarray) \
        else ~torch.isfinite(boxes[:, :dims]).all(1)
    if bad.any():
        idx = int(np.nonzero(np.asarray(bad.cpu() if isinstance(bad, torch.Tensor) else bad))[0][0])
        raise ValueError(f'{name}: box {idx} contains NaN or inf')
    return boxes


def limit_period(val, offset: float = 0.5, period: float = 2 * math.pi):
    """Wrap angles into [-offset * period, (1 - offset) * period)."""
    if isinstance(val, torch.Tensor):
        return val - torch.floor(val / period + offset) * period
    return val - np.floor(val / period + offset) * period


def rotate_points_along_z(points, angle):
    """Rotate (B, N, 3+C) points by per-batch angles (B,) around +z, counter-clockwise."""
    pts, was_np = _to_torch(points)
    ang, _ = _to_torch(angle)
    ang = ang.to(pts.dtype)
    c, s = torch.cos(ang), torch.sin(ang)
    x, y = pts[..., 0], pts[..., 1]
    xr = x * c[:, None] - y * s[:, None]
    yr = x * s[:, None] + y * c[:, None]
    out = torch.cat([xr[..., None], yr[..., None], pts[..., 2:]], dim=-1)
    return _back(out, was_np)


def boxes_to_corners_3d(boxes3d):
    """(N, 7) LiDAR boxes -> (N, 8, 3) corners (order: see _CORNER_SIGNS)."""
    b, was_np = _to_torch(boxes3d)
    signs = torch.tensor(_CORNER_SIGNS, dtype=b.dtype, device=b.device) / 2
    corners = b[:, None, 3:6] * signs[None]
    corners = rotate_points_along_z(corners, b[:, 6])
    corners = corners + b[:, None, 0:3]
    return _back(corners, was_np)


def boxes_bev_corners(boxes3d):
    """(N, 7) -> (N, 4, 2) BEV corners (bottom face, order of _CORNER_SIGNS: clockwise)."""
    return boxes_to_corners_3d(boxes3d)[:, :4, :2]


def boxes3d_kitti_camera_to_lidar(boxes3d_camera, calib: Calibration) -> np.ndarray:
    """(N, 7) camera boxes (x, y, z bottom centre, l, h, w, ry) -> LiDAR boxes."""
    b = np.asarray(boxes3d_camera, dtype=np.float64).reshape(-1, 7)
    xyz = calib.rect_to_lidar(b[:, 0:3])
    l, h, w, r = b[:, 3:4], b[:, 4:5], b[:, 5:6], b[:, 6:7]
    xyz[:, 2:3] += h / 2  # bottom centre -> geometric centre (LiDAR z is up)
    return np.concatenate([xyz, l, w, h, -(r + np.pi / 2)], axis=1)


def boxes3d_lidar_to_kitti_camera(boxes3d_lidar, calib: Calibration) -> np.ndarray:
    """(N, 7) LiDAR boxes -> camera boxes (x, y, z bottom centre, l, h, w, ry)."""
    b = np.asarray(boxes3d_lidar, dtype=np.float64).reshape(-1, 7)
    xyz = calib.lidar_to_rect(b[:, 0:3])
    l, w, h, r = b[:, 3:4], b[:, 4:5], b[:, 5:6], b[:, 6:7]
    xyz[:, 1:2] += h / 2  # camera y points down: centre -> bottom
    return np.concatenate([xyz, l, h, w, limit_period(-r - np.pi / 2)], axis=1)


def boxes3d_kitti_camera_to_corners(boxes3d_camera) -> np.ndarray:
    """(N, 7) camera boxes -> (N, 8, 3) corners in the rectified camera frame."""
    b = np.asarray(boxes3d_camera, dtype=np.float64).reshape(-1, 7)
    l, h, w, ry = b[:, 3], b[:, 4], b[:, 5], b[:, 6]
    sx = np.array([0.5, 0.5, -0.5, -0.5, 0.5, 0.5, -0.5, -0.5])
    sz = np.array([0.5, -0.5, -0.5, 0.5, 0.5, -0.5, -0.5, 0.5])
    sy = np.array([0, 0, 0, 0, -1, -1, -1, -1], dtype=np.float64)  # bottom then top (y down)
    x = l[:, None] * sx
    y = h[:, None] * sy
    z = w[:, None] * sz
    c, s = np.cos(ry)[:, None], np.sin(ry)[:, None]
    xr = c * x + s * z
    zr = -s * x + c * z
    return np.stack([xr, y, zr], axis=-1) + b[:, None, 0:3]


def corners_to_image_boxes(corners_rect: np.ndarray, calib: Calibration, image_shape=None):
    """(N, 8, 3) rect-frame corners -> (N, 4) enclosing 2D boxes (x1, y1, x2, y2) and
    (N, 8, 2) projected corners. Clipped to image_shape (H, W) when given."""
    n = corners_rect.shape[0]
    uv, _ = calib.rect_to_img(corners_rect.reshape(-1, 3))
    uv = uv.reshape(n, 8, 2)
    boxes = np.concatenate([uv.min(1), uv.max(1)], axis=1)
    if image_shape is not None:
        h, w = image_shape[0], image_shape[1]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
    return boxes, uv


def boxes3d_kitti_camera_to_imageboxes(boxes3d_camera, calib: Calibration, image_shape=None):
    """(N, 7) camera boxes -> (N, 4) enclosing image_2 boxes, clipped to the image."""
    corners = boxes3d_kitti_camera_to_corners(boxes3d_camera)
    return corners_to_image_boxes(corners, calib, image_shape)[0]


def boxes3d_lidar_to_imageboxes(boxes3d_lidar, calib: Calibration, image_shape=None):
    """(N, 7) LiDAR boxes -> (N, 4) enclosing image_2 boxes, clipped to the image."""
    cam = boxes3d_lidar_to_kitti_camera(boxes3d_lidar, calib)
    return boxes3d_kitti_camera_to_imageboxes(cam, calib, image_shape)


def project_boxes_lidar_to_image_torch(boxes3d_lidar: torch.Tensor, lidar_to_rect: torch.Tensor,
                                       P2: torch.Tensor) -> torch.Tensor:
    """Differentiable: (N, 7) LiDAR boxes -> (N, 4) unclipped enclosing image boxes.

    lidar_to_rect (4, 4) and P2 (3, 4) as in Calibration, or per box (N, 4, 4) and (N, 3, 4)
    when the boxes come from different frames; used by losses that need gradients through the
    projection (ALPI's 2D loss). Corners behind the camera are clamped to a small positive depth
    so gradients stay finite.
    """
    corners = boxes_to_corners_3d(boxes3d_lidar)  # (N, 8, 3)
    ones = torch.ones_like(corners[..., :1])
    hom = torch.cat([corners, ones], dim=-1)
    rect = hom @ lidar_to_rect.to(hom.dtype).transpose(-1, -2)
    proj = rect @ P2.to(hom.dtype).transpose(-1, -2)  # (N, 8, 3)
    depth = proj[..., 2:3].clamp(min=1e-3)
    uv = proj[..., :2] / depth
    return torch.cat([uv.min(1).values, uv.max(1).values], dim=1)


def mask_boxes_outside_range(boxes, limit_range, min_num_corners: int = 1):
    """Keep boxes with at least min_num_corners BEV corners inside the x/y range of
    limit_range (x0, y0, z0, x1, y1, z1)."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=bool)
    corners = np.asarray(boxes_to_corners_3d(np.asarray(boxes[:, :7], dtype=np.float64)))[:, :, :2]
    inside = ((corners >= np.asarray(limit_range[0:2])) &
              (corners <= np.asarray(limit_range[3:5]))).all(axis=2)
    return inside.sum(axis=1) >= min_num_corners


def enlarge_box3d(boxes3d, extra_width=(0, 0, 0)):
    """Grow (dx, dy, dz) by extra_width; z grows symmetrically around the centre."""
    b, was_np = _to_torch(boxes3d)
    b = b.clone()
    b[:, 3:6] += torch.tensor(extra_width, dtype=b.dtype, device=b.device)[None]
    return _back(b, was_np)


def points_in_image(points_lidar: np.ndarray, calib: Calibration, image_shape):
    """Mask of points that project inside image_2 (H, W) and lie ahead of the camera."""
    uv, depth = calib.lidar_to_img(points_lidar[:, :3])
    h, w = image_shape[0], image_shape[1]
    return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)


def alpha_from_ry(ry, x, z):
    """KITTI observation angle alpha from rotation_y and the camera-frame centre (x, z)."""
    return limit_period(ry - np.arctan2(x, z))


def boxes3d_lidar_to_aligned_bev_boxes(boxes3d):
    """(N, 7+) LiDAR boxes -> (N, 4) axis-aligned BEV boxes (x1, y1, x2, y2): the box is snapped
    to the nearest axis (dx/dy swapped when |heading| mod pi is closer to pi/2)."""
    b, was_np = _to_torch(boxes3d)
    rot = limit_period(b[:, 6], offset=0.5, period=math.pi).abs()
    dims = torch.where((rot < math.pi / 4)[:, None], b[:, [3, 4]], b[:, [4, 3]])
    out = torch.cat([b[:, 0:2] - dims / 2, b[:, 0:2] + dims / 2], dim=1)
    return _back(out, was_np)


def boxes_iou_normal(boxes_a, boxes_b):
    """(N, 4) x (M, 4) axis-aligned (x1, y1, x2, y2) boxes -> (N, M) IoU."""
    a, was_np = _to_torch(boxes_a)
    b, _ = _to_torch(boxes_b)
    x1 = torch.max(a[:, None, 0], b[None, :, 0])
    y1 = torch.max(a[:, None, 1], b[None, :, 1])
    x2 = torch.min(a[:, None, 2], b[None, :, 2])
    y2 = torch.min(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)
    return _back(iou, was_np)


def boxes3d_nearest_bev_iou(boxes_a, boxes_b):
    """(N, 7) x (M, 7) LiDAR boxes -> (N, M) IoU of their nearest axis-aligned BEV boxes
    (the cheap overlap SECOND's anchor assignment uses)."""
    return boxes_iou_normal(boxes3d_lidar_to_aligned_bev_boxes(boxes_a),
                            boxes3d_lidar_to_aligned_bev_boxes(boxes_b))


def boxes3d_kitti_camera_to_lidar_torch(boxes3d_camera: torch.Tensor,
                                        rect_to_lidar: torch.Tensor) -> torch.Tensor:
    """Differentiable boxes3d_kitti_camera_to_lidar: (N, 7) camera boxes (x, y, z bottom centre,
    l, h, w, ry) -> (N, 7) LiDAR boxes. rect_to_lidar is Calibration.rect_to_lidar_mat (4, 4),
    or per box (N, 4, 4)."""
    b = boxes3d_camera
    hom = torch.cat([b[:, 0:3], torch.ones_like(b[:, :1])], dim=1)
    xyz = (rect_to_lidar.to(b.dtype) @ hom[:, :, None])[:, :3, 0]
    l, h, w, r = b[:, 3:4], b[:, 4:5], b[:, 5:6], b[:, 6:7]
    xyz = xyz + torch.cat([torch.zeros_like(h), torch.zeros_like(h), h / 2], dim=1)
    return torch.cat([xyz, l, w, h, -(r + math.pi / 2)], dim=1)
