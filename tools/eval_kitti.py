"""Evaluate KITTI-format predictions against KITTI labels with the official protocol.

    python tools/eval_kitti.py --gt_dir data/kitti/training/label_2 --pred_dir out/label_2 \
        [--split_file data/kitti/ImageSets/val.txt] [--classes Car Pedestrian Cyclist] \
        [--quality [--quality_png quality.png]] [--json result.json]

Prediction files are label_2 lines with a 16th column (score); a frame with no prediction
file counts as "no detections" only with --allow_missing. Prints the official table
(R11 and R40, both overlap sets) like the KITTI devkit; --quality adds the per-object
pseudo-label metrics (useful below 40 objects per class, where AP is capped; see
docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcdet_ext.evaluation.kitti import (empty_annotation, get_label_anno,  # noqa: E402
                                        get_official_eval_result, read_ids)


def _ids(args):
    if args.split_file:
        return read_ids(args.split_file)
    gt_dir = Path(args.gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f'--gt_dir: not a directory: {gt_dir}')
    return sorted(p.stem for p in gt_dir.glob('*.txt'))


def load(args):
    ids = _ids(args)
    if not ids:
        raise ValueError(f'no frames: {args.split_file or args.gt_dir} lists no label files')
    gt_dir, pred_dir = Path(args.gt_dir), Path(args.pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f'--pred_dir: not a directory: {pred_dir}')
    gt_annos, dt_annos, missing = [], [], []
    for fid in ids:
        gt_annos.append({**get_label_anno(gt_dir / f'{fid}.txt'), 'frame_id': fid})
        pred = pred_dir / f'{fid}.txt'
        if pred.is_file():
            dt_annos.append({**get_label_anno(pred), 'frame_id': fid})
        else:
            missing.append(fid)
            dt_annos.append({**empty_annotation(), 'frame_id': fid})
    if missing and not args.allow_missing:
        raise FileNotFoundError(f'{len(missing)} prediction file(s) missing in {pred_dir}, e.g. '
                                f'{missing[0]}.txt (pass --allow_missing to count them as '
                                'frames without detections)')
    return ids, gt_annos, dt_annos, missing


def main(argv=None):
    ap = argparse.ArgumentParser(description='KITTI 3D object evaluation (official protocol).')
    ap.add_argument('--gt_dir', required=True, help='folder of ground-truth label_2 files')
    ap.add_argument('--pred_dir', required=True, help='folder of prediction files (with scores)')
    ap.add_argument('--split_file', default=None, help='ImageSets file listing frame ids')
    ap.add_argument('--classes', nargs='+', default=['Car', 'Pedestrian', 'Cyclist'])
    ap.add_argument('--allow_missing', action='store_true',
                    help='a missing prediction file means no detections in that frame')
    ap.add_argument('--quality', action='store_true', help='also print per-object quality')
    ap.add_argument('--quality_png', default=None, help='histogram PNG for --quality')
    ap.add_argument('--json', default=None, help='write the result dict here')
    args = ap.parse_args(argv)

    try:
        ids, gt_annos, dt_annos, missing = load(args)
        result_str, result = get_official_eval_result(gt_annos, dt_annos, args.classes)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'{len(ids)} frames' + (f' ({len(missing)} without predictions)' if missing else ''))
    print(result_str, end='')
    out = {'ap': result}
    if args.quality:
        from pcdet_ext.evaluation.pseudo_label_quality import (format_quality_table,
                                                               plot_quality_histograms,
                                                               pseudo_label_quality)
        stats = pseudo_label_quality(gt_annos, dt_annos, args.classes)
        print('\nPer-object quality (greedy BEV-IoU matching; medians, mean size errors):')
        print(format_quality_table(stats))
        if args.quality_png:
            print(f'histograms: {plot_quality_histograms(stats, args.quality_png)}')
        out['quality'] = {c: {k: v for k, v in s.items() if k != 'per_object'}
                          for c, s in stats.items()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
