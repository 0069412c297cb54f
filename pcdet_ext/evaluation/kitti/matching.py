"""Per-frame matching of the KITTI protocol (numba), over all frames of a FramePack.

Semantics follow the devkit's computeStatistics:
- ignored_gt: 0 counts, 1 ignored (neighbour class, or too hard for the difficulty), -1 other.
- ignored_dt: 0 counts, 1 ignored (2D box lower than the difficulty's minimum height, any
  class), -1 other class.
- Threshold pass (compute_fp False): each ground truth, in order, takes the highest-scored
  free detection with overlap > min_overlap; true positives give the score thresholds.
- Counting pass (compute_fp True, one score threshold): each ground truth takes the free
  detection of largest overlap among counted ones, or else the first ignored one; matches
  involving an ignored side are neither TP nor FP; unmatched counted detections are FP
  unless (image boxes only) they lie in a DontCare region: intersection over the
  detection's own area > min_overlap.
"""
from __future__ import annotations

import numba
import numpy as np

_NO_DETECTION = -10000000.0
N_SAMPLE_PTS = 41


@numba.njit(cache=True)
def _frame_statistics(ov, base, n_gt_f, gt0, dt0, g_list, d_list, ignored_gt, ignored_dt, scores,
                      gt_alpha, dt_alpha, dc_ov, min_overlap, thresh, compute_fp, compute_aos,
                      tp_scores):
    """One frame at one threshold -> (tp, fp, fn, similarity, number of tp_scores written).

    g_list / d_list: global indices of the frame's ground truth / detections that are not -1,
    in file order; ov[base + (j - dt0) * n_gt_f + (i - gt0)] is overlap(detection j, gt i);
    dc_ov (len(d_list), n_dc) image overlap of each detection with each DontCare box over the
    detection's area (empty when DontCare does not apply).
    """
    nd = d_list.shape[0]
    assigned = np.zeros(nd, dtype=np.bool_)
    below = np.zeros(nd, dtype=np.bool_)
    if compute_fp:
        for k in range(nd):
            below[k] = scores[d_list[k]] < thresh
    tp = 0
    fp = 0
    fn = 0
    similarity = 0.0
    n_scores = 0
    for gi in g_list:
        best = -1
        best_val = _NO_DETECTION
        max_ov = 0.0
        took_ignored = False
        row0 = base + gi - gt0
        for k in range(nd):
            if assigned[k] or below[k]:
                continue
            j = d_list[k]
            o = ov[row0 + (j - dt0) * n_gt_f]
            if not o > min_overlap:
                continue
            if not compute_fp:
                if scores[j] > best_val:
                    best = k
                    best_val = scores[j]
            elif ignored_dt[j] == 0 and (o > max_ov or took_ignored):
                max_ov = o
                best = k
                best_val = 1.0
                took_ignored = False
            elif ignored_dt[j] == 1 and best_val == _NO_DETECTION:
                best = k
                best_val = 1.0
                took_ignored = True
        if best_val == _NO_DETECTION:
            if ignored_gt[gi] == 0:
                fn += 1
        elif ignored_gt[gi] == 1 or ignored_dt[d_list[best]] == 1:
            assigned[best] = True
        else:
            tp += 1
            j = d_list[best]
            tp_scores[n_scores] = scores[j]
            n_scores += 1
            if compute_aos:
                similarity += (1.0 + np.cos(gt_alpha[gi] - dt_alpha[j])) / 2.0
            assigned[best] = True
    if compute_fp:
        for k in range(nd):
            if not (assigned[k] or below[k]) and ignored_dt[d_list[k]] == 0:
                fp += 1
        n_stuff = 0
        for c in range(dc_ov.shape[1]):
            for k in range(nd):
                if assigned[k] or below[k] or ignored_dt[d_list[k]] != 0:
                    continue
                if dc_ov[k, c] > min_overlap:
                    assigned[k] = True
                    n_stuff += 1
        fp -= n_stuff
    return tp, fp, fn, similarity, n_scores


@numba.njit(cache=True)
def _relevant(lo, hi, ignored):
    n = 0
    for i in range(lo, hi):
        if ignored[i] != -1:
            n += 1
    out = np.empty(n, dtype=np.int64)
    n = 0
    for i in range(lo, hi):
        if ignored[i] != -1:
            out[n] = i
            n += 1
    return out


@numba.njit(cache=True)
def _dontcare_overlaps(d_list, dt_bbox, dc_bbox, c0, c1):
    """(len(d_list), c1 - c0): intersection over the detection's own area (criterion 0)."""
    out = np.zeros((d_list.shape[0], c1 - c0))
    for k in range(d_list.shape[0]):
        b = dt_bbox[d_list[k]]
        area = (b[2] - b[0]) * (b[3] - b[1])
        for c in range(c0, c1):
            q = dc_bbox[c]
            iw = min(b[2], q[2]) - max(b[0], q[0])
            if iw > 0:
                ih = min(b[3], q[3]) - max(b[1], q[1])
                if ih > 0:
                    out[k, c - c0] = iw * ih / area
    return out


@numba.njit(cache=True)
def threshold_scores(ov, pair_off, gt_off, dt_off, ignored_gt, ignored_dt, scores, min_overlap):
    """Scores of the true positives of the threshold pass, all frames (unsorted)."""
    out = np.empty(ignored_gt.shape[0], dtype=np.float64)
    n = 0
    empty_dc = np.zeros((0, 0))
    dummy = np.zeros(0)
    for f in range(gt_off.shape[0] - 1):
        g_list = _relevant(gt_off[f], gt_off[f + 1], ignored_gt)
        if g_list.shape[0] == 0:
            continue
        d_list = _relevant(dt_off[f], dt_off[f + 1], ignored_dt)
        if d_list.shape[0] == 0:
            continue
        r = _frame_statistics(ov, pair_off[f], gt_off[f + 1] - gt_off[f], gt_off[f], dt_off[f],
                              g_list, d_list, ignored_gt, ignored_dt, scores, dummy, dummy,
                              empty_dc, min_overlap, 0.0, False, False, out[n:])
        n += r[4]
    return out[:n]


@numba.njit(cache=True)
def sample_thresholds(scores, num_gt):
    """The 41-point sampling: from the TP scores (any order), keep scores whose recall is
    closest to each of 0, 1/40, ..., 1; returns them in descending order."""
    s = np.sort(scores)[::-1]
    m = s.shape[0]
    out = np.empty(m, dtype=np.float64)
    n = 0
    current = 0.0
    for i in range(m):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < m - 1 else l_recall
        if (r_recall - current) < (current - l_recall) and i < m - 1:
            continue
        out[n] = s[i]
        n += 1
        current += 1 / (N_SAMPLE_PTS - 1.0)
    return out[:n]


@numba.njit(cache=True)
def count_statistics(ov, pair_off, gt_off, dt_off, ignored_gt, ignored_dt, scores, gt_alpha,
                     dt_alpha, dt_bbox, dc_bbox, dc_off, use_dontcare, min_overlap, thresholds,
                     compute_aos):
    """(len(thresholds), 4) summed tp, fp, fn, similarity over all frames.

    Detections active at a threshold are those scoring >= it; the active sets are nested, so
    a frame is recomputed only when its active count changes between consecutive thresholds.
    """
    nt = thresholds.shape[0]
    pr = np.zeros((nt, 4))
    scratch = np.empty(ignored_gt.shape[0] + 1, dtype=np.float64)
    for f in range(gt_off.shape[0] - 1):
        g_list = _relevant(gt_off[f], gt_off[f + 1], ignored_gt)
        d_list = _relevant(dt_off[f], dt_off[f + 1], ignored_dt)
        if g_list.shape[0] == 0 and d_list.shape[0] == 0:
            continue
        if use_dontcare:
            dc_ov = _dontcare_overlaps(d_list, dt_bbox, dc_bbox, dc_off[f], dc_off[f + 1])
        else:
            dc_ov = np.zeros((d_list.shape[0], 0))
        prev = -1
        tp = fp = fn = 0
        sim = 0.0
        for t in range(nt):
            th = thresholds[t]
            active = 0
            for k in range(d_list.shape[0]):
                if scores[d_list[k]] >= th:
                    active += 1
            if active != prev:
                tp, fp, fn, sim, _ = _frame_statistics(
                    ov, pair_off[f], gt_off[f + 1] - gt_off[f], gt_off[f], dt_off[f], g_list,
                    d_list, ignored_gt, ignored_dt, scores, gt_alpha, dt_alpha, dc_ov,
                    min_overlap, th, True, compute_aos, scratch)
                prev = active
            pr[t, 0] += tp
            pr[t, 1] += fp
            pr[t, 2] += fn
            pr[t, 3] += sim
    return pr
