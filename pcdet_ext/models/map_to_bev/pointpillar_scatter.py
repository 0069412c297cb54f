"""PointPillarScatter: place each pillar's feature at its (y, x) cell of a dense BEV canvas."""
import torch.nn as nn

from ...registry import register


@register('map_to_bev')
class PointPillarScatter(nn.Module):
    def __init__(self, model_cfg, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_bev_features = self.model_cfg.NUM_BEV_FEATURES
        self.nx, self.ny, self.nz = (int(v) for v in grid_size)
        if self.nz != 1:
            raise ValueError(f'PointPillarScatter needs a single height cell (pillars), got grid_size {list(grid_size)}; '
                             'set the voxel z size to the full z range')

    def forward(self, batch_dict, **kwargs):
        pillar_features, coords = batch_dict['pillar_features'], batch_dict['voxel_coords']
        coords = coords.long()
        batch_size = int(batch_dict['batch_size']) if 'batch_size' in batch_dict else int(coords[:, 0].max()) + 1
        c = self.num_bev_features
        canvas = pillar_features.new_zeros(batch_size, c, self.nz * self.ny * self.nx)
        flat = coords[:, 1] * self.ny * self.nx + coords[:, 2] * self.nx + coords[:, 3]
        for b in range(batch_size):
            m = coords[:, 0] == b
            canvas[b][:, flat[m]] = pillar_features[m].t()
        batch_dict['spatial_features'] = canvas.view(batch_size, c * self.nz, self.ny, self.nx)
        return batch_dict
