"""AnchorHeadSingle: 1x1 convolutions for class scores, box residuals and direction bins over the BEV map."""
import numpy as np
import torch.nn as nn

from ...registry import register
from .anchor_head_template import AnchorHeadTemplate


@register('dense_head')
class AnchorHeadSingle(AnchorHeadTemplate):
    def __init__(self, model_cfg, input_channels, num_class, class_names, grid_size, point_cloud_range,
                 predict_boxes_when_training=True, **kwargs):
        super().__init__(model_cfg=model_cfg, num_class=num_class, class_names=class_names, grid_size=grid_size,
                         point_cloud_range=point_cloud_range, predict_boxes_when_training=predict_boxes_when_training)
        self.num_anchors_per_location = sum(self.num_anchors_per_location)
        a = self.num_anchors_per_location
        self.conv_cls = nn.Conv2d(input_channels, a * self.num_class, kernel_size=1)
        self.conv_box = nn.Conv2d(input_channels, a * self.box_coder.code_size, kernel_size=1)
        if self.use_direction_classifier:
            self.conv_dir_cls = nn.Conv2d(input_channels, a * self.num_dir_bins, kernel_size=1)
        else:
            self.conv_dir_cls = None
        self.init_weights()

    def init_weights(self):
        pi = 0.01  # prior foreground probability: keeps the focal loss stable at the start
        nn.init.constant_(self.conv_cls.bias, -np.log((1 - pi) / pi))
        nn.init.normal_(self.conv_box.weight, mean=0, std=0.001)

    def _check_feature_map(self, x):
        ny, nx = self.anchors[0].shape[1:3]
        if tuple(x.shape[2:4]) != (ny, nx):
            raise ValueError(f'DENSE_HEAD: the BEV feature map is {tuple(x.shape[2:4])} (H, W) but the anchors were '
                             f'laid out for ({ny}, {nx}); check ANCHOR_GENERATOR_CONFIG feature_map_stride against '
                             f'the backbone strides')

    def forward(self, data_dict):
        spatial_features_2d = data_dict['spatial_features_2d']
        self._check_feature_map(spatial_features_2d)
        cls_preds = self.conv_cls(spatial_features_2d).permute(0, 2, 3, 1).contiguous()  # (B, H, W, A*C)
        box_preds = self.conv_box(spatial_features_2d).permute(0, 2, 3, 1).contiguous()
        self.forward_ret_dict['cls_preds'] = cls_preds
        self.forward_ret_dict['box_preds'] = box_preds
        if self.conv_dir_cls is not None:
            dir_cls_preds = self.conv_dir_cls(spatial_features_2d).permute(0, 2, 3, 1).contiguous()
            self.forward_ret_dict['dir_cls_preds'] = dir_cls_preds
        else:
            dir_cls_preds = None

        if self.training:
            if 'gt_boxes' not in data_dict:
                raise KeyError('AnchorHeadSingle: training needs batch_dict["gt_boxes"] (B, M, 8)')
            self.forward_ret_dict.update(self.assign_targets(gt_boxes=data_dict['gt_boxes']))

        if not self.training or self.predict_boxes_when_training:
            batch_cls_preds, batch_box_preds = self.generate_predicted_boxes(
                batch_size=data_dict['batch_size'], cls_preds=cls_preds, box_preds=box_preds,
                dir_cls_preds=dir_cls_preds)
            data_dict['batch_cls_preds'] = batch_cls_preds
            data_dict['batch_box_preds'] = batch_box_preds
            data_dict['cls_preds_normalized'] = False
        return data_dict
