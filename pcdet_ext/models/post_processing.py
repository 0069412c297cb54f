"""Score thresholding + rotated NMS on decoded boxes (OpenPCDet's model_nms_utils), and recall records."""
from __future__ import annotations

import torch

from ..ops import iou3d_nms

# OpenPCDet's NMS_TYPE names -> whether boxes keep their heading ('nms_normal_gpu' is axis-aligned).
_NMS_TYPES = {'nms_gpu': True, 'nms': True, 'nms_normal_gpu': False}


def check_nms_type(nms_type: str) -> str:
    if nms_type not in _NMS_TYPES:
        raise KeyError(f'POST_PROCESSING.NMS_CONFIG.NMS_TYPE: unknown NMS type {nms_type!r}; '
                       f'available: {sorted(_NMS_TYPES)}')
    return nms_type


def _run_nms(boxes, scores, nms_type, thresh):
    if not _NMS_TYPES[check_nms_type(nms_type)]:
        boxes = torch.cat([boxes[:, :6], torch.zeros_like(boxes[:, 6:7])], dim=1)
    keep = iou3d_nms.nms(boxes[:, 0:7].contiguous(), scores, thresh)
    return torch.as_tensor(keep, dtype=torch.long, device=boxes.device)


def class_agnostic_nms(box_scores, box_preds, nms_config, score_thresh=None):
    """box_scores (N,), box_preds (N, 7+) -> (selected indices into the inputs, their scores)."""
    src_box_scores = box_scores
    if score_thresh is not None:
        scores_mask = box_scores >= score_thresh
        box_scores = box_scores[scores_mask]
        box_preds = box_preds[scores_mask]
    selected = torch.zeros(0, dtype=torch.long, device=box_scores.device)
    if box_scores.shape[0] > 0:
        box_scores_nms, indices = torch.topk(box_scores, k=min(int(nms_config.NMS_PRE_MAXSIZE), box_scores.shape[0]))
        keep_idx = _run_nms(box_preds[indices], box_scores_nms, nms_config.NMS_TYPE, nms_config.NMS_THRESH)
        selected = indices[keep_idx[:int(nms_config.NMS_POST_MAXSIZE)]]
    if score_thresh is not None:
        selected = scores_mask.nonzero().view(-1)[selected]
    return selected, src_box_scores[selected]


def multi_classes_nms(cls_scores, box_preds, nms_config, score_thresh=None):
    """NMS per class. cls_scores (N, C) -> scores, 0-based labels, boxes and the selected row indices."""
    pred_scores, pred_labels, pred_boxes, pred_idx = [], [], [], []
    for k in range(cls_scores.shape[1]):
        if score_thresh is not None:
            rows = (cls_scores[:, k] >= score_thresh).nonzero().view(-1)
        else:
            rows = torch.arange(cls_scores.shape[0], device=cls_scores.device)
        box_scores = cls_scores[rows, k]
        if box_scores.shape[0] == 0:
            continue
        box_scores_nms, indices = torch.topk(box_scores, k=min(int(nms_config.NMS_PRE_MAXSIZE), box_scores.shape[0]))
        keep_idx = _run_nms(box_preds[rows[indices]], box_scores_nms, nms_config.NMS_TYPE, nms_config.NMS_THRESH)
        selected = rows[indices[keep_idx[:int(nms_config.NMS_POST_MAXSIZE)]]]
        pred_scores.append(cls_scores[selected, k])
        pred_labels.append(torch.full_like(selected, k))
        pred_boxes.append(box_preds[selected])
        pred_idx.append(selected)
    if not pred_scores:
        empty = torch.zeros(0, dtype=torch.long, device=cls_scores.device)
        return cls_scores.new_zeros(0), empty, box_preds.new_zeros((0, box_preds.shape[1])), empty
    return torch.cat(pred_scores), torch.cat(pred_labels), torch.cat(pred_boxes), torch.cat(pred_idx)


def generate_recall_record(box_preds, recall_dict, batch_index, data_dict=None, thresh_list=None):
    """Accumulate, per IoU threshold, how many gt boxes of the frame some predicted box covers (3D IoU)."""
    if 'gt_boxes' not in data_dict:
        return recall_dict
    rois = data_dict['rois'][batch_index] if 'rois' in data_dict else None
    gt_boxes = data_dict['gt_boxes'][batch_index]
    if len(recall_dict) == 0:
        recall_dict = {'gt': 0}
        for t in thresh_list:
            recall_dict['roi_%s' % str(t)] = 0
            recall_dict['rcnn_%s' % str(t)] = 0
    k = gt_boxes.shape[0] - 1
    while k >= 0 and gt_boxes[k].sum() == 0:
        k -= 1
    cur_gt = gt_boxes[:k + 1]
    if cur_gt.shape[0] > 0:
        if box_preds.shape[0] > 0:
            iou3d_rcnn = iou3d_nms.boxes_iou3d(box_preds[:, 0:7], cur_gt[:, 0:7])
        else:
            iou3d_rcnn = torch.zeros((0, cur_gt.shape[0]), device=box_preds.device)
        iou3d_roi = iou3d_nms.boxes_iou3d(rois[:, 0:7], cur_gt[:, 0:7]) if rois is not None else None
        for t in thresh_list:
            if iou3d_rcnn.shape[0] > 0:
                recall_dict['rcnn_%s' % str(t)] += int((iou3d_rcnn.max(dim=0)[0] > t).sum().item())
            if iou3d_roi is not None and iou3d_roi.shape[0] > 0:
                recall_dict['roi_%s' % str(t)] += int((iou3d_roi.max(dim=0)[0] > t).sum().item())
        recall_dict['gt'] += cur_gt.shape[0]
    return recall_dict
