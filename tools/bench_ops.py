"""Benchmark the geometry ops: pure-PyTorch reference vs compiled kernels, same run, same inputs.

    python tools/bench_ops.py --threads 2 --out output/bench_ops.json

Prints a table (op, sizes, reference ms, compiled ms, speed-up, CPU threads) and writes JSON.
Rows: BEV IoU 2000x2000, NMS over 20k boxes, points-in-boxes 120k x 100, hard voxelization
of a real KITTI scan; plus the sparse-conv rows of tools/bench_sparse.py when it exists.
Times are the median of --repeat runs after one warm-up (the reference NMS runs once: it is slow).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcdet_ext import ops  # noqa: E402

KITTI = REPO.parent / 'shared/data/kitti_real/training/velodyne'
VOXEL_SIZE = [0.05, 0.05, 0.1]
PC_RANGE = [0, -40, -3, 70.4, 40, 1]


def timed(fn, repeat: int) -> float:
    fn()   # warm-up (lazy loads, allocator)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def both(fn, repeat: int, ref_repeat: int | None = None):
    """(reference ms, compiled ms or None) of the same call."""
    os.environ['PCDET_EXT_OPS'] = 'reference'
    try:
        ref = timed(fn, ref_repeat or repeat)
    finally:
        del os.environ['PCDET_EXT_OPS']
    fast = timed(fn, repeat) if ops.compiled_backends()['cpu'] else None
    return ref, fast


def scene_boxes(rng, n, sizes=((3.2, 1.5, 1.4), (4.6, 2.0, 1.8))):
    """LiDAR boxes scattered over the KITTI range, car-like sizes, random headings."""
    b = np.zeros((n, 7), np.float32)
    b[:, 0] = rng.uniform(0, 70.4, n)
    b[:, 1] = rng.uniform(-40, 40, n)
    b[:, 2] = rng.uniform(-2, 0, n)
    b[:, 3:6] = rng.uniform(sizes[0], sizes[1], (n, 3))
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    return torch.from_numpy(b)


def load_points(n: int):
    scans = sorted(KITTI.glob('*.bin'))
    if not scans:
        raise SystemExit(f'no KITTI scans under {KITTI}')
    pts = []
    for s in scans:
        pts.append(np.fromfile(s, dtype=np.float32).reshape(-1, 4))
        if sum(len(p) for p in pts) >= n:
            break
    return torch.from_numpy(np.concatenate(pts)[:n])


def row(op, sizes, ref, fast, note=''):
    return {'op': op, 'sizes': sizes, 'ref_ms': ref, 'compiled_ms': fast,
            'speedup': (ref / fast) if fast else None, 'threads': torch.get_num_threads(), 'note': note}


def bench_rows(repeat: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    a = scene_boxes(rng, 2000)
    rows.append(row('boxes_iou_bev', '2000x2000', *both(lambda: ops.boxes_iou_bev(a, a), repeat)))
    boxes, scores = scene_boxes(rng, 20000), torch.from_numpy(rng.random(20000).astype(np.float32))
    rows.append(row('nms', '20k boxes, thr 0.1', *both(lambda: ops.nms(boxes, scores, 0.1), repeat, ref_repeat=1),
                    note=f'{len(ops.nms(boxes, scores, 0.1))} kept'))
    pts, pb = load_points(120000), scene_boxes(rng, 100)
    rows.append(row('points_in_boxes', f'{len(pts) // 1000}k pts x 100 boxes',
                    *both(lambda: ops.points_in_boxes(pts, pb), repeat)))
    scan = torch.from_numpy(np.fromfile(KITTI / '000000.bin', dtype=np.float32).reshape(-1, 4))
    vox = lambda: ops.hard_voxelize(scan, VOXEL_SIZE, PC_RANGE, 5, 40000)  # noqa: E731
    rows.append(row('hard_voxelize', f'KITTI 000000 ({len(scan) // 1000}k pts), 0.05x0.05x0.1',
                    *both(vox, repeat), note=f'{len(vox()[0])} voxels, max 5 pts, max 40000'))
    return rows


def sparse_rows(repeat: int):
    path = REPO / 'tools/bench_sparse.py'
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location('bench_sparse', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, 'bench_rows'):
        return []
    return mod.bench_rows(repeat=repeat)


def fmt(v, unit=''):
    return '-' if v is None else f'{v:.1f}{unit}' if unit != 'x' else f'{v:.1f}x'


def table(rows):
    head = f"{'op':<22} {'sizes':<44} {'ref ms':>9} {'compiled ms':>12} {'speed-up':>9} {'threads':>7}  note"
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append(f"{r['op']:<22} {str(r.get('sizes', '')):<44} {fmt(r.get('ref_ms')):>9} "
                     f"{fmt(r.get('compiled_ms')):>12} {fmt(r.get('speedup'), 'x'):>9} {r.get('threads', ''):>7}  "
                     f"{r.get('note', '')}")
    return '\n'.join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return {'cpu': cpu, 'cores': os.cpu_count(), 'python': platform.python_version(), 'torch': torch.__version__,
            'compiled_ops': {k: v for k, v in ops.compiled_backends().items() if k != 'errors'},
            'load_avg_1min': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2, help='torch / OpenMP CPU threads')
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    ap.add_argument('--no-sparse', action='store_true', help='skip the tools/bench_sparse.py rows')
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench_rows(args.repeat)
    if not args.no_sparse:
        try:
            rows += sparse_rows(args.repeat)
        except Exception as e:  # noqa: BLE001 - the sparse bench is someone else's; report, go on
            print(f'[bench_ops] sparse rows skipped: {e}', file=sys.stderr)
    print(table(rows))
    res = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'machine': machine(),
           'command': ' '.join([Path(sys.argv[0]).name] + sys.argv[1:]), 'rows': rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(f'wrote {args.out}')
    return res


if __name__ == '__main__':
    main()
