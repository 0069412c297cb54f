"""python -m pcdet_ext.datasets.synthetic --out data/synthetic --frames N --seed S [--workers W]"""
import argparse
import json
import sys

from .writer import generate_dataset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='python -m pcdet_ext.datasets.synthetic',
                                 description='Generate the synthetic KITTI-format dataset (resumable).')
    ap.add_argument('--out', required=True, help='output root (training/, ImageSets/ go here)')
    ap.add_argument('--frames', type=int, required=True, help='number of frames')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--val_fraction', type=float, default=0.25)
    ap.add_argument('--workers', type=int, default=1, help='parallel processes')
    ap.add_argument('--no_images', action='store_true', help='skip the image_2 PNG renders')
    args = ap.parse_args(argv)
    try:
        summary = generate_dataset(args.out, args.frames, seed=args.seed, val_fraction=args.val_fraction,
                                   workers=args.workers, write_images=not args.no_images)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
