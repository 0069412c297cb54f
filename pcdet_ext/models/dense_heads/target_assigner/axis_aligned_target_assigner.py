"""SECOND's anchor target assignment: per class, anchors are matched to ground-truth boxes of that
class by nearest axis-aligned BEV IoU (or 3D IoU with MATCH_HEIGHT), with positive / negative
thresholds per class and a forced match of every gt box to its best anchor."""
from __future__ import annotations

import numpy as np
import torch

from ....geometry import boxes3d_nearest_bev_iou


class AxisAlignedTargetAssigner:
    def __init__(self, model_cfg, class_names, box_coder, match_height: bool = False):
        anchor_generator_cfg = model_cfg.ANCHOR_GENERATOR_CONFIG
        anchor_target_cfg = model_cfg.TARGET_ASSIGNER_CONFIG
        self.box_coder = box_coder
        self.match_height = match_height
        self.class_names = np.array(class_names)
        self.anchor_class_names = [cfg['class_name'] for cfg in anchor_generator_cfg]
        pos_fraction = anchor_target_cfg.get('POS_FRACTION', -1.0)
        self.pos_fraction = pos_fraction if pos_fraction >= 0 else None
        self.sample_size = anchor_target_cfg.get('SAMPLE_SIZE', 512)
        self.norm_by_num_examples = anchor_target_cfg.get('NORM_BY_NUM_EXAMPLES', False)
        self.matched_thresholds = {cfg['class_name']: cfg['matched_threshold'] for cfg in anchor_generator_cfg}
        self.unmatched_thresholds = {cfg['class_name']: cfg['unmatched_threshold'] for cfg in anchor_generator_cfg}
        self.use_multihead = model_cfg.get('USE_MULTIHEAD', False)
        if self.use_multihead:
            raise NotImplementedError('USE_MULTIHEAD is not supported by this AxisAlignedTargetAssigner')
        for name in self.anchor_class_names:
            if name not in class_names:
                raise ValueError(f'ANCHOR_GENERATOR_CONFIG class_name {name!r} is not in CLASS_NAMES {list(class_names)}')

    def assign_targets(self, all_anchors, gt_boxes_with_classes: torch.Tensor):
        """all_anchors: list (per class) of (nz, ny, nx, ns, nr, 7); gt_boxes_with_classes (B, M, 8) with
        the 1-based class index last, zero rows as padding.
        Returns box_cls_labels (B, N) (-1 ignore, 0 background, k class), box_reg_targets (B, N, code),
        reg_weights (B, N), N running over locations then classes then sizes/rotations."""
        batch_size = gt_boxes_with_classes.shape[0]
        gt_classes = gt_boxes_with_classes[:, :, -1]
        gt_boxes = gt_boxes_with_classes[:, :, :-1]
        cls_labels, bbox_targets, reg_weights = [], [], []
        for k in range(batch_size):
            cur_gt = gt_boxes[k]
            cnt = cur_gt.shape[0] - 1
            while cnt >= 0 and cur_gt[cnt].sum() == 0:  # strip the zero padding
                cnt -= 1
            cur_gt = cur_gt[:cnt + 1]
            cur_gt_classes = gt_classes[k][:cnt + 1].long()
            gt_names = self.class_names[(cur_gt_classes.cpu().numpy() - 1).clip(0)]
            target_list = []
            for anchor_class_name, anchors in zip(self.anchor_class_names, all_anchors):
                mask = torch.from_numpy(gt_names == anchor_class_name).to(cur_gt.device) \
                    if cur_gt.shape[0] > 0 else torch.zeros(0, dtype=torch.bool, device=cur_gt.device)
                feature_map_size = anchors.shape[:3]
                single = self.assign_targets_single(
                    anchors.view(-1, anchors.shape[-1]), cur_gt[mask], gt_classes=cur_gt_classes[mask],
                    matched_threshold=self.matched_thresholds[anchor_class_name],
                    unmatched_threshold=self.unmatched_thresholds[anchor_class_name])
                target_list.append({
                    'box_cls_labels': single['box_cls_labels'].view(*feature_map_size, -1),
                    'box_reg_targets': single['box_reg_targets'].view(*feature_map_size, -1, self.box_coder.code_size),
                    'reg_weights': single['reg_weights'].view(*feature_map_size, -1)})
            # Concatenate classes inside each location, matching the head's anchor layout.
            cls_labels.append(torch.cat([t['box_cls_labels'] for t in target_list], dim=-1).view(-1))
            bbox_targets.append(torch.cat([t['box_reg_targets'] for t in target_list], dim=-2)
                                .view(-1, self.box_coder.code_size))
            reg_weights.append(torch.cat([t['reg_weights'] for t in target_list], dim=-1).view(-1))
        return {'box_cls_labels': torch.stack(cls_labels, dim=0),
                'box_reg_targets': torch.stack(bbox_targets, dim=0),
                'reg_weights': torch.stack(reg_weights, dim=0)}

    def _overlaps(self, anchors, gt_boxes):
        if self.match_height:
            from ....ops.iou3d_nms import boxes_iou3d
            return boxes_iou3d(anchors[:, 0:7], gt_boxes[:, 0:7])
        return boxes3d_nearest_bev_iou(anchors[:, 0:7], gt_boxes[:, 0:7])

    def assign_targets_single(self, anchors, gt_boxes, gt_classes, matched_threshold=0.6, unmatched_threshold=0.45):
        num_anchors, num_gt = anchors.shape[0], gt_boxes.shape[0]
        device = anchors.device
        labels = torch.full((num_anchors,), -1, dtype=torch.int32, device=device)
        gt_ids = torch.full((num_anchors,), -1, dtype=torch.int32, device=device)
        gt_classes = gt_classes.to(torch.int32)
        if num_gt > 0 and num_anchors > 0:
            overlap = self._overlaps(anchors, gt_boxes)  # (num_anchors, num_gt)
            anchor_to_gt_max, anchor_to_gt_argmax = overlap.max(dim=1)
            gt_to_anchor_max = overlap.max(dim=0).values
            # Each gt box also claims its best anchor(s), even below matched_threshold (never a
            # gt box with no overlap at all).
            gt_to_anchor_max = torch.where(gt_to_anchor_max == 0, torch.full_like(gt_to_anchor_max, -1),
                                           gt_to_anchor_max)
            anchors_with_max_overlap = (overlap == gt_to_anchor_max[None]).nonzero()[:, 0]
            gt_inds_force = anchor_to_gt_argmax[anchors_with_max_overlap]
            labels[anchors_with_max_overlap] = gt_classes[gt_inds_force]
            gt_ids[anchors_with_max_overlap] = gt_inds_force.int()
            pos_inds = anchor_to_gt_max >= matched_threshold
            labels[pos_inds] = gt_classes[anchor_to_gt_argmax[pos_inds]]
            gt_ids[pos_inds] = anchor_to_gt_argmax[pos_inds].int()
            bg_inds = (anchor_to_gt_max < unmatched_threshold).nonzero()[:, 0]
        else:
            bg_inds = torch.arange(num_anchors, device=device)
        fg_inds = (labels > 0).nonzero()[:, 0]

        if self.pos_fraction is not None:
            num_fg = int(self.pos_fraction * self.sample_size)
            if len(fg_inds) > num_fg:  # disable the surplus positives at random
                disable = fg_inds[torch.randperm(len(fg_inds), device=device)[:len(fg_inds) - num_fg]]
                labels[disable] = -1
                fg_inds = (labels > 0).nonzero()[:, 0]
            num_bg = self.sample_size - int((labels > 0).sum())
            if len(bg_inds) > num_bg:
                labels[bg_inds[torch.randint(0, len(bg_inds), (num_bg,), device=device)]] = 0
            else:
                labels[bg_inds] = 0
        else:
            if num_gt == 0 or num_anchors == 0:
                labels[:] = 0
            else:
                labels[bg_inds] = 0
                labels[anchors_with_max_overlap] = gt_classes[gt_inds_force]

        bbox_targets = anchors.new_zeros((num_anchors, self.box_coder.code_size))
        if num_gt > 0 and num_anchors > 0:
            fg_gt_boxes = gt_boxes[anchor_to_gt_argmax[fg_inds], :]
            bbox_targets[fg_inds, :] = self.box_coder.encode_torch(fg_gt_boxes, anchors[fg_inds, :])

        reg_weights = anchors.new_zeros((num_anchors,))
        if self.norm_by_num_examples:
            num_examples = (labels >= 0).sum()
            num_examples = num_examples if num_examples > 1.0 else 1.0
            reg_weights[labels > 0] = 1.0 / num_examples
        else:
            reg_weights[labels > 0] = 1.0
        return {'box_cls_labels': labels, 'box_reg_targets': bbox_targets, 'reg_weights': reg_weights}
