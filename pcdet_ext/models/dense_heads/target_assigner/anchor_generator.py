"""Dense anchors on the BEV feature map, one set per ANCHOR_GENERATOR_CONFIG entry (per class)."""
from __future__ import annotations

from typing import List, Sequence

import torch


class AnchorGenerator:
    """anchor_generator_config: list of dicts with OpenPCDet's keys (anchor_sizes [[dx, dy, dz]],
    anchor_rotations, anchor_bottom_heights, align_center; the head reads the rest).

    generate_anchors(grid_sizes) returns, per entry, anchors of shape
    (nz, ny, nx, num_sizes, num_rotations, 7) in LiDAR box format (z = box centre), and the
    number of anchors per BEV location of each entry."""

    def __init__(self, anchor_range: Sequence[float], anchor_generator_config: List[dict]):
        self.anchor_range = [float(v) for v in anchor_range]
        self.anchor_sizes = [cfg['anchor_sizes'] for cfg in anchor_generator_config]
        self.anchor_rotations = [cfg['anchor_rotations'] for cfg in anchor_generator_config]
        self.anchor_heights = [cfg['anchor_bottom_heights'] for cfg in anchor_generator_config]
        self.align_center = [cfg.get('align_center', False) for cfg in anchor_generator_config]
        for i, sizes in enumerate(self.anchor_sizes):
            if len(sizes) == 0 or any(len(s) != 3 for s in sizes):
                raise ValueError(f'ANCHOR_GENERATOR_CONFIG[{i}].anchor_sizes must be a list of [dx, dy, dz], '
                                 f'got {sizes}')

    def generate_anchors(self, grid_sizes):
        all_anchors, num_anchors_per_location = [], []
        r = self.anchor_range
        for grid_size, sizes, rotations, heights, align_center in zip(
                grid_sizes, self.anchor_sizes, self.anchor_rotations, self.anchor_heights, self.align_center):
            nx, ny = int(grid_size[0]), int(grid_size[1])
            num_anchors_per_location.append(len(rotations) * len(sizes) * len(heights))
            if align_center:  # anchors at cell centres
                x_stride, y_stride = (r[3] - r[0]) / nx, (r[4] - r[1]) / ny
                x_off, y_off = x_stride / 2, y_stride / 2
            else:  # anchors spanning the range edge to edge (OpenPCDet's default for KITTI)
                x_stride, y_stride = (r[3] - r[0]) / (nx - 1), (r[4] - r[1]) / (ny - 1)
                x_off = y_off = 0.0
            # Built from integer counts (not arange with a float step) so the count is always nx, ny.
            xs = r[0] + x_off + x_stride * torch.arange(nx, dtype=torch.float32)
            ys = r[1] + y_off + y_stride * torch.arange(ny, dtype=torch.float32)
            zs = torch.tensor(heights, dtype=torch.float32)
            size_t = torch.tensor(sizes, dtype=torch.float32)
            rot_t = torch.tensor(rotations, dtype=torch.float32)
            gx, gy, gz = torch.meshgrid(xs, ys, zs, indexing='ij')  # (nx, ny, nz)
            centres = torch.stack([gx, gy, gz], dim=-1)
            ns, nr = size_t.shape[0], rot_t.shape[0]
            anchors = torch.cat([
                centres[:, :, :, None, None, :].expand(*centres.shape[:3], ns, nr, 3),
                size_t.view(1, 1, 1, ns, 1, 3).expand(*centres.shape[:3], ns, nr, 3),
                rot_t.view(1, 1, 1, 1, nr, 1).expand(*centres.shape[:3], ns, nr, 1)], dim=-1)
            anchors = anchors.permute(2, 1, 0, 3, 4, 5).contiguous()  # (nz, ny, nx, ns, nr, 7)
            anchors[..., 2] += anchors[..., 5] / 2  # bottom height -> box centre
            all_anchors.append(anchors)
        return all_anchors, num_anchors_per_location
