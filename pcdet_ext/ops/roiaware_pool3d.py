"""Points in rotated 3D boxes (OpenPCDet's `roiaware_pool3d_utils.points_in_boxes_*` role).

Rule for points on faces (both backends, bit-identical): a box is CLOSED. With the point
moved into the box frame in float64,
    lx = dx*cos(h) + dy*sin(h),  ly = dy*cos(h) - dx*sin(h),  lz = pz - cz
(dx, dy = point minus centre), the point is inside when |lx| <= dx/2, |ly| <= dy/2 and
|lz| <= dz/2. A point inside several boxes gets the lowest box index. cos/sin are computed
once in PyTorch and handed to the compiled kernel, so both backends take the same decision
even for points exactly on a face.
"""
from __future__ import annotations

import torch

from . import _backend
from ._inputs import back, boxes_arg, points_arg, same_device

__all__ = ['points_in_boxes', 'points_in_boxes_mask']

_CHUNK = 1 << 23   # point-box bounds tests per reference chunk


def _box_params(boxes: torch.Tensor) -> torch.Tensor:
    """(M, 7) -> (M, 8) float64: cx, cy, cz, half dx, half dy, half dz, cos h, sin h."""
    b = boxes[:, :7].to(torch.float64)
    return torch.cat([b[:, 0:3], b[:, 3:6] / 2, torch.cos(b[:, 6:7]), torch.sin(b[:, 6:7])], 1).contiguous()


def _inside_pairs(pts: torch.Tensor, bp: torch.Tensor) -> torch.Tensor:
    """(K, 3) points vs (K, 8) params row by row -> (K,) bool, the closed-box rule above."""
    dx = pts[:, 0] - bp[:, 0]
    dy = pts[:, 1] - bp[:, 1]
    lz = pts[:, 2] - bp[:, 2]
    lx = dx * bp[:, 6] + dy * bp[:, 7]
    ly = dy * bp[:, 6] - dx * bp[:, 7]
    return (lx.abs() <= bp[:, 3]) & (ly.abs() <= bp[:, 4]) & (lz.abs() <= bp[:, 5])


def _bounds(bp: torch.Tensor) -> torch.Tensor:
    """(M, 8) params -> (M, 6) conservative world bounds (xmin, xmax, ymin, ymax, zmin, zmax);
    the slack is far above rounding, so the exact test alone decides."""
    ex = (bp[:, 3] * bp[:, 6]).abs() + (bp[:, 4] * bp[:, 7]).abs()
    ey = (bp[:, 3] * bp[:, 7]).abs() + (bp[:, 4] * bp[:, 6]).abs()
    slack = 1e-7 * (bp[:, 3] + bp[:, 4] + bp[:, 5] + 1)
    return torch.stack([bp[:, 0] - ex - slack, bp[:, 0] + ex + slack, bp[:, 1] - ey - slack,
                        bp[:, 1] + ey + slack, bp[:, 2] - bp[:, 5] - slack, bp[:, 2] + bp[:, 5] + slack], 1)


def _hits_reference(p: torch.Tensor, bp: torch.Tensor):
    """All (point index, box index) pairs with the point inside the box: a bounds pre-test over
    chunks of points x all boxes (few, large tensor ops), then the exact rule on candidates."""
    lim = _bounds(bp)[None]
    rows = max(1, _CHUNK // bp.shape[0])
    out_i, out_k = [], []
    for r0 in range(0, p.shape[0], rows):
        q = p[r0:r0 + rows, None, :]
        near = ((q[..., 0] >= lim[..., 0]) & (q[..., 0] <= lim[..., 1]) & (q[..., 1] >= lim[..., 2])
                & (q[..., 1] <= lim[..., 3]) & (q[..., 2] >= lim[..., 4]) & (q[..., 2] <= lim[..., 5]))
        i, k = torch.nonzero(near, as_tuple=True)
        ok = _inside_pairs(q[i, 0], bp[k])
        out_i.append(i[ok] + r0)
        out_k.append(k[ok])
    return torch.cat(out_i), torch.cat(out_k)


def _prepare(points, boxes):
    p, was_np = points_arg(points, 'points')
    b, _ = boxes_arg(boxes, 'boxes')
    if not isinstance(boxes, torch.Tensor):
        b = b.to(p.device)
    same_device(p, b, 'points, boxes')
    return p[:, :3].to(torch.float64).contiguous(), _box_params(b), was_np


def points_in_boxes(points, boxes):
    """(N, 3+) points, (M, 7) LiDAR boxes -> (N,) int64: index of the (lowest-index) box
    containing each point, or -1."""
    p, bp, was_np = _prepare(points, boxes)
    n, m = p.shape[0], bp.shape[0]
    if n == 0 or m == 0:
        return back(torch.full((n,), -1, dtype=torch.long, device=p.device), was_np)
    mod = _backend.pick('points_in_boxes', p.device)
    if mod is not None:
        return back(mod.points_in_boxes(p, bp), was_np)
    i, k = _hits_reference(p, bp)
    first = torch.full((n,), m, dtype=torch.long, device=p.device).scatter_reduce_(0, i, k, reduce='amin')
    out = torch.where(first < m, first, torch.full_like(first, -1))
    return back(out, was_np)


def points_in_boxes_mask(points, boxes):
    """(N, 3+) points, (M, 7) boxes -> (M, N) bool: mask[k, i] is True when point i is in box k."""
    p, bp, was_np = _prepare(points, boxes)
    n, m = p.shape[0], bp.shape[0]
    if n == 0 or m == 0:
        return back(torch.zeros((m, n), dtype=torch.bool, device=p.device), was_np)
    mod = _backend.pick('points_in_boxes_mask', p.device)
    if mod is not None:
        return back(mod.points_in_boxes_mask(p, bp), was_np)
    i, k = _hits_reference(p, bp)
    out = torch.zeros((m, n), dtype=torch.bool, device=p.device)
    out[k, i] = True
    return back(out, was_np)
