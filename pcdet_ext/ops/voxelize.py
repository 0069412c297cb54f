"""Voxelization of point clouds (what OpenPCDet's `transform_points_to_voxels` expects).

Voxel of a point: c = floor((p - range_min) / voxel_size) per axis, in float64; a point is
kept only when 0 <= c < grid_size, grid_size = round((range_max - range_min) / voxel_size).
Hard voxelization is first-come in input order: voxels are numbered by the first point that
falls in them; a voxel keeps its first `max_points_per_voxel` points; once `max_voxels`
voxels exist, points of new voxels are dropped (points of existing voxels are still added).
Both backends give identical outputs.
"""
from __future__ import annotations

import torch

from . import _backend
from ._inputs import back, points_arg, triple

__all__ = ['hard_voxelize', 'dynamic_voxelize', 'grid_size']


def _grid(voxel_size, point_cloud_range):
    vs = triple(voxel_size, 'voxel_size', positive=True)
    rng = triple(point_cloud_range, 'point_cloud_range')
    if len(vs) != 3:
        raise ValueError(f'voxel_size: expected 3 values (x, y, z), got {len(vs)}')
    if len(rng) != 6:
        raise ValueError(f'point_cloud_range: expected 6 values (xmin, ymin, zmin, xmax, ymax, zmax), got {len(rng)}')
    if any(rng[i + 3] <= rng[i] for i in range(3)):
        raise ValueError(f'point_cloud_range: every max must exceed its min, got {rng}')
    grid = [int(round((rng[i + 3] - rng[i]) / vs[i])) for i in range(3)]
    if min(grid) < 1:
        raise ValueError(f'voxel_size {vs} is larger than point_cloud_range {rng}')
    return vs, rng[:3], grid


def grid_size(voxel_size, point_cloud_range):
    """[nx, ny, nz] voxels along x, y, z."""
    return _grid(voxel_size, point_cloud_range)[2]


def _voxel_coords(pts: torch.Tensor, vs, mins, grid):
    """-> (N, 3) int64 [x, y, z] voxel coordinates and (N,) bool in-grid mask."""
    p64 = pts[:, :3].to(torch.float64)
    c = torch.floor((p64 - torch.tensor(mins, dtype=torch.float64, device=pts.device))
                    / torch.tensor(vs, dtype=torch.float64, device=pts.device))
    g = torch.tensor(grid, dtype=torch.float64, device=pts.device)
    valid = ((c >= 0) & (c < g)).all(1)
    return torch.where(valid[:, None], c, torch.zeros_like(c)).long(), valid


def dynamic_voxelize(points, voxel_size, point_cloud_range):
    """(N, 3+) points -> (N,) int64 voxel id (z * ny + y) * nx + x, or -1 outside the range."""
    pts, was_np = points_arg(points, 'points')
    vs, mins, grid = _grid(voxel_size, point_cloud_range)
    c, valid = _voxel_coords(pts, vs, mins, grid)
    lin = (c[:, 2] * grid[1] + c[:, 1]) * grid[0] + c[:, 0]
    return back(torch.where(valid, lin, torch.full_like(lin, -1)), was_np)


def _hard_reference(pts, vs, mins, grid, max_points: int, max_voxels: int):
    n, ch = pts.shape
    c, valid = _voxel_coords(pts, vs, mins, grid)
    pos = torch.nonzero(valid, as_tuple=True)[0]
    c = c[pos]
    lin = (c[:, 2] * grid[1] + c[:, 1]) * grid[0] + c[:, 0]
    uniq, inv = torch.unique(lin, return_inverse=True)
    first = torch.full((uniq.numel(),), n, dtype=torch.long, device=pts.device)
    first.scatter_reduce_(0, inv, pos, reduce='amin')
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.numel(), device=pts.device)
    vox = rank[inv]                                        # voxel number of each kept point
    keep = vox < max_voxels
    pos, vox, c = pos[keep], vox[keep], c[keep]
    nv = min(int(first.numel()), max_voxels)
    counts = torch.bincount(vox, minlength=nv)
    order = torch.argsort(vox, stable=True)                # input order within each voxel
    start = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(vox)
    slot[order] = torch.arange(vox.numel(), device=pts.device) - start[vox[order]]
    fits = slot < max_points
    voxels = torch.zeros((nv, max_points, ch), dtype=pts.dtype, device=pts.device)
    voxels[vox[fits], slot[fits]] = pts[pos[fits]]
    coords = torch.zeros((nv, 3), dtype=torch.int32, device=pts.device)
    coords[vox] = c[:, [2, 1, 0]].to(torch.int32)
    return voxels, coords, counts.clamp(max=max_points).to(torch.int32)


def hard_voxelize(points, voxel_size, point_cloud_range, max_points_per_voxel: int, max_voxels: int):
    """(N, C) points -> voxels (V, P, C) zero-padded, coords (V, 3) int32 [z, y, x],
    num_points (V,) int32, with V <= max_voxels and P = max_points_per_voxel."""
    pts, was_np = points_arg(points, 'points')
    vs, mins, grid = _grid(voxel_size, point_cloud_range)
    for name, v in (('max_points_per_voxel', max_points_per_voxel), ('max_voxels', max_voxels)):
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise ValueError(f'{name}: expected a positive integer, got {v!r}')
    max_points, max_voxels = int(max_points_per_voxel), int(max_voxels)
    if pts.shape[0] == 0:
        return tuple(back(t, was_np) for t in (
            torch.zeros((0, max_points, pts.shape[1]), dtype=pts.dtype, device=pts.device),
            torch.zeros((0, 3), dtype=torch.int32, device=pts.device),
            torch.zeros((0,), dtype=torch.int32, device=pts.device)))
    # No CUDA kernel: there the vectorised reference already runs on the GPU.
    mod = _backend.pick('hard_voxelize', pts.device, attr='hard_voxelize')
    if mod is not None and pts.dtype in (torch.float32, torch.float64):
        out = mod.hard_voxelize(pts.contiguous(), vs, mins, grid, max_points, max_voxels)
    else:
        out = _hard_reference(pts, vs, mins, grid, max_points, max_voxels)
    return tuple(back(t, was_np) for t in out)
