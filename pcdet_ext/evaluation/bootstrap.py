"""Paired bootstrap over evaluation frames: how much of a difference in KITTI AP between
detectors the choice of evaluation frames alone explains.

A 100-frame val split holds about 40 cyclists, so one cyclist more or less found moves the
cyclist AP by a few points. Resampling the frames with replacement (the same resample for every
detector, hence "paired") and recomputing the APs gives each figure's spread and an interval for
each difference. It measures the val set's sampling noise only, not training noise (another run
of the same recipe), which comes on top.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .kitti import get_official_eval_result, validate_annos

METRIC = '3d/moderate_R40'  # the benchmark's figure: AP3D, R40, moderate


def class_aps(gt_annos, dt_annos, classes: Sequence[str], metric: str = METRIC) -> Dict[str, float]:
    """{class: AP, 'mAP': mean over classes} of one detector on the given frames."""
    _, res = get_official_eval_result(list(gt_annos), list(dt_annos), list(classes))
    aps = {c: float(res[f'{c}_{metric}']) for c in classes}
    aps['mAP'] = float(np.mean([aps[c] for c in classes]))
    return aps


def _frame_ids(annos) -> List:
    return [a.get('frame_id') for a in annos]


def paired_bootstrap(gt_annos, dt_annos_list: Sequence[Sequence[dict]], classes: Sequence[str],
                     resamples: int = 200, seed: int = 0, metric: str = METRIC, progress: bool = False) -> dict:
    """Each detector's APs on the frames as given ('full', one dict per detector) and on
    `resamples` resamples of the frames with replacement ('samples': (resamples, detectors,
    classes + 1) array, the last column the mAP), every detector on the same resample.
    Seeded: the same seed draws the same resamples."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f'resamples must be an integer >= 1, got {resamples!r}')
    if not dt_annos_list:
        raise ValueError('paired_bootstrap: no detections given')
    n = len(gt_annos)
    if n == 0:
        raise ValueError('paired_bootstrap: no evaluation frames')
    ids = _frame_ids(gt_annos)
    for m, dt in enumerate(dt_annos_list):
        validate_annos(list(gt_annos), list(dt))
        other = _frame_ids(dt)
        k = next((i for i, (a, b) in enumerate(zip(ids, other)) if a is not None and b is not None and a != b), None)
        if k is not None:
            raise ValueError(f'detections {m}: frame {k} is {other[k]!r}, the ground truth\'s is {ids[k]!r}; '
                             'every detector must cover the same frames in the same order')
    keys = list(classes) + ['mAP']
    full = [class_aps(gt_annos, dt, classes, metric) for dt in dt_annos_list]
    rng = np.random.default_rng(seed)
    samples = np.zeros((resamples, len(dt_annos_list), len(keys)))
    it = range(resamples)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc='bootstrap', unit='resample')
    for r in it:
        idx = rng.integers(n, size=n)
        gt = [gt_annos[i] for i in idx]
        for m, dt in enumerate(dt_annos_list):
            aps = class_aps(gt, [dt[i] for i in idx], classes, metric)
            samples[r, m] = [aps[k] for k in keys]
    return {'keys': keys, 'full': full, 'samples': samples, 'seed': seed, 'metric': metric}


def summarize(result: dict, interval: float = 0.9) -> dict:
    """{'detectors': [{key: (value, std, low, high)}], 'differences': [{key: (diff, low, high,
    share_above_0)}] of detector m against detector 0 (m >= 1)}; low/high bound the central
    `interval` of the resamples."""
    if not 0.0 < interval < 1.0:
        raise ValueError(f'interval must be in (0, 1), got {interval!r}')
    q = [(1 - interval) / 2 * 100, (1 + interval) / 2 * 100]
    keys, s = result['keys'], result['samples']
    dets = []
    for m, full in enumerate(result['full']):
        lo, hi = np.percentile(s[:, m], q, axis=0)
        dets.append({k: (full[k], float(s[:, m, j].std()), float(lo[j]), float(hi[j])) for j, k in enumerate(keys)})
    diffs = []
    for m in range(1, s.shape[1]):
        d = s[:, m] - s[:, 0]
        lo, hi = np.percentile(d, q, axis=0)
        diffs.append({k: (result['full'][m][k] - result['full'][0][k], float(lo[j]), float(hi[j]),
                          float((d[:, j] > 0).mean())) for j, k in enumerate(keys)})
    return {'detectors': dets, 'differences': diffs, 'interval': interval}
