#!/usr/bin/env python
"""Paired bootstrap of KITTI AP over the evaluation frames: is a difference between detectors
larger than what the choice of frames alone gives?

    python tools/bench_ap_bootstrap.py --gt_dir output/bench_nr_data/training/label_2 \\
        A/eval/epoch_27/val/result.pkl B/eval/epoch_27/val/result.pkl [--names A B] \\
        [--resamples 200] [--seed 0] [--json bootstrap.json]

Each result.pkl is what tools/test.py (or a round's evaluation) writes: one KITTI annotation dict
per frame with its frame_id, all on the same frames. Prints AP3D R40 moderate per class and the
mAP of each, with the bootstrap's standard deviation and 90 % interval, then each detector's
difference from the first: its interval and the share of resamples where it is above the first.
This is the val set's sampling noise only; another training run of the same recipe adds its
own (docs/benchmarks_al.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pcdet_ext.datasets.data_io import atomic_write_text, load_pickle  # noqa: E402
from pcdet_ext.evaluation.bootstrap import paired_bootstrap, summarize  # noqa: E402
from pcdet_ext.evaluation.kitti import get_label_anno  # noqa: E402


def load_results(paths):
    out = []
    for p in paths:
        annos = load_pickle(p, what='detection result file')
        if not isinstance(annos, list) or not annos or not all(isinstance(a, dict) and 'frame_id' in a
                                                              for a in annos):
            raise ValueError(f'{p}: not a result.pkl (a non-empty list of per-frame dicts with frame_id)')
        out.append(annos)
    first = [a['frame_id'] for a in out[0]]
    for p, annos in zip(paths[1:], out[1:]):
        if [a['frame_id'] for a in annos] != first:
            raise ValueError(f'{p}: its frames differ from {paths[0]}\'s (every result must cover the '
                             'same frames in the same order)')
    return first, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('results', nargs='+', help='result.pkl files (the first is the reference)')
    p.add_argument('--gt_dir', required=True, help='label_2 folder of the evaluation frames')
    p.add_argument('--names', nargs='+', default=None, help='a name for each result (default: the paths)')
    p.add_argument('--classes', nargs='+', default=['Car', 'Pedestrian', 'Cyclist'])
    p.add_argument('--resamples', type=int, default=200)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='write the samples and the summary here')
    args = p.parse_args(argv)
    if args.names and len(args.names) != len(args.results):
        p.error(f'--names: {len(args.names)} names for {len(args.results)} results')
    if args.resamples < 1:
        p.error('--resamples must be >= 1')
    names = args.names or args.results
    try:
        ids, dts = load_results(args.results)
        gt = [{**get_label_anno(Path(args.gt_dir) / f'{f}.txt'), 'frame_id': f} for f in ids]
        res = paired_bootstrap(gt, dts, args.classes, resamples=args.resamples, seed=args.seed, progress=True)
    except (OSError, ValueError) as e:
        print(f'bench_ap_bootstrap.py: error: {e}', file=sys.stderr)
        return 2
    s = summarize(res)
    keys = res['keys']
    print(f'{len(ids)} frames, {args.resamples} resamples (seed {args.seed}), AP3D R40 moderate: '
          'value ± std [90 % interval]\n')
    print('| detector | ' + ' | '.join(keys) + ' |')
    print('|---|' + '---|' * len(keys))
    for n, d in zip(names, s['detectors']):
        print(f'| {n} | ' + ' | '.join(f'{v:.2f} ± {sd:.2f} [{lo:.2f}, {hi:.2f}]' for v, sd, lo, hi in
                                       (d[k] for k in keys)) + ' |')
    if s['differences']:
        print(f'\nDifference from {names[0]}: value [90 % interval] (share of resamples above 0)\n')
        print('| detector | ' + ' | '.join(keys) + ' |')
        print('|---|' + '---|' * len(keys))
        for n, d in zip(names[1:], s['differences']):
            print(f'| {n} | ' + ' | '.join(f'{v:+.2f} [{lo:+.2f}, {hi:+.2f}] ({up:.2f})' for v, lo, hi, up in
                                           (d[k] for k in keys)) + ' |')
    if args.json:
        atomic_write_text(json.dumps({'names': list(names), 'frames': len(ids), 'keys': keys, 'seed': args.seed,
                                      'full': res['full'], 'samples': res['samples'].tolist(), 'summary': s},
                                     indent=1), args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
