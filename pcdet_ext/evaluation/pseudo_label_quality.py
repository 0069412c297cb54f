"""Per-object quality of 3D pseudo-labels (ALPI) against ground truth.

AP says little on small sets (the KITTI protocol caps AP near (true positives) / 40 when a
class has fewer than 40 objects, see docs/evaluation.md), and nothing about *how* wrong a box
is. Here every pseudo-label is matched one-to-one to a ground-truth box of its class in the
same frame (greedy by BEV IoU, largest first), and each match reports its 3D IoU, BEV IoU,
centre error, size error and heading error; recall at IoU 0.5 / 0.7 is the share of ground
truth whose match reaches that 3D (or BEV) IoU.

    stats = pseudo_label_quality(gt_annos, dt_annos, ['Car', 'Pedestrian', 'Cyclist'])
    plot_quality_histograms(stats, 'quality.png')
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .kitti.annotations import validate_annos
from .kitti.overlaps import compute_overlaps, pack_frames

RECALL_IOUS = (0.5, 0.7)
_PER_OBJECT = ('iou_3d', 'iou_bev', 'centre_error', 'size_error', 'heading_error', 'frame',
               'gt_index', 'dt_index')


def _greedy_match(ov_bev, pair_off, gt_off, dt_off, gt_ok, dt_ok):
    """One-to-one matches per frame by descending BEV IoU (> 0) among allowed objects.
    Returns (pair indices, global gt indices, global dt indices)."""
    pairs, gts, dts = [], [], []
    for f in range(len(gt_off) - 1):
        ng, nd = gt_off[f + 1] - gt_off[f], dt_off[f + 1] - dt_off[f]
        if ng == 0 or nd == 0:
            continue
        block = ov_bev[pair_off[f]:pair_off[f + 1]].reshape(nd, ng).copy()
        block[~dt_ok[dt_off[f]:dt_off[f + 1]], :] = 0.0
        block[:, ~gt_ok[gt_off[f]:gt_off[f + 1]]] = 0.0
        # Candidates sorted once by IoU (stable: ties keep detection-major order).
        flat = np.argsort(-block, axis=None, kind='stable')
        used_d = np.zeros(nd, bool)
        used_g = np.zeros(ng, bool)
        for k in flat:
            j, i = divmod(int(k), ng)
            if block[j, i] <= 0:
                break
            if used_d[j] or used_g[i]:
                continue
            used_d[j] = used_g[i] = True
            pairs.append(pair_off[f] + k)
            gts.append(gt_off[f] + i)
            dts.append(dt_off[f] + j)
    as_idx = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return as_idx(pairs), as_idx(gts), as_idx(dts)


def _wrap_abs(angle):
    """|angle| wrapped to [0, pi]."""
    return np.abs((angle + np.pi) % (2 * np.pi) - np.pi)


def _summary(per, n_gt, n_dt):
    out = {'n_gt': int(n_gt), 'n_dt': int(n_dt), 'n_matched': int(len(per['iou_3d']))}
    for thr in RECALL_IOUS:
        for kind in ('3d', 'bev'):
            hits = int((per[f'iou_{kind}'] >= thr).sum())
            out[f'recall_{kind}@{thr}'] = hits / n_gt if n_gt else 0.0
            out[f'precision_{kind}@{thr}'] = hits / n_dt if n_dt else 0.0
    for key in ('iou_3d', 'iou_bev', 'centre_error', 'heading_error'):
        v = per[key]
        out[f'mean_{key}'] = float(v.mean()) if len(v) else float('nan')
        out[f'median_{key}'] = float(np.median(v)) if len(v) else float('nan')
    se = per['size_error']
    for d, name in enumerate('lhw'):
        out[f'mean_size_error_{name}'] = float(se[:, d].mean()) if len(se) else float('nan')
    return out


def pseudo_label_quality(gt_annos, dt_annos, classes=('Car', 'Pedestrian', 'Cyclist')) -> dict:
    """Per-class quality of dt_annos (pseudo-labels, any 'score') against gt_annos.

    Returns {class: summary} where the summary holds n_gt, n_dt, n_matched,
    recall_{3d,bev}@{0.5,0.7}, precision_{3d,bev}@{0.5,0.7}, mean_/median_ of iou_3d, iou_bev,
    centre_error (m, box centres), heading_error (rad, in [0, pi]), mean_size_error_{l,h,w}
    (m), and 'per_object': arrays over matches (iou_3d, iou_bev, centre_error,
    size_error (N, 3) |dl|, |dh|, |dw|, heading_error, frame, gt_index, dt_index; indices
    within the frame). Names are compared case-sensitively; DontCare never matches.
    """
    dt_annos = [a if 'score' in a else {**a, 'score': np.zeros(len(a['name']))} for a in dt_annos]
    validate_annos(list(gt_annos), list(dt_annos))
    if isinstance(classes, str):
        classes = [classes]
    pack = pack_frames(gt_annos, dt_annos)
    gt_names, dt_names = pack.gt['name'], pack.dt['name']
    wanted = np.asarray(list(classes))
    overlaps = compute_overlaps(pack, np.isin(dt_names, wanted), np.isin(gt_names, wanted))
    gt_frame = np.searchsorted(pack.gt_off, np.arange(len(gt_names)), side='right') - 1
    dt_frame = np.searchsorted(pack.dt_off, np.arange(len(dt_names)), side='right') - 1

    def centre(obj, idx):
        c = obj['location'][idx].copy()
        c[:, 1] -= obj['dimensions'][idx, 1] / 2  # bottom centre -> box centre (y down)
        return c

    result = {}
    for cls in classes:
        gt_ok, dt_ok = gt_names == cls, dt_names == cls
        pairs, gi, di = _greedy_match(overlaps[1], pack.pair_off, pack.gt_off, pack.dt_off,
                                      gt_ok, dt_ok)
        per = {
            'iou_3d': overlaps[2][pairs],
            'iou_bev': overlaps[1][pairs],
            'centre_error': np.linalg.norm(centre(pack.dt, di) - centre(pack.gt, gi), axis=1),
            'size_error': np.abs(pack.dt['dimensions'][di] - pack.gt['dimensions'][gi]),
            'heading_error': _wrap_abs(pack.dt['rotation_y'][di] - pack.gt['rotation_y'][gi]),
            'frame': gt_frame[gi],
            'gt_index': gi - pack.gt_off[gt_frame[gi]],
            'dt_index': di - pack.dt_off[dt_frame[di]],
        }
        summary = _summary(per, gt_ok.sum(), dt_ok.sum())
        summary['per_object'] = per
        result[cls] = summary
    return result


def format_quality_table(stats: dict) -> str:
    """A plain-text table of the summaries (one row per class)."""
    head = (f"{'class':<12}{'gt':>6}{'dt':>6}{'match':>7}{'R3d@.5':>8}{'R3d@.7':>8}"
            f"{'Rbev@.7':>8}{'IoU3d':>7}{'ctr m':>7}{'head deg':>9}{'|dl|':>6}{'|dh|':>6}{'|dw|':>6}")
    rows = [head]
    for cls, s in stats.items():
        rows.append(f"{cls:<12}{s['n_gt']:>6}{s['n_dt']:>6}{s['n_matched']:>7}"
                    f"{s['recall_3d@0.5']:>8.3f}{s['recall_3d@0.7']:>8.3f}{s['recall_bev@0.7']:>8.3f}"
                    f"{s['median_iou_3d']:>7.3f}{s['median_centre_error']:>7.2f}"
                    f"{np.degrees(s['median_heading_error']):>9.1f}{s['mean_size_error_l']:>6.2f}"
                    f"{s['mean_size_error_h']:>6.2f}{s['mean_size_error_w']:>6.2f}")
    return '\n'.join(rows)


def plot_quality_histograms(stats: dict, path) -> Path:
    """PNG of per-class histograms: 3D IoU, BEV IoU, centre error, heading error, size errors."""
    import matplotlib
    if matplotlib.get_backend().lower() != 'agg':
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = list(stats)
    cols = ('iou_3d', 'iou_bev', 'centre_error', 'heading_error', 'size_error')
    titles = {'iou_3d': '3D IoU', 'iou_bev': 'BEV IoU', 'centre_error': 'centre error (m)',
              'heading_error': 'heading error (deg)', 'size_error': 'size error (m)'}
    fig, axes = plt.subplots(max(1, len(classes)), len(cols), squeeze=False,
                             figsize=(3.2 * len(cols), 2.6 * max(1, len(classes))))
    for r, cls in enumerate(classes):
        per = stats[cls]['per_object']
        for c, key in enumerate(cols):
            ax = axes[r, c]
            if key == 'size_error':
                for d, name in enumerate('lhw'):
                    ax.hist(per[key][:, d], bins=30, alpha=0.5, label=name)
                ax.legend(fontsize=7)
            else:
                v = np.degrees(per[key]) if key == 'heading_error' else per[key]
                rng = (0.0, 1.0) if key.startswith('iou') else None
                ax.hist(v, bins=30, range=rng, color='tab:blue')
                if key.startswith('iou'):
                    for thr in RECALL_IOUS:
                        ax.axvline(thr, color='tab:red', lw=0.8, ls='--')
            ax.set_title(f'{cls}: {titles[key]}' if c == 0 else titles[key], fontsize=8)
            ax.tick_params(labelsize=7)
        axes[r, 0].set_ylabel(f"n={stats[cls]['n_matched']}/{stats[cls]['n_gt']}", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + '.tmp.png')
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
