"""Geometry kernels: rotated IoU / NMS, points in boxes, voxelization (and `ops.sparse`).

Each op has a pure-PyTorch reference; compiled C++/CUDA kernels are used when `setup.py`
built them (see `_backend`). Set PCDET_EXT_OPS=reference to force the reference.
"""
from . import iou3d_nms, roiaware_pool3d, voxelize
from ._backend import available as compiled_backends
from .iou3d_nms import batched_nms, boxes_iou3d, boxes_iou_bev, boxes_overlap_bev, nms
from .roiaware_pool3d import points_in_boxes, points_in_boxes_mask
from .voxelize import dynamic_voxelize, hard_voxelize

__all__ = ['iou3d_nms', 'roiaware_pool3d', 'voxelize', 'compiled_backends', 'boxes_iou_bev',
           'boxes_overlap_bev', 'boxes_iou3d', 'nms', 'batched_nms', 'points_in_boxes',
           'points_in_boxes_mask', 'hard_voxelize', 'dynamic_voxelize']
