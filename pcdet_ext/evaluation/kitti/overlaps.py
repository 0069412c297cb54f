"""Overlaps between detections and ground truth of the same frame, for every frame at once.

All frames are concatenated (`FramePack`); for frame f the detection x ground-truth block
(n_dt_f, n_gt_f) is stored row-major in a flat array at pair_off[f], so the matching kernels
read overlap(dt j, gt i) of frame f as flat[pair_off[f] + j * n_gt_f + i].

Metrics as the KITTI protocol: 0 image-box IoU, 1 BEV IoU, 2 3D IoU. BEV and 3D use the
rotated-rectangle intersection of `pcdet_ext.ops.iou3d_nms.boxes_overlap_bev`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from ...ops.iou3d_nms import boxes_overlap_bev

# Dense overlap calls cover several frames at once (one call per chunk rather than per
# frame); this bounds the (dt x gt) elements of one call.
_CHUNK_ELEMENTS = 1 << 16
_WIDTHS = {'bbox': 4, 'dimensions': 3, 'location': 3}


@contextlib.contextmanager
def _single_torch_thread():
    """The op calls here are many small tensors: one thread is several times faster than a
    thread pool (which spins, badly so when other processes share the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class FramePack:
    """Objects of all frames concatenated; *_off are (F + 1,) offsets into them."""
    gt: dict
    dt: dict
    gt_off: np.ndarray
    dt_off: np.ndarray
    pair_off: np.ndarray
    pair_dt: np.ndarray    # (P,) global detection index of each within-frame pair
    pair_gt: np.ndarray    # (P,) global ground-truth index of each pair

    @property
    def num_frames(self) -> int:
        return len(self.gt_off) - 1


def _concat(annos, keys):
    out = {}
    for k in keys:
        parts = [np.asarray(a[k]) for a in annos]
        if k == 'name':
            out[k] = np.concatenate([p.astype(str) for p in parts]) if parts else np.zeros(0, str)
        else:
            width = _WIDTHS.get(k)
            if width:
                parts = [p.reshape(-1, width) for p in parts]
            out[k] = (np.concatenate(parts).astype(np.float64) if parts
                      else np.zeros((0, width) if width else 0))
    return out


def _lower(names: np.ndarray) -> np.ndarray:
    """Lower-cased names (the protocol compares classes case-insensitively); via the few
    unique names, as np.char.lower over every object is slow."""
    uniq, inv = np.unique(names, return_inverse=True)
    return np.char.lower(uniq)[inv] if len(uniq) else names


def pack_frames(gt_annos, dt_annos) -> FramePack:
    keys = ('name', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions', 'location',
            'rotation_y')
    gt = _concat(gt_annos, keys)
    dt = _concat(dt_annos, keys + ('score',))
    gt['name_lower'] = _lower(gt['name'])
    dt['name_lower'] = _lower(dt['name'])
    n_gt = np.array([len(a['name']) for a in gt_annos], dtype=np.int64)
    n_dt = np.array([len(a['name']) for a in dt_annos], dtype=np.int64)
    gt_off = np.concatenate([[0], np.cumsum(n_gt)]).astype(np.int64)
    dt_off = np.concatenate([[0], np.cumsum(n_dt)]).astype(np.int64)
    n_pair = n_gt * n_dt
    pair_off = np.concatenate([[0], np.cumsum(n_pair)]).astype(np.int64)
    frame = np.repeat(np.arange(len(n_gt)), n_pair)
    k = np.arange(pair_off[-1], dtype=np.int64) - pair_off[frame]
    ng = np.maximum(n_gt[frame], 1)
    pair_dt = dt_off[frame] + k // ng
    pair_gt = gt_off[frame] + k % ng
    return FramePack(gt, dt, gt_off, dt_off, pair_off, pair_dt, pair_gt)


def image_box_iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of image boxes a[k], b[k] ((K, 4) x1 y1 x2 y2), 0 where they do not overlap."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = iw * ih
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
             - inter)
    ok = (iw > 0) & (ih > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def camera_boxes_to_bev(location: np.ndarray, dimensions: np.ndarray, rotation_y: np.ndarray):
    """Camera boxes -> the LiDAR-style (x, y, z, dx, dy, dz, heading) rows the BEV op takes.

    The ground plane of the rectified camera frame is (x, z); a camera box's length l runs
    along (cos ry, -sin ry) in that plane, so it is the BEV rectangle centred at (x, z) with
    dx = l, dy = w and heading -ry. z and dz are unused by the BEV overlap (set to 0 and 1).
    """
    n = location.shape[0]
    out = np.empty((n, 7), dtype=np.float64)
    out[:, 0] = location[:, 0]
    out[:, 1] = location[:, 2]
    out[:, 2] = 0.0
    out[:, 3] = dimensions[:, 0]
    out[:, 4] = dimensions[:, 2]
    out[:, 5] = 1.0
    out[:, 6] = -rotation_y
    return out


def _bev_intersections(pack: FramePack, dt_keep: np.ndarray, gt_keep: np.ndarray):
    """BEV intersection area of every within-frame pair (0 for pairs not kept).

    Pairs whose circumscribed circles are apart cannot intersect and are dropped first (cheap,
    vectorised). The boxes of the remaining pairs are sent to the dense op a chunk of frames
    at a time; each frame of a chunk is shifted along x by its own offset so boxes of
    different frames never touch and the op's bounding-box pre-test discards those pairs.
    Both boxes of a pair get the same shift, so their relative geometry (and identical
    boxes) is unchanged.
    """
    inter = np.zeros(len(pack.pair_dt), dtype=np.float64)
    gt_bev = camera_boxes_to_bev(pack.gt['location'], pack.gt['dimensions'], pack.gt['rotation_y'])
    dt_bev = camera_boxes_to_bev(pack.dt['location'], pack.dt['dimensions'], pack.dt['rotation_y'])
    pdt, pgt = pack.pair_dt, pack.pair_gt
    pair_ok = dt_keep[pdt] & gt_keep[pgt]
    reach_dt = 0.5 * np.hypot(dt_bev[:, 3], dt_bev[:, 4])
    reach_gt = 0.5 * np.hypot(gt_bev[:, 3], gt_bev[:, 4])
    dist = np.hypot(dt_bev[pdt, 0] - gt_bev[pgt, 0], dt_bev[pdt, 1] - gt_bev[pgt, 1])
    pair_ok &= dist <= (reach_dt[pdt] + reach_gt[pgt]) * (1 + 1e-9) + 1e-9
    sel_all = np.nonzero(pair_ok)[0]
    if not len(sel_all):
        return inter

    used_dt = np.zeros(len(dt_bev), bool)
    used_gt = np.zeros(len(gt_bev), bool)
    used_dt[pdt[sel_all]] = True
    used_gt[pgt[sel_all]] = True
    kept_rows = np.concatenate([gt_bev[used_gt], dt_bev[used_dt]])
    spacing = 4.0 * (np.abs(kept_rows[:, :2]).max() + np.hypot(kept_rows[:, 3], kept_rows[:, 4]).max()) + 10.0

    # Chunks of consecutive frames whose (used dt x used gt) block stays bounded.
    ck_dt = np.concatenate([[0], np.cumsum(used_dt)])
    ck_gt = np.concatenate([[0], np.cumsum(used_gt)])
    n_dt_f = ck_dt[pack.dt_off[1:]] - ck_dt[pack.dt_off[:-1]]
    n_gt_f = ck_gt[pack.gt_off[1:]] - ck_gt[pack.gt_off[:-1]]
    frame_of_sel = np.searchsorted(pack.pair_off, sel_all, side='right') - 1
    f, nf = 0, pack.num_frames
    with _single_torch_thread():
        while f < nf:
            f = _chunk_intersections(pack, f, n_dt_f, n_gt_f, used_dt, used_gt, dt_bev, gt_bev,
                                     sel_all, frame_of_sel, spacing, inter)
    return inter


def _chunk_intersections(pack, f, n_dt_f, n_gt_f, used_dt, used_gt, dt_bev, gt_bev, sel_all,
                         frame_of_sel, spacing, inter) -> int:
    """One dense op call for frames f.. (as many as _CHUNK_ELEMENTS allows); fills inter for
    their selected pairs; returns the first frame after the chunk."""
    nf = pack.num_frames
    pdt, pgt = pack.pair_dt, pack.pair_gt
    g = f
    cdt = cgt = 0
    while g < nf and (g == f or (cdt + n_dt_f[g]) * (cgt + n_gt_f[g]) <= _CHUNK_ELEMENTS):
        cdt += n_dt_f[g]
        cgt += n_gt_f[g]
        g += 1
    lo, hi = np.searchsorted(frame_of_sel, [f, g])
    if hi > lo:
        sel = sel_all[lo:hi]
        d_idx = np.nonzero(used_dt[pack.dt_off[f]:pack.dt_off[g]])[0] + pack.dt_off[f]
        g_idx = np.nonzero(used_gt[pack.gt_off[f]:pack.gt_off[g]])[0] + pack.gt_off[f]
        a = dt_bev[d_idx].copy()
        b = gt_bev[g_idx].copy()
        a[:, 0] += (np.searchsorted(pack.dt_off, d_idx, side='right') - 1 - f) * spacing
        b[:, 0] += (np.searchsorted(pack.gt_off, g_idx, side='right') - 1 - f) * spacing
        dense = np.asarray(boxes_overlap_bev(a, b))
        inter[sel] = dense[np.searchsorted(d_idx, pdt[sel]), np.searchsorted(g_idx, pgt[sel])]
    return g


def compute_overlaps(pack: FramePack, dt_keep=None, gt_keep=None) -> dict:
    """Flat within-frame overlaps for the three metrics: {0: image IoU, 1: BEV IoU, 2: 3D IoU}.

    dt_keep / gt_keep (bool masks over all objects) restrict the rotated computations to
    objects that can take part in the evaluated classes; other pairs get 0.
    """
    gt, dt = pack.gt, pack.dt
    n_dt, n_gt = len(dt['name']), len(gt['name'])
    dt_keep = np.ones(n_dt, bool) if dt_keep is None else dt_keep
    gt_keep = np.ones(n_gt, bool) if gt_keep is None else gt_keep
    pdt, pgt = pack.pair_dt, pack.pair_gt
    out = {0: image_box_iou_pairs(dt['bbox'][pdt], gt['bbox'][pgt])}

    inter = _bev_intersections(pack, dt_keep, gt_keep)
    ld, wd = dt['dimensions'][pdt, 0], dt['dimensions'][pdt, 2]
    lg, wg = gt['dimensions'][pgt, 0], gt['dimensions'][pgt, 2]
    union = ld * wd + lg * wg - inter
    pos = inter > 0
    out[1] = np.where(pos, inter / np.where(pos, union, 1.0), 0.0)

    # 3D: BEV intersection times the overlap along camera y (down; location is the bottom
    # centre, so a box spans [y - h, y]).
    yd, hd = dt['location'][pdt, 1], dt['dimensions'][pdt, 1]
    yg, hg = gt['location'][pgt, 1], gt['dimensions'][pgt, 1]
    ih = np.minimum(yd, yg) - np.maximum(yd - hd, yg - hg)
    inc = inter * ih
    vol = ld * hd * wd + lg * hg * wg - inc
    pos3 = pos & (ih > 0)
    out[2] = np.where(pos3, inc / np.where(pos3, vol, 1.0), 0.0)
    return out
