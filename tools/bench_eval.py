"""Benchmark the KITTI evaluator at KITTI-val scale on this machine's CPU.

Generates (with a seed) 3769 frames of ~10 ground-truth objects and ~20 detections each
(Car / Pedestrian / Cyclist plus Van, Person_sitting and DontCare), perturbed from the ground
truth plus false positives, then times get_official_eval_result and reports the peak
resident memory. Prints a table and writes JSON.

    python tools/bench_eval.py [--frames 3769] [--seed 0] [--out output/bench_eval.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (class, probability, mean l h w)
_CLASSES = (('Car', 0.55, (3.9, 1.56, 1.6)), ('Pedestrian', 0.2, (0.8, 1.75, 0.6)),
            ('Cyclist', 0.1, (1.76, 1.74, 0.6)), ('Van', 0.05, (5.1, 2.2, 1.9)),
            ('Person_sitting', 0.02, (0.8, 1.3, 0.6)), ('DontCare', 0.08, (1.0, 1.0, 1.0)))
_FOCAL, _CX, _CY, _W, _H = 721.5, 609.6, 172.9, 1242, 375


def _image_boxes(loc, dims):
    """Approximate image_2 boxes of camera boxes (pinhole, no rotation): enough for the
    difficulty filters to see realistic heights."""
    z = np.maximum(loc[:, 2], 1.0)
    u = _FOCAL * loc[:, 0] / z + _CX
    v_bot = _FOCAL * loc[:, 1] / z + _CY
    v_top = _FOCAL * (loc[:, 1] - dims[:, 1]) / z + _CY
    half_w = _FOCAL * 0.5 * np.maximum(dims[:, 0], dims[:, 2]) / z
    box = np.stack([u - half_w, v_top, u + half_w, v_bot], 1)
    box[:, [0, 2]] = box[:, [0, 2]].clip(0, _W - 1)
    box[:, [1, 3]] = box[:, [1, 3]].clip(0, _H - 1)
    return box


def _objects(rng, n):
    probs = np.array([c[1] for c in _CLASSES])
    cls = rng.choice(len(_CLASSES), size=n, p=probs / probs.sum())
    names = np.array([_CLASSES[c][0] for c in cls])
    mean = np.array([_CLASSES[c][2] for c in cls]).reshape(-1, 3)
    dims = mean * rng.uniform(0.9, 1.1, size=(n, 3))
    z = rng.uniform(4, 70, n)
    x = rng.uniform(-0.6, 0.6, n) * z
    loc = np.stack([x, rng.normal(1.7, 0.1, n), z], 1)
    ry = rng.uniform(-np.pi, np.pi, n)
    return names, dims, loc, ry


def make_frame(rng, n_gt=10, n_dt=20):
    """One frame: (gt anno, dt anno) dicts in OpenPCDet's format."""
    n_gt = max(1, int(rng.poisson(n_gt)))
    names, dims, loc, ry = _objects(rng, n_gt)
    bbox = _image_boxes(loc, dims)
    gt = {'name': names, 'truncated': rng.choice([0.0, 0.0, 0.2, 0.4], n_gt),
          'occluded': rng.integers(0, 3, n_gt), 'alpha': ry - np.arctan2(loc[:, 0], loc[:, 2]),
          'bbox': bbox, 'dimensions': dims, 'location': loc, 'rotation_y': ry}
    dc = names == 'DontCare'
    gt['location'][dc] = -1000.0
    gt['dimensions'][dc] = -1.0
    gt['rotation_y'][dc] = -10.0
    gt['alpha'][dc] = -10.0

    real = np.nonzero(~dc)[0]
    n_dt = max(1, int(rng.poisson(n_dt)))
    n_tp = min(len(real), int(n_dt * 0.45))
    src = rng.choice(real, size=n_tp, replace=False) if n_tp else np.zeros(0, int)
    t_loc = loc[src] + rng.normal(0, 0.25, (n_tp, 3)) * np.array([1, 0.3, 1])
    t_dims = dims[src] * rng.normal(1, 0.05, (n_tp, 3))
    t_ry = ry[src] + rng.normal(0, 0.15, n_tp)
    t_names = np.where(np.isin(names[src], ['Van']), 'Car',
                       np.where(names[src] == 'Person_sitting', 'Pedestrian', names[src]))
    f_names, f_dims, f_loc, f_ry = _objects(rng, n_dt - n_tp)
    f_names = np.where(np.isin(f_names, ['Van', 'DontCare']), 'Car',
                       np.where(f_names == 'Person_sitting', 'Pedestrian', f_names))
    d_names = np.concatenate([t_names, f_names])
    d_dims = np.concatenate([t_dims, f_dims])
    d_loc = np.concatenate([t_loc, f_loc])
    d_ry = np.concatenate([t_ry, f_ry])
    score = np.concatenate([rng.uniform(0.3, 1.0, n_tp), rng.uniform(0.05, 0.8, n_dt - n_tp)])
    dt = {'name': d_names, 'truncated': np.zeros(n_dt), 'occluded': np.zeros(n_dt),
          'alpha': d_ry - np.arctan2(d_loc[:, 0], d_loc[:, 2]), 'bbox': _image_boxes(d_loc, d_dims),
          'dimensions': d_dims, 'location': d_loc, 'rotation_y': d_ry, 'score': score}
    return gt, dt


def make_dataset(frames=3769, seed=0, n_gt=10, n_dt=20):
    rng = np.random.default_rng(seed)
    pairs = [make_frame(rng, n_gt, n_dt) for _ in range(frames)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=3769)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default='output/bench_eval.json')
    args = ap.parse_args(argv)

    from pcdet_ext.evaluation.kitti import get_official_eval_result

    # Warm-up on a few frames: numba compiles (or loads its cache) outside the timing.
    t0 = time.perf_counter()
    w_gt, w_dt = make_dataset(8, seed=args.seed + 1)
    get_official_eval_result(w_gt, w_dt, ['Car', 'Pedestrian', 'Cyclist'])
    t_warm = time.perf_counter() - t0

    gt, dt = make_dataset(args.frames, seed=args.seed)
    rss_data = _peak_rss_mib()
    n_gt = sum(len(a['name']) for a in gt)
    n_dt = sum(len(a['name']) for a in dt)
    timings, results = {}, {}
    # The ops pick compiled kernels when built; PCDET_EXT_OPS=reference forces the pure-torch
    # reference (read at each call), measured in the same run for the ratio.
    before = os.environ.get('PCDET_EXT_OPS')
    for backend in ('reference', 'default'):
        if backend == 'reference':
            os.environ['PCDET_EXT_OPS'] = 'reference'
        elif before is None:
            os.environ.pop('PCDET_EXT_OPS', None)
        else:
            os.environ['PCDET_EXT_OPS'] = before
        t0, c0 = time.perf_counter(), time.process_time()
        _, result = get_official_eval_result(gt, dt, ['Car', 'Pedestrian', 'Cyclist'])
        timings[backend] = (time.perf_counter() - t0, time.process_time() - c0)
        results[backend] = result
    same = all(abs(results['reference'][k] - results['default'][k]) < 1e-9 for k in result)
    t_eval, c_eval = timings['default']
    t_ref, c_ref = timings['reference']
    rss_peak = _peak_rss_mib()
    try:
        from pcdet_ext.ops import _backend
        compiled = _backend.available().get('cpu', False)
    except Exception:  # diagnostics only
        compiled = False

    rec = {
        'date': datetime.now(timezone.utc).strftime('%Y-%m-%d'),
        'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores',
        'frames': args.frames, 'seed': args.seed, 'gt_objects': n_gt, 'detections': n_dt,
        'warmup_s': round(t_warm, 3), 'eval_wall_s': round(t_eval, 3),
        'eval_cpu_s': round(c_eval, 3), 'ops_compiled_cpu': bool(compiled),
        'eval_wall_s_reference_ops': round(t_ref, 3), 'eval_cpu_s_reference_ops': round(c_ref, 3),
        'speedup_vs_reference_ops': round(t_ref / t_eval, 2), 'same_result_both_backends': same,
        'load_average_1min': round(os.getloadavg()[0], 2),
        'peak_rss_mib': round(rss_peak, 1), 'rss_after_data_mib': round(rss_data, 1),
        'Car_3d/moderate_R40': round(result['Car_3d/moderate_R40'], 4),
        'budget_s': 10.0, 'budget_rss_mib': 2048,
    }
    print(f"{'frames':>7} {'gt':>6} {'dt':>6} {'ops':>10} {'wall s':>7} {'cpu s':>6} "
          f"{'peak RSS MiB':>13}")
    for name, (tw, tc) in (('reference', timings['reference']),
                           ('compiled' if compiled else 'default', timings['default'])):
        print(f"{args.frames:>7} {n_gt:>6} {n_dt:>6} {name:>10} {tw:>7.2f} {tc:>6.2f} {rss_peak:>13.1f}")
    print(f"warm-up (numba compile or cache load) {t_warm:.2f} s; same AP on both backends: {same}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(rec, indent=2))
    os.replace(tmp, out)
    print(f'wrote {out}')
    return rec


if __name__ == '__main__':
    main()
