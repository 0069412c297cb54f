"""Rotated BEV / 3D IoU of LiDAR boxes and rotated NMS (OpenPCDet's `iou3d_nms_utils` API).

Boxes are LiDAR boxes (x, y, z, dx, dy, dz, heading), extra columns ignored. Every function
accepts numpy arrays (returns numpy) or torch tensors (returns torch, same device).
Geometry is computed in float64 whatever the input dtype; results come back in boxes_a's dtype.

Reference algorithm (pure PyTorch, vectorised): cheap bounding-box and bounding-circle tests
keep only pairs that can overlap (in chunks, so memory stays bounded for 20k boxes); for those, the intersection polygon of the two rectangles is
the convex hull of (corners of A inside B) + (corners of B inside A) + (edge crossings); its
vertices are sorted by angle around their mean and the shoelace formula gives the area.
Work is done in A's frame, scaled by the largest half-extent, so tiny and huge boxes get the
same relative accuracy. The compiled kernels clip B's rectangle against A's four half-planes
(Sutherland-Hodgman) in the same frame; both agree to ~1e-12.
"""
from __future__ import annotations

import numpy as np
import torch

from . import _backend
from ._inputs import as_tensor, back, boxes_arg, same_device, scores_arg

__all__ = ['boxes_iou_bev', 'boxes_overlap_bev', 'boxes_iou3d', 'nms', 'batched_nms']

_PAIR_CHUNK = 1 << 17      # candidate pairs processed at once (bounded memory, ~200 MB peak)
_MASK_CHUNK = 1 << 22      # elements of the (rows, M) bounding-box mask at once
_EPS = 1e-9                # inclusion slack, in units of the pair's largest half-extent
_SX = (1.0, -1.0, -1.0, 1.0)   # rectangle corners, counter-clockwise
_SY = (1.0, 1.0, -1.0, -1.0)


# ---------------------------------------------------------------- reference geometry
def _aabb(b: torch.Tensor):
    """(N, 7) float64 -> (N, 4) xmin, xmax, ymin, ymax of the rotated BEV rectangle."""
    c, s = torch.cos(b[:, 6]).abs(), torch.sin(b[:, 6]).abs()
    hx = 0.5 * (b[:, 3] * c + b[:, 4] * s)
    hy = 0.5 * (b[:, 3] * s + b[:, 4] * c)
    return torch.stack([b[:, 0] - hx, b[:, 0] + hx, b[:, 1] - hy, b[:, 1] + hy], 1)


def _candidate_pairs(a: torch.Tensor, b: torch.Tensor, upper: bool = False):
    """Index pairs (i, j) whose bounding boxes and bounding circles touch or overlap;
    `upper` keeps only j > i (a and b are then the same set)."""
    ba, bb = _aabb(a), _aabb(b)
    ra = 0.5 * torch.hypot(a[:, 3], a[:, 4]) * (1 + 1e-9) + 1e-12
    rb = 0.5 * torch.hypot(b[:, 3], b[:, 4]) * (1 + 1e-9) + 1e-12
    slack = 1e-9 * (a[:, 3:5].abs().amax(1) + 1)
    rows = max(1, _MASK_CHUNK // max(1, b.shape[0]))
    out_i, out_j = [], []
    for r0 in range(0, a.shape[0], rows):
        r = slice(r0, r0 + rows)
        c0 = r0 + 1 if upper else 0          # upper triangle: columns after the first row only
        pa, qb, sl = ba[r, :, None], bb[c0:], slack[r, None]
        m = ((pa[:, 0] <= qb[None, :, 1] + sl) & (qb[None, :, 0] <= pa[:, 1] + sl)
             & (pa[:, 2] <= qb[None, :, 3] + sl) & (qb[None, :, 2] <= pa[:, 3] + sl))
        if upper:
            m &= (torch.arange(c0, b.shape[0], device=a.device)[None, :]
                  > torch.arange(r0, r0 + m.shape[0], device=a.device)[:, None])
        i, j = torch.nonzero(m, as_tuple=True)
        i, j = i + r0, j + c0
        near = torch.hypot(a[i, 0] - b[j, 0], a[i, 1] - b[j, 1]) <= ra[i] + rb[j]
        out_i.append(i[near])
        out_j.append(j[near])
    if not out_i:
        e = torch.zeros(0, dtype=torch.long, device=a.device)
        return e, e
    return torch.cat(out_i), torch.cat(out_j)


def _line_crossings(px, py, ex, ey, c, along_x: bool, half_other):
    """Crossings of segments P + t*E (t in [0, 1]) with the line x = c (along_x) or y = c."""
    d = ex if along_x else ey
    p0 = px if along_x else py
    q0 = py if along_x else px
    e_other = ey if along_x else ex
    ok = d.abs() > 1e-15
    t = (c - p0) / torch.where(ok, d, torch.ones_like(d))
    other = q0 + t * e_other
    ok = ok & (t >= -_EPS) & (t <= 1 + _EPS) & (other.abs() <= half_other + _EPS)
    cc = c.expand_as(other)
    return (cc, other, ok) if along_x else (other, cc, ok)


def _pair_overlap(pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """Intersection area of BEV rectangles pa[k], pb[k] ((K, 7) float64) -> (K,)."""
    ax, ay, bx, by = pa[:, 3] / 2, pa[:, 4] / 2, pb[:, 3] / 2, pb[:, 4] / 2
    scale = torch.stack([ax, ay, bx, by], 1).amax(1).clamp_min(1e-300)
    ax, ay, bx, by = (v / scale for v in (ax, ay, bx, by))
    ca, sa = torch.cos(pa[:, 6]), torch.sin(pa[:, 6])
    dx, dy = (pb[:, 0] - pa[:, 0]) / scale, (pb[:, 1] - pa[:, 1]) / scale
    cx, cy = dx * ca + dy * sa, -dx * sa + dy * ca          # B's centre in A's frame
    dh = pb[:, 6] - pa[:, 6]
    cd, sd = torch.cos(dh)[:, None], torch.sin(dh)[:, None]
    sx = torch.tensor(_SX, dtype=pa.dtype, device=pa.device)
    sy = torch.tensor(_SY, dtype=pa.dtype, device=pa.device)
    lx, ly = sx * bx[:, None], sy * by[:, None]
    bxs = cx[:, None] + lx * cd - ly * sd                    # B's corners in A's frame
    bys = cy[:, None] + lx * sd + ly * cd
    axs, ays = sx * ax[:, None], sy * ay[:, None]            # A's corners
    qx, qy = axs - cx[:, None], ays - cy[:, None]
    ux, uy = qx * cd + qy * sd, -qx * sd + qy * cd           # A's corners in B's frame
    ax_, ay_, bx_, by_ = ax[:, None], ay[:, None], bx[:, None], by[:, None]
    xs, ys, oks = [bxs, axs], [bys, ays], [
        (bxs.abs() <= ax_ + _EPS) & (bys.abs() <= ay_ + _EPS),
        (ux.abs() <= bx_ + _EPS) & (uy.abs() <= by_ + _EPS)]
    ex, ey = bxs.roll(-1, 1) - bxs, bys.roll(-1, 1) - bys
    for c, along_x, half in ((ax_, True, ay_), (-ax_, True, ay_), (ay_, False, ax_), (-ay_, False, ax_)):
        x, y, ok = _line_crossings(bxs, bys, ex, ey, c, along_x, half)
        xs.append(x)
        ys.append(y)
        oks.append(ok)
    x, y, ok = torch.cat(xs, 1), torch.cat(ys, 1), torch.cat(oks, 1)   # (K, 24)
    n = ok.sum(1)
    okf = ok.to(x.dtype)
    mx = (x * okf).sum(1, keepdim=True) / n.clamp_min(1)[:, None]
    my = (y * okf).sum(1, keepdim=True) / n.clamp_min(1)[:, None]
    x, y = x - mx, y - my
    ang = torch.where(ok, torch.atan2(y, x), torch.full_like(x, 10.0))
    order = ang.argsort(1)
    x, y, ok = x.gather(1, order), y.gather(1, order), ok.gather(1, order)
    x = torch.where(ok, x, x[:, :1])   # unused slots repeat the first vertex: zero-length edges
    y = torch.where(ok, y, y[:, :1])
    area = 0.5 * (x * y.roll(-1, 1) - x.roll(-1, 1) * y).sum(1).abs()
    area = torch.where(n >= 3, area, torch.zeros_like(area)) * scale * scale
    return torch.minimum(area, torch.minimum(pa[:, 3] * pa[:, 4], pb[:, 3] * pb[:, 4]))


def _overlap_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=a.device)
    i, j = _candidate_pairs(a, b)
    for k in range(0, i.numel(), _PAIR_CHUNK):
        ii, jj = i[k:k + _PAIR_CHUNK], j[k:k + _PAIR_CHUNK]
        out[ii, jj] = _pair_overlap(a[ii], b[jj])
    return out


# ---------------------------------------------------------------- dispatch helpers
def _two_box_sets(boxes_a, boxes_b):
    a, was_np = boxes_arg(boxes_a, 'boxes_a')
    b, _ = boxes_arg(boxes_b, 'boxes_b')
    if isinstance(boxes_b, np.ndarray) and not was_np:
        b = b.to(a.device)
    same_device(a, b, 'boxes_a, boxes_b')
    return a, b, was_np


def _overlap64(a: torch.Tensor, b: torch.Tensor, op: str, iou: bool = False) -> torch.Tensor:
    """(N, M) float64 BEV intersection areas, or IoU when `iou`."""
    a64 = a[:, :7].to(torch.float64).contiguous()
    b64 = b[:, :7].to(torch.float64).contiguous()
    if a64.shape[0] == 0 or b64.shape[0] == 0:
        return torch.zeros(a64.shape[0], b64.shape[0], dtype=torch.float64, device=a.device)
    mod = _backend.pick(op, a.device)
    if mod is not None:
        return mod.overlap_bev(a64, b64, iou)
    inter = _overlap_reference(a64, b64)
    if not iou:
        return inter
    area_a, area_b = (a64[:, 3] * a64[:, 4])[:, None], (b64[:, 3] * b64[:, 4])[None, :]
    return _safe_div(inter, area_a + area_b - inter)


def _out_dtype(a: torch.Tensor):
    return a.dtype if a.dtype in (torch.float32, torch.float64) else torch.float32


def _safe_div(num, den):
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


# ---------------------------------------------------------------- public API
def boxes_overlap_bev(boxes_a, boxes_b):
    """(N, 7), (M, 7) -> (N, M) BEV intersection areas of the rotated rectangles."""
    a, b, was_np = _two_box_sets(boxes_a, boxes_b)
    return back(_overlap64(a, b, 'boxes_overlap_bev').to(_out_dtype(a)), was_np)


def boxes_iou_bev(boxes_a, boxes_b):
    """(N, 7), (M, 7) -> (N, M) exact rotated BEV IoU. Zero-area pairs give 0 (never NaN)."""
    a, b, was_np = _two_box_sets(boxes_a, boxes_b)
    iou = _overlap64(a, b, 'boxes_iou_bev', iou=True)
    return back(iou.to(_out_dtype(a)), was_np)


def boxes_iou3d(boxes_a, boxes_b):
    """(N, 7), (M, 7) -> (N, M) 3D IoU: BEV overlap x height overlap over the union volume."""
    a, b, was_np = _two_box_sets(boxes_a, boxes_b)
    inter_bev = _overlap64(a, b, 'boxes_iou3d')
    a64, b64 = a[:, :7].double(), b[:, :7].double()
    top = torch.minimum((a64[:, 2] + a64[:, 5] / 2)[:, None], (b64[:, 2] + b64[:, 5] / 2)[None, :])
    bot = torch.maximum((a64[:, 2] - a64[:, 5] / 2)[:, None], (b64[:, 2] - b64[:, 5] / 2)[None, :])
    inter = inter_bev * (top - bot).clamp_min(0)
    vol_a = (a64[:, 3] * a64[:, 4] * a64[:, 5])[:, None]
    vol_b = (b64[:, 3] * b64[:, 4] * b64[:, 5])[None, :]
    iou = _safe_div(inter, vol_a + vol_b - inter)
    return back(iou.to(_out_dtype(a)), was_np)


def _nms_reference(b: torch.Tensor, thresh: float) -> torch.Tensor:
    """Greedy NMS over boxes already sorted by descending score; -> kept positions."""
    n = b.shape[0]
    i, j = _candidate_pairs(b, b, upper=True)
    src, dst = [], []
    for k in range(0, i.numel(), _PAIR_CHUNK):
        ii, jj = i[k:k + _PAIR_CHUNK], j[k:k + _PAIR_CHUNK]
        inter = _pair_overlap(b[ii], b[jj])
        union = b[ii, 3] * b[ii, 4] + b[jj, 3] * b[jj, 4] - inter
        hit = _safe_div(inter, union) > thresh
        src.append(ii[hit])
        dst.append(jj[hit])
    src = torch.cat(src).cpu().numpy() if src else np.zeros(0, np.int64)
    dst = torch.cat(dst).cpu().numpy() if dst else np.zeros(0, np.int64)
    # Suppression edges as CSR (src < dst), then one greedy pass in score order.
    order = np.argsort(src, kind='stable')
    src, dst = src[order], dst[order]
    ptr = np.searchsorted(src, np.arange(n + 1))
    has_edges = ptr[1:] > ptr[:-1]
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for k in range(n):
        if suppressed[k]:
            continue
        keep.append(k)
        if has_edges[k]:
            suppressed[dst[ptr[k]:ptr[k + 1]]] = True
    return torch.as_tensor(np.asarray(keep, dtype=np.int64), device=b.device)


def nms(boxes, scores, thresh: float, pre_max_size=None, post_max_size=None):
    """Rotated (BEV) greedy NMS. A box is suppressed by a kept, higher-scored box when their
    BEV IoU > thresh. Returns kept indices into `boxes` (LongTensor / int64 array), by
    descending score (ties keep input order). pre_max_size: consider only the top-k scores."""
    b, was_np = boxes_arg(boxes, 'boxes')
    s = scores_arg(scores, b.shape[0], b.device)
    try:
        thresh = float(thresh)
    except (TypeError, ValueError):
        raise ValueError(f'thresh: expected a number, got {thresh!r}') from None
    if not np.isfinite(thresh):
        raise ValueError(f'thresh: must be finite, got {thresh}')
    if b.shape[0] == 0:
        return back(torch.zeros(0, dtype=torch.long, device=b.device), was_np)
    order = torch.sort(s, descending=True, stable=True).indices
    if pre_max_size is not None:
        order = order[:int(pre_max_size)]
    sorted64 = b[order, :7].to(torch.float64).contiguous()
    mod = _backend.pick('nms', b.device)
    kept = mod.nms(sorted64, thresh) if mod is not None else _nms_reference(sorted64, thresh)
    keep = order[kept.to(order.device)]
    if post_max_size is not None:
        keep = keep[:int(post_max_size)]
    return back(keep, was_np)


def batched_nms(boxes, scores, labels, thresh: float, pre_max_size=None, post_max_size=None):
    """Class-aware NMS: boxes only suppress boxes of the same label. Returns kept indices
    by descending score, as `nms`."""
    b, was_np = boxes_arg(boxes, 'boxes')
    s = scores_arg(scores, b.shape[0], b.device)
    lab, _ = as_tensor(labels, 'labels')
    if lab.ndim != 1 or lab.shape[0] != b.shape[0]:
        raise ValueError(f'labels: expected shape ({b.shape[0]},) to match the boxes, got {tuple(lab.shape)}')
    if lab.dtype.is_floating_point or lab.dtype == torch.bool:
        raise ValueError(f'labels: expected an integer dtype, got {lab.dtype}')
    lab = lab.to(b.device)
    keeps = []
    for c in torch.unique(lab).tolist():
        idx = torch.nonzero(lab == c, as_tuple=True)[0]
        k = nms(b[idx], s[idx], thresh, pre_max_size=pre_max_size)
        keeps.append(idx[k])
    if not keeps:
        return back(torch.zeros(0, dtype=torch.long, device=b.device), was_np)
    keep = torch.cat(keeps).sort().values   # input order first, so equal scores tie-break by index
    keep = keep[torch.sort(s[keep], descending=True, stable=True).indices]
    if post_max_size is not None:
        keep = keep[:int(post_max_size)]
    return back(keep, was_np)
