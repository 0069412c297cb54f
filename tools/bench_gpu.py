"""GPU benchmark: CUDA kernels vs the PyTorch reference on the GPU, the native sparse conv vs spconv on
CUDA, and detector training / inference speed with each sparse backend.

    python tools/bench_gpu.py --data data/synthetic_gpu --scan PATH/000000.bin --json out.json --md out.md

Every row is measured in this run on the same inputs; times are medians after warm-up with
torch.cuda.synchronize() around each call. TF32 is left at PyTorch's defaults (off for matmul).
Detector rows: batches are loaded once and kept on the GPU, so data loading is not in the time
(it runs in DataLoader workers during training); `train` = forward + backward + Adam step,
`infer` = eval-mode forward with post-processing (NMS). Sections that fail are reported in the
JSON and the rest go on.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pcdet_ext import ops  # noqa: E402

sys.path.insert(0, str(REPO / 'tools'))
from bench_ops import scene_boxes  # noqa: E402


DEV = torch.device('cuda')


def sync():
    if DEV.type == 'cuda':
        torch.cuda.synchronize()


def cuda_ms(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def reset_peak():
    if DEV.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()


def peak_bytes() -> int:
    return torch.cuda.max_memory_allocated() if DEV.type == 'cuda' else 0


def ref_and_kernel(fn, repeat, ref_repeat=None):
    os.environ['PCDET_EXT_OPS'] = 'reference'
    try:
        ref = cuda_ms(fn, ref_repeat or repeat, warmup=1)
    finally:
        del os.environ['PCDET_EXT_OPS']
    fast = cuda_ms(fn, repeat) if ops.compiled_backends()[DEV.type] else None
    return ref, fast


def boxes(rng, n, dev):
    """tools/bench_ops.py's car-like scene boxes, on `dev` (same sizes, same draws for a seed)."""
    return scene_boxes(rng, n).to(dev)


def ops_rows(scan: Path, repeat: int):
    dev = DEV
    rng = np.random.default_rng(0)
    rows = []

    def add(op, sizes, ref, fast, note=''):
        rows.append({'op': op, 'sizes': sizes, 'ref_gpu_ms': ref, 'cuda_kernel_ms': fast,
                     'speedup': ref / fast if fast else None, 'note': note})
        print(f'[ops] {op:<16} {sizes:<30} ref {ref:9.2f} ms  kernel {fast if fast else float("nan"):8.2f} ms',
              flush=True)

    a = boxes(rng, 2000, dev)
    add('boxes_iou_bev', '2000x2000', *ref_and_kernel(lambda: ops.boxes_iou_bev(a, a), repeat))
    b, s = boxes(rng, 20000, dev), torch.rand(20000, device=dev)
    add('nms', '20k boxes, thr 0.1', *ref_and_kernel(lambda: ops.nms(b, s, 0.1), repeat, ref_repeat=1),
        note=f'{len(ops.nms(b, s, 0.1))} kept')
    b5, s5 = boxes(rng, 5000, dev), torch.rand(5000, device=dev)
    add('nms', '5k boxes, thr 0.7', *ref_and_kernel(lambda: ops.nms(b5, s5, 0.7), repeat, ref_repeat=2))
    pts = torch.from_numpy(np.fromfile(scan, dtype=np.float32).reshape(-1, 4)[:, :3].copy()).to(dev)
    pb = boxes(rng, 100, dev)
    add('points_in_boxes', f'{len(pts) // 1000}k pts x 100 boxes',
        *ref_and_kernel(lambda: ops.points_in_boxes(pts, pb), repeat))
    scan_t = torch.from_numpy(np.fromfile(scan, dtype=np.float32).reshape(-1, 4)).to(dev)
    vox = lambda: ops.hard_voxelize(scan_t, [0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1], 5, 40000)  # noqa: E731
    t = cuda_ms(vox, repeat)
    rows.append({'op': 'hard_voxelize', 'sizes': f'{len(scan_t) // 1000}k pts, 0.05x0.05x0.1', 'ref_gpu_ms': t,
                 'cuda_kernel_ms': None, 'speedup': None, 'note': 'PyTorch ops on the GPU (no kernel)'})
    print(f'[ops] hard_voxelize {t:.2f} ms', flush=True)
    return rows


def sparse_rows(scan: Path, repeat: int):
    import bench_sparse
    from pcdet_ext.ops import sparse
    dev = DEV
    feats, indices, shape, _ = bench_sparse.load_voxels(scan)
    feats, indices = feats.to(dev), indices.to(dev)
    torch.manual_seed(0)
    net = bench_sparse.build_stack(sparse).to(dev).train()
    res = {'voxels': int(len(feats)), 'spatial_shape': shape}

    def fwd():
        return net(sparse.SparseConvTensor(feats, indices, shape, 1))

    def fwd_bwd():
        out = fwd()
        out.features.sum().backward()
        return out

    for backend in ('native', 'spconv'):
        os.environ['PCDET_EXT_SPARSE_BACKEND'] = backend
        try:
            with torch.no_grad():
                out = fwd()
            res[f'{backend}_out'] = bench_sparse._sorted_output(out)
            reset_peak()
            res[f'{backend}_fwd_ms'] = cuda_ms(fwd, repeat)
            res[f'{backend}_fwd_bwd_ms'] = cuda_ms(fwd_bwd, repeat)
            res[f'{backend}_peak_gpu_mib'] = peak_bytes() / 2 ** 20
            print(f'[sparse] {backend}: fwd {res[f"{backend}_fwd_ms"]:.2f} ms, fwd+bwd '
                  f'{res[f"{backend}_fwd_bwd_ms"]:.2f} ms', flush=True)
        except Exception as e:  # noqa: BLE001 - spconv missing or failing: report, keep native
            res[f'{backend}_error'] = f'{type(e).__name__}: {e}'
            print(f'[sparse] {backend} failed: {e}', flush=True)
        finally:
            del os.environ['PCDET_EXT_SPARSE_BACKEND']
    if 'native_out' in res and 'spconv_out' in res:
        (ka, fa), (kb, fb) = res['native_out'], res['spconv_out']
        res['same_sites'] = bool(torch.equal(ka, kb))
        if res['same_sites']:
            res['max_abs_diff'] = float((fa - fb).abs().max())
            res['max_abs_out'] = float(fa.abs().max())
    res.pop('native_out', None)
    res.pop('spconv_out', None)
    return res


def detector_rows(cfg_file: str, data: str, iters: int, batch_size: int):
    from pcdet_ext.datasets import build_dataloader
    from pcdet_ext.models import build_network
    from pcdet_ext.ops.sparse.conv import SparseConvolution
    from pcdet_ext.runtime.batch import load_data_to_gpu
    from pcdet_ext.runtime.common import load_config
    dev = DEV
    cfg = load_config(argparse.Namespace(cfg_file=cfg_file, set_cfgs=['DATA_CONFIG.DATA_PATH', data]))
    dataset, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size, False,
                                          workers=min(4, os.cpu_count() or 1),
                                          training=True, seed=0)
    batches, it = [], iter(loader)
    while len(batches) < iters:
        try:
            batches.append(load_data_to_gpu(next(it), dev))
        except StopIteration:
            it = iter(loader)
    voxels = statistics.mean(int(b['voxels'].shape[0]) for b in batches if 'voxels' in b)
    rows = []
    for backend in ('spconv', 'native'):
        os.environ['PCDET_EXT_SPARSE_BACKEND'] = backend
        model = None
        try:
            torch.manual_seed(0)
            model = build_network(cfg.MODEL, len(cfg.CLASS_NAMES), dataset).to(dev)
            opt = torch.optim.Adam(model.parameters(), 1e-4)
            model.train()
            k = [0]

            def step():
                b = dict(batches[k[0] % len(batches)])
                k[0] += 1
                ret, _, _ = model(b)
                opt.zero_grad()
                ret['loss'].backward()
                opt.step()

            reset_peak()
            train_ms = cuda_ms(step, iters - 2, warmup=2)
            peak = peak_bytes() / 2 ** 30
            model.eval()

            def infer():
                b = dict(batches[k[0] % len(batches)])
                k[0] += 1
                with torch.no_grad():
                    model(b)

            infer_ms = cuda_ms(infer, iters - 2, warmup=2)
            row = {'cfg': cfg_file, 'backend': backend, 'batch': batch_size, 'voxels_per_batch': voxels,
                   'train_ms': train_ms, 'train_frames_s': batch_size / train_ms * 1e3,
                   'infer_ms': infer_ms, 'infer_frames_s': batch_size / infer_ms * 1e3, 'peak_gpu_gib': peak}
            print(f'[detector] {Path(cfg_file).name} {backend}: train {train_ms:.1f} ms/batch '
                  f'({row["train_frames_s"]:.1f} fr/s), infer {infer_ms:.1f} ms ({row["infer_frames_s"]:.1f} fr/s), '
                  f'peak {peak:.2f} GiB', flush=True)
        except Exception as e:  # noqa: BLE001
            row = {'cfg': cfg_file, 'backend': backend, 'error': f'{type(e).__name__}: {e}'}
            print(f'[detector] {cfg_file} {backend} failed: {e}', flush=True)
            traceback.print_exc()
        finally:
            del os.environ['PCDET_EXT_SPARSE_BACKEND']
        rows.append(row)
        if model is not None and not any(isinstance(m, SparseConvolution) for m in model.modules()):
            row['backend'] = 'none (no sparse conv)'
            break   # e.g. PointPillars: the sparse backend changes nothing
    return rows


def machine():
    p = torch.cuda.get_device_properties(0) if DEV.type == 'cuda' else None
    return {'gpu': p.name if p else 'none (--device cpu dry run)',
            'gpu_mem_gib': round(p.total_memory / 2 ** 30, 1) if p else 0, 'cpu_cores': os.cpu_count(),
            'torch': torch.__version__, 'cuda': torch.version.cuda, 'python': platform.python_version(),
            'compiled_ops': {k: v for k, v in ops.compiled_backends().items() if k != 'errors'}}


def markdown(res) -> str:
    m = res['machine']
    out = ['# GPU benchmark (generated by tools/bench_gpu.py)', '',
           f"- date: {res['date']}; {m['gpu']} ({m['gpu_mem_gib']} GiB), {m['cpu_cores']} CPU cores, "
           f"torch {m['torch']} (CUDA {m['cuda']}), Python {m['python']}, compiled ops {m['compiled_ops']}",
           f"- command: `{res['command']}`", '- medians after warm-up, `torch.cuda.synchronize()` around each call',
           '']
    if res.get('ops'):
        out += ['## Geometry ops: PyTorch reference on the GPU vs the CUDA kernels', '',
                '| op | sizes | reference on GPU ms | CUDA kernel ms | speed-up | note |', '|---|---|---|---|---|---|']
        for r in res['ops']:
            k = f"{r['cuda_kernel_ms']:.3f}" if r['cuda_kernel_ms'] else '-'
            sp = f"{r['speedup']:.1f}x" if r['speedup'] else '-'
            out.append(f"| {r['op']} | {r['sizes']} | {r['ref_gpu_ms']:.3f} | {k} | {sp} | {r['note']} |")
        out.append('')
    s = res.get('sparse')
    if s:
        out += ['## Sparse conv stack (tools/bench_sparse.py stack) on a real KITTI scan', '',
                f"{s['voxels']} voxels, spatial shape {s['spatial_shape']}; same weights for both backends; "
                f"output sites identical: {s.get('same_sites')}, max |native - spconv| "
                f"{s.get('max_abs_diff', float('nan')):.2e} (max |out| {s.get('max_abs_out', float('nan')):.2f})", '',
                '| backend | forward ms | forward + backward ms | peak GPU MiB |', '|---|---|---|---|']
        for b in ('native', 'spconv'):
            if f'{b}_fwd_ms' in s:
                out.append(f"| {b} | {s[f'{b}_fwd_ms']:.2f} | {s[f'{b}_fwd_bwd_ms']:.2f} | "
                           f"{s[f'{b}_peak_gpu_mib']:.0f} |")
            else:
                out.append(f"| {b} | failed: {s.get(f'{b}_error', '?')[:120]} | | |")
        out.append('')
    if res.get('detectors'):
        out += ['## Detectors: training step and inference', '',
                '| config | sparse backend | batch | voxels / batch | train ms / batch | train frames/s | '
                'infer ms / batch | infer frames/s | peak GPU GiB |', '|---|---|---|---|---|---|---|---|---|']
        for r in res['detectors']:
            if 'error' in r:
                out.append(f"| {r['cfg']} | {r['backend']} | failed: {r['error'][:120]} | | | | | | |")
                continue
            out.append(f"| {r['cfg']} | {r['backend']} | {r['batch']} | {r['voxels_per_batch']:.0f} | "
                       f"{r['train_ms']:.1f} | {r['train_frames_s']:.1f} | {r['infer_ms']:.1f} | "
                       f"{r['infer_frames_s']:.1f} | {r['peak_gpu_gib']:.2f} |")
        out.append('')
    for k, v in res.get('errors', {}).items():
        out.append(f'- section {k} failed: `{v}`')
    return '\n'.join(out) + '\n'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scan', required=True, help='a KITTI velodyne .bin for the ops and sparse rows')
    ap.add_argument('--data', default=None, help='KITTI-format data (create_data.py) for the detector rows')
    ap.add_argument('--cfgs', nargs='*', default=['cfgs/kitti_models/second.yaml', 'cfgs/kitti_models/pointpillar.yaml'])
    ap.add_argument('--repeat', type=int, default=10)
    ap.add_argument('--iters', type=int, default=12, help='detector batches timed (2 more as warm-up)')
    ap.add_argument('--batch_size', type=int, default=4)
    ap.add_argument('--sections', nargs='*', default=['ops', 'sparse', 'detectors'])
    ap.add_argument('--json', default=None)
    ap.add_argument('--md', default=None)
    ap.add_argument('--device', default='cuda', help='cpu only to check the script itself (a dry run)')
    args = ap.parse_args(argv)
    global DEV
    DEV = torch.device(args.device)
    if DEV.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('bench_gpu: no CUDA device (torch.cuda.is_available() is False)')
    scan = Path(args.scan)
    if not scan.is_file():
        raise SystemExit(f'bench_gpu: --scan {scan} not found')
    res = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'machine': machine(),
           'command': 'python tools/bench_gpu.py ' + ' '.join(sys.argv[1:] if argv is None else argv), 'errors': {}}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        if args.md:
            Path(args.md).write_text(markdown(res))

    jobs = {'ops': lambda: ops_rows(scan, args.repeat), 'sparse': lambda: sparse_rows(scan, args.repeat),
            'detectors': lambda: [r for c in args.cfgs for r in detector_rows(c, args.data, args.iters, args.batch_size)]}
    for name in args.sections:
        if name == 'detectors' and not args.data:
            res['errors'][name] = 'no --data given'
            continue
        try:
            res[name] = jobs[name]()
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
            res['errors'][name] = f'{type(e).__name__}: {e}'
            traceback.print_exc()
        save()
    print(markdown(res))
    return res


if __name__ == '__main__':
    main()
