"""Shared machinery of anchor-based dense heads: anchors, target assignment, losses, box decoding."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ...geometry import limit_period
from ..box_coders import build_box_coder
from ..losses import SigmoidFocalClassificationLoss, WeightedCrossEntropyLoss, WeightedSmoothL1Loss
from .target_assigner.anchor_generator import AnchorGenerator
from .target_assigner.axis_aligned_target_assigner import AxisAlignedTargetAssigner


class AnchorHeadTemplate(nn.Module):
    def __init__(self, model_cfg, num_class, class_names, grid_size, point_cloud_range, predict_boxes_when_training):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_class = num_class
        self.class_names = class_names
        self.predict_boxes_when_training = predict_boxes_when_training
        self.use_multihead = model_cfg.get('USE_MULTIHEAD', False)
        if self.use_multihead:
            raise NotImplementedError(f'{type(self).__name__}: USE_MULTIHEAD is not supported')
        self.class_agnostic = model_cfg.get('CLASS_AGNOSTIC', False)
        self.use_direction_classifier = model_cfg.get('USE_DIRECTION_CLASSIFIER', False)
        self.dir_offset = model_cfg.get('DIR_OFFSET', 0.0)
        self.dir_limit_offset = model_cfg.get('DIR_LIMIT_OFFSET', 0.0)
        self.num_dir_bins = model_cfg.get('NUM_DIR_BINS', 2)

        anchor_target_cfg = model_cfg.TARGET_ASSIGNER_CONFIG
        self.box_coder = build_box_coder(anchor_target_cfg.BOX_CODER, num_dir_bins=anchor_target_cfg.get('NUM_DIR_BINS', 6),
                                         **anchor_target_cfg.get('BOX_CODER_CONFIG', {}))
        anchor_generator_cfg = model_cfg.ANCHOR_GENERATOR_CONFIG
        anchors, self.num_anchors_per_location = self.generate_anchors(
            anchor_generator_cfg, grid_size=grid_size, point_cloud_range=point_cloud_range,
            anchor_ndim=self.box_coder.code_size)
        # Plain attribute as in OpenPCDet (not in the state_dict); moved with the module in _apply.
        self.anchors = anchors
        self.target_assigner = self.get_target_assigner(model_cfg, anchor_target_cfg)
        self.forward_ret_dict = {}
        self.build_losses(model_cfg.LOSS_CONFIG)

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda()/.cpu() also move the anchors (OpenPCDet pins them on CUDA at build time).
        out = super()._apply(fn, *args, **kwargs)
        self.anchors = [fn(a) for a in self.anchors]
        return out

    @staticmethod
    def generate_anchors(anchor_generator_cfg, grid_size, point_cloud_range, anchor_ndim=7):
        anchor_generator = AnchorGenerator(anchor_range=point_cloud_range, anchor_generator_config=anchor_generator_cfg)
        grid_size = np.asarray(grid_size)
        feature_map_size = [grid_size[:2] // cfg['feature_map_stride'] for cfg in anchor_generator_cfg]
        anchors_list, num_anchors_per_location_list = anchor_generator.generate_anchors(feature_map_size)
        if anchor_ndim != 7:  # extra coded columns (e.g. velocities) start at zero
            anchors_list = [torch.cat([a, a.new_zeros((*a.shape[:-1], anchor_ndim - 7))], dim=-1) for a in anchors_list]
        return anchors_list, num_anchors_per_location_list

    def get_target_assigner(self, model_cfg, anchor_target_cfg):
        name = anchor_target_cfg.NAME
        if name != 'AxisAlignedTargetAssigner':
            raise KeyError(f'DENSE_HEAD.TARGET_ASSIGNER_CONFIG.NAME: unknown target assigner {name!r}; '
                           f'available: [AxisAlignedTargetAssigner]')
        return AxisAlignedTargetAssigner(model_cfg=model_cfg, class_names=self.class_names, box_coder=self.box_coder,
                                         match_height=anchor_target_cfg.get('MATCH_HEIGHT', False))

    def build_losses(self, losses_cfg):
        self.add_module('cls_loss_func', SigmoidFocalClassificationLoss(alpha=0.25, gamma=2.0))
        reg_loss_name = losses_cfg.get('REG_LOSS_TYPE', None) or 'WeightedSmoothL1Loss'
        if reg_loss_name != 'WeightedSmoothL1Loss':
            raise KeyError(f'DENSE_HEAD.LOSS_CONFIG.REG_LOSS_TYPE: unknown loss {reg_loss_name!r}')
        weights = losses_cfg.LOSS_WEIGHTS
        self.loss_weights = {k: weights[k] for k in weights}  # read every entry now (config validation)
        self.add_module('reg_loss_func', WeightedSmoothL1Loss(code_weights=self.loss_weights['code_weights']))
        self.add_module('dir_loss_func', WeightedCrossEntropyLoss())

    def assign_targets(self, gt_boxes):
        """gt_boxes (B, M, 8): boxes with the 1-based class index last."""
        return self.target_assigner.assign_targets(self.anchors, gt_boxes)

    def _all_anchors(self):
        return torch.cat(self.anchors, dim=-3) if isinstance(self.anchors, list) else self.anchors

    def get_cls_layer_loss(self):
        cls_preds = self.forward_ret_dict['cls_preds']
        box_cls_labels = self.forward_ret_dict['box_cls_labels']
        batch_size = int(cls_preds.shape[0])
        cared = box_cls_labels >= 0
        positives = box_cls_labels > 0
        negatives = box_cls_labels == 0
        cls_weights = (negatives * 1.0 + positives * 1.0).float()
        if self.num_class == 1:  # class agnostic: every positive is class 1
            box_cls_labels = box_cls_labels.clone()
            box_cls_labels[positives] = 1
        pos_normalizer = positives.sum(1, keepdim=True).float()
        cls_weights /= torch.clamp(pos_normalizer, min=1.0)
        cls_targets = (box_cls_labels * cared.type_as(box_cls_labels)).unsqueeze(dim=-1)
        one_hot = torch.zeros(*cls_targets.shape[:-1], self.num_class + 1, dtype=cls_preds.dtype,
                              device=cls_preds.device)
        one_hot.scatter_(-1, cls_targets.long(), 1.0)
        cls_preds = cls_preds.view(batch_size, -1, self.num_class)
        one_hot = one_hot[..., 1:]  # drop the background column
        cls_loss = self.cls_loss_func(cls_preds, one_hot, weights=cls_weights).sum() / batch_size
        cls_loss = cls_loss * self.loss_weights['cls_weight']
        return cls_loss, {'rpn_loss_cls': cls_loss.item()}

    @staticmethod
    def add_sin_difference(boxes1, boxes2, dim=6):
        # sin(a - b) = sin(a)cos(b) - cos(a)sin(b): regress the heading without the 2*pi ambiguity.
        rad_pred = torch.sin(boxes1[..., dim:dim + 1]) * torch.cos(boxes2[..., dim:dim + 1])
        rad_tg = torch.cos(boxes1[..., dim:dim + 1]) * torch.sin(boxes2[..., dim:dim + 1])
        boxes1 = torch.cat([boxes1[..., :dim], rad_pred, boxes1[..., dim + 1:]], dim=-1)
        boxes2 = torch.cat([boxes2[..., :dim], rad_tg, boxes2[..., dim + 1:]], dim=-1)
        return boxes1, boxes2

    @staticmethod
    def get_direction_target(anchors, reg_targets, one_hot=True, dir_offset=0.0, num_bins=2):
        batch_size = reg_targets.shape[0]
        anchors = anchors.view(batch_size, -1, anchors.shape[-1])
        rot_gt = reg_targets[..., 6] + anchors[..., 6]
        offset_rot = limit_period(rot_gt - dir_offset, 0, 2 * math.pi)
        dir_cls_targets = torch.floor(offset_rot / (2 * math.pi / num_bins)).long()
        dir_cls_targets = torch.clamp(dir_cls_targets, min=0, max=num_bins - 1)
        if one_hot:
            dir_cls_targets = torch.nn.functional.one_hot(dir_cls_targets, num_bins).to(anchors.dtype)
        return dir_cls_targets

    def get_box_reg_layer_loss(self):
        box_preds = self.forward_ret_dict['box_preds']
        box_dir_cls_preds = self.forward_ret_dict.get('dir_cls_preds', None)
        box_reg_targets = self.forward_ret_dict['box_reg_targets']
        box_cls_labels = self.forward_ret_dict['box_cls_labels']
        batch_size = int(box_preds.shape[0])
        positives = box_cls_labels > 0
        reg_weights = positives.float()
        reg_weights /= torch.clamp(positives.sum(1, keepdim=True).float(), min=1.0)
        anchors = self._all_anchors()
        anchors = anchors.view(1, -1, anchors.shape[-1]).repeat(batch_size, 1, 1)
        box_preds = box_preds.view(batch_size, -1, box_preds.shape[-1] // self.num_anchors_per_location_total)
        box_preds_sin, reg_targets_sin = self.add_sin_difference(box_preds, box_reg_targets)
        loc_loss = self.reg_loss_func(box_preds_sin, reg_targets_sin, weights=reg_weights).sum() / batch_size
        loc_loss = loc_loss * self.loss_weights['loc_weight']
        box_loss = loc_loss
        tb_dict = {'rpn_loss_loc': loc_loss.item()}
        if box_dir_cls_preds is not None:
            dir_targets = self.get_direction_target(anchors, box_reg_targets, dir_offset=self.dir_offset,
                                                    num_bins=self.num_dir_bins)
            dir_logits = box_dir_cls_preds.view(batch_size, -1, self.num_dir_bins)
            weights = positives.type_as(dir_logits)
            weights /= torch.clamp(weights.sum(-1, keepdim=True), min=1.0)
            dir_loss = self.dir_loss_func(dir_logits, dir_targets, weights=weights).sum() / batch_size
            dir_loss = dir_loss * self.loss_weights['dir_weight']
            box_loss = box_loss + dir_loss
            tb_dict['rpn_loss_dir'] = dir_loss.item()
        return box_loss, tb_dict

    @property
    def num_anchors_per_location_total(self):
        n = self.num_anchors_per_location  # a per-class list in the template, an int in subclasses
        return int(sum(n)) if isinstance(n, (list, tuple)) else int(n)

    def get_loss(self):
        cls_loss, tb_dict = self.get_cls_layer_loss()
        box_loss, tb_dict_box = self.get_box_reg_layer_loss()
        tb_dict.update(tb_dict_box)
        rpn_loss = cls_loss + box_loss
        tb_dict['rpn_loss'] = rpn_loss.item()
        return rpn_loss, tb_dict

    def generate_predicted_boxes(self, batch_size, cls_preds, box_preds, dir_cls_preds=None):
        """Decode dense predictions: (B, H, W, A*C) etc. -> batch_cls_preds (B, N, C) logits and
        batch_box_preds (B, N, 7) LiDAR boxes, the heading disambiguated by the direction bins."""
        anchors = self._all_anchors()
        num_anchors = anchors.view(-1, anchors.shape[-1]).shape[0]
        batch_anchors = anchors.view(1, -1, anchors.shape[-1]).repeat(batch_size, 1, 1)
        batch_cls_preds = cls_preds.view(batch_size, num_anchors, -1).float()
        batch_box_preds = box_preds.view(batch_size, num_anchors, -1)
        batch_box_preds = self.box_coder.decode_torch(batch_box_preds, batch_anchors)
        if dir_cls_preds is not None:
            dir_cls_preds = dir_cls_preds.view(batch_size, num_anchors, -1)
            dir_labels = torch.max(dir_cls_preds, dim=-1)[1]
            period = 2 * math.pi / self.num_dir_bins
            dir_rot = limit_period(batch_box_preds[..., 6] - self.dir_offset, self.dir_limit_offset, period)
            heading = dir_rot + self.dir_offset + period * dir_labels.to(batch_box_preds.dtype)
            batch_box_preds = torch.cat([batch_box_preds[..., :6], heading[..., None], batch_box_preds[..., 7:]], dim=-1)
        return batch_cls_preds, batch_box_preds

    def forward(self, **kwargs):
        raise NotImplementedError
