"""The official KITTI object evaluation: AP for image boxes, BEV, 3D and AOS at R11 and R40.

Same inputs and outputs as OpenPCDet's `kitti_object_eval_python.eval.get_official_eval_result`
(annotation dicts, the printed table, the result dict keys), computed on the CPU: overlaps in
large vectorised batches, the per-frame matching in numba. See docs/evaluation.md.
"""
from __future__ import annotations

import io

import numpy as np

from . import matching
from .annotations import validate_annos
from .overlaps import compute_overlaps, pack_frames

CLASS_TO_NAME = {0: 'Car', 1: 'Pedestrian', 2: 'Cyclist', 3: 'Van', 4: 'Person_sitting', 5: 'Truck'}
NAME_TO_CLASS = {v: k for k, v in CLASS_TO_NAME.items()}
# Ground-truth classes that are ignored (neither TP nor FN) when evaluating a class.
NEIGHBOUR_CLASS = {'car': 'van', 'pedestrian': 'person_sitting'}

# Difficulty (easy, moderate, hard) limits on the ground truth.
MIN_HEIGHT = (40, 25, 25)          # 2D box height in pixels (also the detection minimum)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
DIFFICULTIES = ('easy', 'moderate', 'hard')
METRIC_NAMES = ('bbox', 'bev', '3d')

# Minimum overlaps [overlap set, metric (bbox, bev, 3d), class (CLASS_TO_NAME order)]:
# the strict set (Car 0.7, Pedestrian / Cyclist 0.5) and the loose set (0.5 / 0.25 for BEV
# and 3D; image boxes keep 0.7 / 0.5).
MIN_OVERLAPS = np.array([
    [[0.7, 0.5, 0.5, 0.7, 0.5, 0.7]] * 3,
    [[0.7, 0.5, 0.5, 0.7, 0.5, 0.5],
     [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
     [0.5, 0.25, 0.25, 0.5, 0.25, 0.5]],
])


def class_indices(current_classes) -> list[int]:
    if not isinstance(current_classes, (list, tuple)):
        current_classes = [current_classes]
    out = []
    for c in current_classes:
        if isinstance(c, str):
            if c not in NAME_TO_CLASS:
                raise ValueError(f'current_classes: unknown class {c!r}; expected one of '
                                 f'{list(NAME_TO_CLASS)}')
            out.append(NAME_TO_CLASS[c])
        elif isinstance(c, (int, np.integer)) and int(c) in CLASS_TO_NAME:
            out.append(int(c))
        else:
            raise ValueError(f'current_classes: unknown class {c!r}')
    return out


def _ignore_flags(pack, cls: int, difficulty: int):
    """(ignored_gt, ignored_dt, number of counted gt) for one class and difficulty."""
    gt, dt = pack.gt, pack.dt
    cls_name = CLASS_TO_NAME[cls].lower()
    gt_names, dt_names = gt['name_lower'], dt['name_lower']
    valid = np.where(gt_names == cls_name, 1,
                     np.where(gt_names == NEIGHBOUR_CLASS.get(cls_name, '\0'), 0, -1))
    height = gt['bbox'][:, 3] - gt['bbox'][:, 1]
    hard = ((gt['occluded'] > MAX_OCCLUSION[difficulty]) |
            (gt['truncated'] > MAX_TRUNCATION[difficulty]) |
            (height <= MIN_HEIGHT[difficulty]))
    ignored_gt = np.where((valid == 1) & ~hard, 0,
                          np.where((valid == 0) | ((valid == 1) & hard), 1, -1)).astype(np.int64)
    dt_height = np.abs(dt['bbox'][:, 3] - dt['bbox'][:, 1])
    ignored_dt = np.where(dt_height < MIN_HEIGHT[difficulty], 1,
                          np.where(dt_names == cls_name, 0, -1)).astype(np.int64)
    return ignored_gt, ignored_dt, int((ignored_gt == 0).sum())


def _eval_metric(pack, overlaps, dc_bbox, dc_off, classes, metric, min_overlaps, compute_aos):
    """precision / recall / orientation arrays [class, difficulty, overlap set, 41]."""
    shape = (len(classes), 3, min_overlaps.shape[0], matching.N_SAMPLE_PTS)
    precision, recall, aos = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    ov = overlaps[metric]
    gt, dt = pack.gt, pack.dt
    for m, cls in enumerate(classes):
        for d in range(3):
            ignored_gt, ignored_dt, num_valid_gt = _ignore_flags(pack, cls, d)
            for k, min_overlap in enumerate(min_overlaps[:, metric, m]):
                tp_scores = matching.threshold_scores(ov, pack.pair_off, pack.gt_off, pack.dt_off,
                                                      ignored_gt, ignored_dt, dt['score'],
                                                      float(min_overlap))
                if num_valid_gt == 0 or len(tp_scores) == 0:
                    continue
                thresholds = matching.sample_thresholds(tp_scores, num_valid_gt)
                thresholds = thresholds[:matching.N_SAMPLE_PTS]
                pr = matching.count_statistics(
                    ov, pack.pair_off, pack.gt_off, pack.dt_off, ignored_gt, ignored_dt,
                    dt['score'], gt['alpha'], dt['alpha'], dt['bbox'], dc_bbox, dc_off,
                    metric == 0, float(min_overlap), thresholds, compute_aos)
                n = len(thresholds)
                with np.errstate(divide='ignore', invalid='ignore'):
                    rec = pr[:, 0] / (pr[:, 0] + pr[:, 2])
                    prec = pr[:, 0] / (pr[:, 0] + pr[:, 1])
                    ori = pr[:, 3] / (pr[:, 0] + pr[:, 1])
                # An empty denominator (every match was to an ignored object) gives 0.
                rec, prec, ori = (np.nan_to_num(x, nan=0.0, posinf=0.0) for x in (rec, prec, ori))
                # Interpolate: each point takes the best value at any higher recall.
                precision[m, d, k, :n] = np.maximum.accumulate(prec[::-1])[::-1]
                recall[m, d, k, :n] = np.maximum.accumulate(rec[::-1])[::-1]
                if compute_aos:
                    aos[m, d, k, :n] = np.maximum.accumulate(ori[::-1])[::-1]
    return {'precision': precision, 'recall': recall, 'orientation': aos}


def get_mAP(prec):
    """R11: mean of the 11 points 0, 4, ..., 40 of the 41 samples, in percent."""
    sums = 0
    for i in range(0, prec.shape[-1], 4):
        sums = sums + prec[..., i]
    return sums / 11 * 100


def get_mAP_R40(prec):
    """R40: mean of the 40 points 1..40 (recall 0 left out), in percent."""
    sums = 0
    for i in range(1, prec.shape[-1]):
        sums = sums + prec[..., i]
    return sums / 40 * 100


def _dontcare_boxes(gt_annos):
    boxes = [np.asarray(a['bbox'], dtype=np.float64)[np.asarray(a['name']) == 'DontCare']
             for a in gt_annos]
    off = np.concatenate([[0], np.cumsum([len(b) for b in boxes])]).astype(np.int64)
    return (np.concatenate(boxes) if boxes else np.zeros((0, 4))).reshape(-1, 4), off


def _relevant_objects(pack, classes):
    """Objects that can take part in some evaluated class; only these need rotated IoUs."""
    names = [CLASS_TO_NAME[c].lower() for c in classes]
    gt_names = set(names) | {NEIGHBOUR_CLASS[n] for n in names if n in NEIGHBOUR_CLASS}
    gt_keep = np.isin(pack.gt['name_lower'], list(gt_names))
    dt_height = np.abs(pack.dt['bbox'][:, 3] - pack.dt['bbox'][:, 1])
    # Low detections of any class are "ignored" detections that can absorb a ground truth.
    dt_keep = np.isin(pack.dt['name_lower'], names) | (dt_height < max(MIN_HEIGHT))
    return dt_keep, gt_keep


def do_eval(gt_annos, dt_annos, current_classes, min_overlaps, compute_aos=False,
            PR_detail_dict=None):
    """AP arrays [class, difficulty, overlap set] for bbox, bev, 3d, aos at R11 and R40."""
    pack = pack_frames(gt_annos, dt_annos)
    dt_keep, gt_keep = _relevant_objects(pack, current_classes)
    overlaps = compute_overlaps(pack, dt_keep, gt_keep)
    dc_bbox, dc_off = _dontcare_boxes(gt_annos)
    out = {}
    for metric, name in enumerate(METRIC_NAMES):
        ret = _eval_metric(pack, overlaps, dc_bbox, dc_off, current_classes, metric,
                           min_overlaps, compute_aos and metric == 0)
        out[name] = (get_mAP(ret['precision']), get_mAP_R40(ret['precision']))
        if PR_detail_dict is not None:
            PR_detail_dict[name] = ret['precision']
        if metric == 0 and compute_aos:
            out['aos'] = (get_mAP(ret['orientation']), get_mAP_R40(ret['orientation']))
            if PR_detail_dict is not None:
                PR_detail_dict['aos'] = ret['orientation']
    aos = out.get('aos', (None, None))
    return (out['bbox'][0], out['bev'][0], out['3d'][0], aos[0],
            out['bbox'][1], out['bev'][1], out['3d'][1], aos[1])


def _line(text: str) -> str:
    buf = io.StringIO()
    print(text, file=buf)
    return buf.getvalue()


def _detections_have_alpha(dt_annos) -> bool:
    """AOS is computed when the first non-empty detection frame has a real alpha (not -10)."""
    for anno in dt_annos:
        if len(anno['alpha']) != 0:
            return bool(np.asarray(anno['alpha'])[0] != -10)
    return False


def get_official_eval_result(gt_annos, dt_annos, current_classes, PR_detail_dict=None):
    """KITTI AP of dt_annos against gt_annos (lists of per-frame annotation dicts, same frames
    in the same order). Returns (result_str, result_dict); result_dict keys
    '{Class}_{3d,bev,image,aos}/{easy,moderate,hard}' (R11) and the same with '_R40'
    (strict overlap set). Raises ValueError naming the frame on malformed input."""
    validate_annos(gt_annos, dt_annos)
    classes = class_indices(current_classes)
    min_overlaps = MIN_OVERLAPS[:, :, classes]
    compute_aos = _detections_have_alpha(dt_annos)
    (ap_bbox, ap_bev, ap_3d, ap_aos, ap_bbox40, ap_bev40, ap_3d40, ap_aos40) = do_eval(
        gt_annos, dt_annos, classes, min_overlaps, compute_aos, PR_detail_dict=PR_detail_dict)

    result, ret = '', {}
    for j, cls in enumerate(classes):
        cname = CLASS_TO_NAME[cls]
        for i in range(min_overlaps.shape[0]):
            thr = '{:.2f}, {:.2f}, {:.2f}:'.format(*min_overlaps[i, :, j])
            for tag, bb, bev, d3, ao in (('AP', ap_bbox, ap_bev, ap_3d, ap_aos),
                                         ('AP_R40', ap_bbox40, ap_bev40, ap_3d40, ap_aos40)):
                result += _line(f'{cname} {tag}@{thr}')
                result += _line(f'bbox AP:{bb[j, 0, i]:.4f}, {bb[j, 1, i]:.4f}, {bb[j, 2, i]:.4f}')
                result += _line(f'bev  AP:{bev[j, 0, i]:.4f}, {bev[j, 1, i]:.4f}, {bev[j, 2, i]:.4f}')
                result += _line(f'3d   AP:{d3[j, 0, i]:.4f}, {d3[j, 1, i]:.4f}, {d3[j, 2, i]:.4f}')
                if compute_aos:
                    result += _line(f'aos  AP:{ao[j, 0, i]:.2f}, {ao[j, 1, i]:.2f}, {ao[j, 2, i]:.2f}')
            if i != 0:
                continue
            for suffix, bb, bev, d3, ao in (('', ap_bbox, ap_bev, ap_3d, ap_aos),
                                            ('_R40', ap_bbox40, ap_bev40, ap_3d40, ap_aos40)):
                for d, diff in enumerate(DIFFICULTIES):
                    ret[f'{cname}_3d/{diff}{suffix}'] = float(d3[j, d, 0])
                    ret[f'{cname}_bev/{diff}{suffix}'] = float(bev[j, d, 0])
                    ret[f'{cname}_image/{diff}{suffix}'] = float(bb[j, d, 0])
                    if compute_aos:
                        ret[f'{cname}_aos/{diff}{suffix}'] = float(ao[j, d, 0])
    return result, ret
