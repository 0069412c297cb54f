"""Prepare datasets as OpenPCDet does: infos .pkl, gt database.

    python tools/create_data.py kitti --data_path data/kitti [--workers N]
    python tools/create_data.py synthetic --out data/synthetic --frames N --seed S [--val_fraction F]

`kitti` expects the KITTI layout (training/{velodyne,calib,label_2[,image_2]}, testing/...,
ImageSets/{train,val[,trainval,test]}.txt) and writes kitti_infos_{split}.pkl,
kitti_dbinfos_train.pkl and gt_database/. `synthetic` generates the embedded synthetic dataset
in the same layout and then does the same. Every output is written atomically.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from pcdet_ext.datasets.data_io import DataFileError  # noqa: E402
from pcdet_ext.geometry import CalibrationError  # noqa: E402


def create_kitti(data_path, workers=4, progress=True):
    from pcdet_ext.datasets.kitti.kitti_infos import create_kitti_infos
    return create_kitti_infos(data_path, workers=workers, progress=progress)


def create_synthetic(out, frames, seed, val_fraction=0.25, workers=4, progress=True):
    from pcdet_ext.datasets.synthetic import generate_dataset
    t0 = time.time()
    generate_dataset(out, frames, seed, val_fraction, workers=workers, progress=progress)
    print(f'generated {frames} synthetic frames in {out} ({time.time() - t0:.1f} s)')
    return create_kitti(out, workers=workers, progress=progress)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='dataset', required=True)
    k = sub.add_parser('kitti', help='infos + gt database for a KITTI-layout folder')
    k.add_argument('--data_path', default='data/kitti')
    k.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    s = sub.add_parser('synthetic', help='generate the embedded synthetic dataset, then infos')
    s.add_argument('--out', default='data/synthetic')
    s.add_argument('--frames', type=int, default=200)
    s.add_argument('--seed', type=int, default=0)
    s.add_argument('--val_fraction', type=float, default=0.25)
    s.add_argument("--workers", type=int, default=1)
    for q in (k, s):
        q.add_argument('--no_progress', action='store_true', help='no tqdm bars')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.dataset == 'kitti':
            create_kitti(args.data_path, workers=args.workers, progress=not args.no_progress)
        else:
            create_synthetic(args.out, args.frames, args.seed, args.val_fraction,
                             workers=args.workers, progress=not args.no_progress)
    except (DataFileError, CalibrationError, ValueError) as e:
        print(f'create_data.py {args.dataset}: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
