"""Memory of the ALPI training set: the frustum dataset built in RAM vs with its point arrays on
disk (DATA_CONFIG.POINT_STORE), each in its own process. Prints a table and writes JSON: peak RSS,
build time, the bytes of point arrays per frame (and their extrapolation to a KITTI-size split of
3712 frames), and the item read rate.

    python tools/bench_alpi_memory.py --cfg_file cfgs/alpi/alpi_kitti.yaml --data_path data/synthetic \
        --split trainval --out output/bench_alpi_memory.json
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_one(args):
    from pcdet_ext.alpi.dataset import ALPIFrustumDataset
    from pcdet_ext.config import ConfigDict, cfg_from_yaml_file

    cfg = ConfigDict()
    cfg_from_yaml_file(args.cfg_file, cfg)
    dc = cfg.DATA_CONFIG
    dc.DATA_PATH = args.data_path
    dc.DATA_SPLIT = {'train': args.split, 'test': args.split}
    dc.PROGRESS = False
    dc.POINT_STORE = {'MODE': args.mode}
    if args.ratio is not None:
        dc.PROXY.RATIO = args.ratio
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    ds = ALPIFrustumDataset(dc, cfg.CLASS_NAMES, training=True)
    build_s = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = min(len(ds), args.read_items)
    t0 = time.time()
    for i in range(n):
        ds[(i * 7919) % len(ds)]
    read_s = time.time() - t0
    frames = len(ds.frame_ids)
    # bytes of point arrays the store holds in both modes, plus the parked frustums in disk mode
    point_bytes = (ds.store.nbytes if ds.store.mode == 'disk' else
                   ds.store.nbytes + sum(inj.sample.points.nbytes + inj.sample.point_indices.nbytes
                                         for inj in ds.injected))
    print(json.dumps({'mode': args.mode, 'frames': frames, 'items': len(ds), 'build_s': round(build_s, 1),
                      'peak_rss_gib': round(rss / 2 ** 20, 3), 'rss_before_build_gib': round(base / 2 ** 20, 3),
                      'point_bytes_per_frame': int(point_bytes / max(frames, 1)),
                      'items_per_s': round(n / max(read_s, 1e-9), 1)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cfg_file', default='cfgs/alpi/alpi_kitti.yaml')
    ap.add_argument('--data_path', required=True)
    ap.add_argument('--split', default='train')
    ap.add_argument('--ratio', type=float, default=None, help='override PROXY.RATIO')
    ap.add_argument('--read_items', type=int, default=2000)
    ap.add_argument('--out', default='output/bench_alpi_memory.json')
    ap.add_argument('--mode', default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        return run_one(args)
    rows = []
    for mode in ('memory', 'disk'):
        cmd = [sys.executable, __file__, '--mode', mode] + sys.argv[1:]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    kitti = 3712
    print(f'{"store":8s} {"frames":>6s} {"items":>7s} {"build s":>8s} {"peak RSS GiB":>12s} '
          f'{"points MB/frame":>15s} {"-> 3712 frames GB":>17s} {"items/s":>8s}')
    for r in rows:
        r['point_gb_at_3712_frames'] = round(r['point_bytes_per_frame'] * kitti / 1e9, 2)
        print(f'{r["mode"]:8s} {r["frames"]:6d} {r["items"]:7d} {r["build_s"]:8.1f} {r["peak_rss_gib"]:12.3f} '
              f'{r["point_bytes_per_frame"] / 1e6:15.3f} {r["point_gb_at_3712_frames"]:17.2f} {r["items_per_s"]:8.1f}')
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump({'cfg_file': args.cfg_file, 'data_path': args.data_path, 'runs': rows}, f, indent=1)
    os.replace(tmp, args.out)


if __name__ == '__main__':
    main()
