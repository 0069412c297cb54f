"""HeightCompression: densify the 3D sparse output and fold its height axis into channels (BEV map)."""
import torch.nn as nn

from ...registry import register


@register('map_to_bev')
class HeightCompression(nn.Module):
    def __init__(self, model_cfg, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_bev_features = self.model_cfg.NUM_BEV_FEATURES

    def forward(self, batch_dict):
        encoded_spconv_tensor = batch_dict['encoded_spconv_tensor']
        spatial_features = encoded_spconv_tensor.dense()  # (B, C, D, H, W)
        n, c, d, h, w = spatial_features.shape
        if c * d != self.num_bev_features:
            raise ValueError(f'MAP_TO_BEV.NUM_BEV_FEATURES is {self.num_bev_features} but the 3D backbone '
                             f'outputs {c} channels x {d} height cells = {c * d}; fix the config')
        batch_dict['spatial_features'] = spatial_features.view(n, c * d, h, w)
        batch_dict['spatial_features_stride'] = batch_dict['encoded_spconv_tensor_stride']
        return batch_dict
