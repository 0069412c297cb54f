#!/usr/bin/env python
"""Quality of CPSP pseudo banks against the labels the method never reads (analysis only).

    python tools/bench_cpsp_bank.py --data_path output/bench_nr_data \\
        output/.../round_1/cpsp/cpsp_banks.pkl output/.../round_1/cpsp_g2/cpsp_banks.pkl

For each bank and class: pseudo objects in the bank / their precision / recall of the class's
objects in the bank's unlabelled frames / how well the right ones are placed (mean BEV IoU with
their labelled box, share at KITTI's AP threshold: 0.7 Car, 0.5 other classes), then how many
labelled objects the pseudo backgrounds still hold once their candidates are cut out, then how many
hard negatives lie on a labelled object, by score band (each is pasted as background). A pseudo object
is right when a labelled box of its class in its frame overlaps it with BEV IoU >= 0.5 (Car) or
0.25 (other classes); each labelled box counts once for recall. This opens the label files of the
unlabelled frames on purpose: it checks the method from outside and is never part of a round
(docs/benchmarks_al.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pcdet_ext.active.cpsp import CPSPBanks  # noqa: E402
from pcdet_ext.active.pool import LabelOracle  # noqa: E402
from pcdet_ext.evaluation.kitti.eval import (METRIC_NAMES, MIN_OVERLAPS, NAME_TO_CLASS,  # noqa: E402
                                             class_indices)
from pcdet_ext.ops.iou3d_nms import boxes_iou_bev  # noqa: E402

DEFAULT_CLASSES = ('Car', 'Pedestrian', 'Cyclist')
DEFAULT_BANDS = (0.1, 0.15, 0.2, 0.3, 0.4, 1.0)   # score bands of the negatives' table


def _bev_overlap(name: str, overlap_set: int) -> float:
    """KITTI's BEV minimum overlap for the class (0: strict set, 1: loose set)."""
    return float(MIN_OVERLAPS[overlap_set, METRIC_NAMES.index('bev'), class_indices([name])[0]])


def match_iou(name: str) -> float:
    """A pseudo object is right at KITTI's loose BEV overlap (0.5 Car, 0.25 otherwise)."""
    return _bev_overlap(name, 1)


def tight_iou(name: str) -> float:
    """KITTI's strict BEV overlap (0.7 Car, 0.5 otherwise): a pseudo box this close trains like a
    labelled one."""
    return _bev_overlap(name, 0)


def bank_quality(banks: CPSPBanks, root, class_names: Sequence[str]) -> Dict[str, dict]:
    """{class: {'objects', 'precision', 'recall', 'labelled', 'mean_iou', 'tight'}} of the bank's
    pseudo objects over its unlabelled frames (those it holds candidates for); 'mean_iou' and
    'tight' (share at `tight_iou`) are over the right objects only."""
    frames = sorted(set(banks.candidates) | {o.frame_id for o in banks.objects if o.kind == 'pseudo'})
    truth = LabelOracle(root, class_names, labelled=frames)  # the analysis reads them; rounds never do
    gt = {f: truth.read(f) for f in frames}
    out = {}
    for c in class_names:
        n = 0
        found = set()
        ious = []
        for o in banks.objects:
            if o.kind != 'pseudo' or o.name != c:
                continue
            n += 1
            g = gt[o.frame_id]
            idx = np.flatnonzero(g['gt_names_lidar'] == c)
            if not len(idx):
                continue
            iou = boxes_iou_bev(torch.as_tensor(np.asarray(o.box, np.float32)[None]),
                                torch.as_tensor(g['gt_boxes_lidar'][idx].astype(np.float32)))[0].numpy()
            j = int(iou.argmax())
            if iou[j] >= match_iou(c):
                ious.append(float(iou[j]))
                found.add((o.frame_id, int(idx[j])))
        total = sum(int((gt[f]['gt_names_lidar'] == c).sum()) for f in frames)
        ious = np.asarray(ious)
        nan = float('nan')
        out[c] = {'objects': n, 'precision': len(ious) / n if n else nan,
                  'recall': len(found) / total if total else nan, 'labelled': total,
                  'mean_iou': float(ious.mean()) if len(ious) else nan,
                  'tight': float((ious >= tight_iou(c)).mean()) if len(ious) else nan}
    return out


def background_leftovers(banks: CPSPBanks, root, class_names: Sequence[str], min_points: int = 5,
                         keep_share: float = 0.5) -> Dict[str, dict]:
    """{class: {'left', 'objects'}} over the bank's pseudo backgrounds: of the labelled objects
    with >= min_points points, how many keep >= keep_share of them once the background's candidate
    boxes are cut out. Each one left is a real object that the pseudo-scenes built on that
    background show as unlabelled, i.e. teach as background."""
    from pcdet_ext.active.cpsp import cut_objects, frame_points
    from pcdet_ext.datasets.augmentor.object_paste import remove_points_in_boxes
    bgs = [b for b in banks.backgrounds if b['source'] == 'pseudo']
    truth = LabelOracle(root, class_names, labelled=[b['frame_id'] for b in bgs])
    out = {c: {'left': 0, 'objects': 0} for c in class_names}
    for bg in bgs:
        g = truth.read(bg['frame_id'])
        keep = np.isin(g['gt_names_lidar'], list(class_names))
        if not keep.any():
            continue
        boxes = g['gt_boxes_lidar'][keep].astype(np.float64)
        points = frame_points(Path(root), bg['frame_id'])
        cut = np.asarray(bg['remove_boxes'])
        kept = remove_points_in_boxes(points, cut) if len(cut) else points
        for name, before, after in zip(g['gt_names_lidar'][keep], cut_objects(points, boxes),
                                       cut_objects(kept, boxes)):
            if len(before) >= min_points:
                out[name]['objects'] += 1
                out[name]['left'] += int(len(after) >= keep_share * len(before))
    return out


def negative_truth(banks: CPSPBanks, root, class_names: Sequence[str],
                   bands: Sequence[float] = DEFAULT_BANDS) -> Dict[str, list]:
    """{class: [(low, high, negatives, on_object), ...]} per score band [low, high) of the bank's
    hard negatives of that class: how many, and how many overlap a labelled object of any of
    `class_names` at that object's `match_iou`. A negative on a real object teaches it as
    background wherever it is pasted."""
    frames = sorted({o.frame_id for o in banks.negatives})
    truth = LabelOracle(root, class_names, labelled=frames)
    gt = {f: truth.read(f) for f in frames}
    edges = list(zip(bands[:-1], bands[1:]))
    out = {c: [[lo, hi, 0, 0] for lo, hi in edges] for c in class_names}
    for o in banks.negatives:
        if o.name not in out:
            continue
        row = next((r for r in out[o.name] if r[0] <= o.score < r[1]), None)
        if row is None:
            continue
        g = gt[o.frame_id]
        row[2] += 1
        if len(g['gt_names_lidar']):
            iou = boxes_iou_bev(torch.as_tensor(np.asarray(o.box, np.float32)[None]),
                                torch.as_tensor(g['gt_boxes_lidar'].astype(np.float32)))[0].numpy()
            need = np.array([match_iou(str(n)) for n in g['gt_names_lidar']])
            row[3] += int((iou >= need).any())
    return {c: [tuple(r) for r in rows] for c, rows in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('banks', nargs='+', help='cpsp_banks.pkl files')
    p.add_argument('--data_path', required=True, help='dataset root (training/label_2, training/calib)')
    p.add_argument('--classes', nargs='+', default=list(DEFAULT_CLASSES),
                   help=f'KITTI classes ({", ".join(NAME_TO_CLASS)}): their overlaps define right and tight')
    args = p.parse_args(argv)
    unknown = [c for c in args.classes if c not in NAME_TO_CLASS]
    if unknown:
        p.error(f'--classes: {unknown} have no KITTI overlap thresholds; use {list(NAME_TO_CLASS)}')
    print('| bank | ' + ' | '.join(
        f'{c}: objects / precision / recall / mean BEV IoU / share >= {tight_iou(c)}' for c in args.classes) + ' |')
    print('|---|' + '---|' * len(args.classes))
    left, negs = {}, {}
    for f in args.banks:
        try:
            banks = CPSPBanks.load(f)
            q = bank_quality(banks, args.data_path, args.classes)
            left[f] = background_leftovers(banks, args.data_path, args.classes)
            negs[f] = negative_truth(banks, args.data_path, args.classes)
        except (OSError, ValueError) as e:
            print(f'bench_cpsp_bank.py: error: {e}', file=sys.stderr)
            return 2
        print(f'| {f} | ' + ' | '.join(
            f'{q[c]["objects"]} / {q[c]["precision"]:.2f} / {q[c]["recall"]:.2f} / {q[c]["mean_iou"]:.3f}'
            f' / {q[c]["tight"]:.2f}' for c in args.classes) + ' |')
    print('\nLabelled objects left in the pseudo backgrounds (unlabelled in every scene built on them):\n')
    print('| bank | ' + ' | '.join(f'{c}: left / objects (share)' for c in args.classes) + ' |')
    print('|---|' + '---|' * len(args.classes))
    for f, lo in left.items():
        print(f'| {f} | ' + ' | '.join(
            f'{lo[c]["left"]} / {lo[c]["objects"]} ({lo[c]["left"] / max(lo[c]["objects"], 1):.2f})'
            for c in args.classes) + ' |')
    print('\nHard negatives on a labelled object (pasted as background), by score band: on object / negatives:\n')
    print('| bank | class | ' + ' | '.join(f'[{lo:g}, {hi:g})' for lo, hi in zip(DEFAULT_BANDS[:-1], DEFAULT_BANDS[1:]))
          + ' |')
    print('|---|---|' + '---|' * (len(DEFAULT_BANDS) - 1))
    for f, by in negs.items():
        for c in args.classes:
            print(f'| {f} | {c} | ' + ' | '.join(f'{on} / {n}' for _, _, n, on in by[c]) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
