"""Prepare datasets as OpenPCDet does: infos .pkl, gt database.

    python tools/create_data.py kitti --data_path data/kitti [--workers N]
    python tools/create_data.py synthetic --out data/synthetic --frames N --seed S [--val_fraction F]
    python tools/create_data.py pseudo --data_path data/synthetic --labels output/alpi/label_2 \
        --out data/synthetic_pseudo [--splits train] [--min_score 0.3] [--overwrite]

`kitti` expects the KITTI layout (training/{velodyne,calib,label_2[,image_2]}, testing/...,
ImageSets/{train,val[,trainval,test]}.txt) and writes kitti_infos_{split}.pkl,
kitti_dbinfos_train.pkl and gt_database/. `synthetic` generates the embedded synthetic dataset
in the same layout and then does the same. `pseudo` builds a KITTI-layout folder whose label_2
of the given splits are ALPI's pseudo-labels (tools/alpi_label.py's <out>/label_2; unlabelled
and low-score objects become DontCare), every other frame keeping its original label, with the
point clouds, calibrations and images linked to the source; then does the same as `kitti` on it
(docs/alpi.md). Every output is written atomically.
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


def create_pseudo(data_path, labels, out, splits=('train',), min_score=0.0, overwrite=False,
                  workers=1, progress=True):
    from pcdet_ext.alpi.pseudo_dataset import build_pseudo_label_dataset
    build_pseudo_label_dataset(data_path, labels, out, splits=splits, min_score=min_score,
                               overwrite=overwrite)
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
    ps = sub.add_parser('pseudo', help='a KITTI-layout folder with ALPI pseudo-labels, then infos')
    ps.add_argument('--data_path', required=True, help='source KITTI-layout folder')
    ps.add_argument('--labels', required=True, help="pseudo-label folder (alpi_label.py's <out>/label_2)")
    ps.add_argument('--out', required=True, help='new dataset folder')
    ps.add_argument('--splits', nargs='+', default=['train'], choices=('train', 'val', 'trainval'),
                    help='splits whose frames get pseudo-labels (default: train)')
    ps.add_argument('--min_score', type=float, default=0.0,
                    help='pseudo boxes scoring lower become DontCare')
    ps.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    ps.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    for q in (k, s, ps):
        q.add_argument('--no_progress', action='store_true', help='no tqdm bars')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.dataset == 'kitti':
            create_kitti(args.data_path, workers=args.workers, progress=not args.no_progress)
        elif args.dataset == 'pseudo':
            create_pseudo(args.data_path, args.labels, args.out, splits=args.splits,
                          min_score=args.min_score, overwrite=args.overwrite,
                          workers=args.workers, progress=not args.no_progress)
        else:
            create_synthetic(args.out, args.frames, args.seed, args.val_fraction,
                             workers=args.workers, progress=not args.no_progress)
    except (DataFileError, CalibrationError, ValueError, FileExistsError) as e:
        print(f'create_data.py {args.dataset}: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
