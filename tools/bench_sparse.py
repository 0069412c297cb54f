"""Benchmark: native sparse conv vs spconv 2.3.8 CPU on a VoxelBackBone8x-like stack, real KITTI scan.

    OMP_NUM_THREADS=1 python tools/bench_sparse.py [--scan PATH] [--repeat 5] [--json out.json]
        [--md docs/benchmarks_sparse.md]

Stack: SubM 4->16, then 3 strided stages (SparseConv3d k3 s2 + SubM) to 32, 64, 64 channels, each conv
followed by BatchNorm1d + ReLU (OpenPCDet's VoxelBackBone8x without its second SubM per stage and
conv_out). Input: the scan voxelised at 0.05 x 0.05 x 0.1 m over [0, -40, -3, 70.4, 40, 1], mean of
the points in each voxel (up to 5, as OpenPCDet) as features.

The reference is spconv 2.3.8's CPU path run single-threaded (its multi-threaded scatter is not
reliable, and its backward fails on CPU, so only its forward is timed); the same weights are
loaded into both stacks and the outputs are compared. spconv is a benchmark-only dependency.
Peak RSS of the native stack (forward + backward) is measured in a separate process that never
imports spconv. `bench_rows()` returns rows for tools/bench_ops.py.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCAN = REPO.parent / 'shared' / 'data' / 'kitti_real' / 'training' / 'velodyne' / '000000.bin'
VOXEL_SIZE = [0.05, 0.05, 0.1]
PC_RANGE = [0.0, -40.0, -3.0, 70.4, 40.0, 1.0]
MAX_POINTS_PER_VOXEL = 5
CHANNELS = [(4, 16), (16, 32), (32, 64), (64, 64)]

if __name__ == '__main__':
    # Must precede `import torch` (and spconv) so every OpenMP pool starts single-threaded.
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def load_voxels(scan: Path):
    """-> features (V, 4) float32 (mean point), indices (V, 4) int32 [0, z, y, x], spatial_shape [Z, Y, X]."""
    if not scan.is_file():
        raise SystemExit(f'bench_sparse: scan not found: {scan}')
    raw = np.fromfile(scan, dtype=np.float32)
    if raw.size % 4:
        raise SystemExit(f'bench_sparse: {scan} is not a KITTI .bin (size {raw.size} floats is not a multiple of 4)')
    pts = torch.from_numpy(raw.reshape(-1, 4))
    from pcdet_ext.ops.voxelize import grid_size, hard_voxelize
    voxels, coords, num = hard_voxelize(pts, VOXEL_SIZE, PC_RANGE, MAX_POINTS_PER_VOXEL, 10 ** 7)
    feats = voxels.sum(1) / num.clamp(min=1).unsqueeze(1).to(voxels.dtype)
    nx, ny, nz = grid_size(VOXEL_SIZE, PC_RANGE)
    indices = torch.cat([torch.zeros_like(coords[:, :1]), coords], 1).int()
    return feats.contiguous(), indices.contiguous(), [nz + 1, ny, nx], int(pts.shape[0])


def build_stack(lib):
    """VoxelBackBone8x-like stack with `lib` = pcdet_ext.ops.sparse or spconv.pytorch (same state_dict keys)."""
    def block(cin, cout, subm, key):
        if subm:
            conv = lib.SubMConv3d(cin, cout, 3, padding=1, bias=False, indice_key=key)
        else:
            conv = lib.SparseConv3d(cin, cout, 3, stride=2, padding=1, bias=False, indice_key=key)
        return lib.SparseSequential(conv, nn.BatchNorm1d(cout, eps=1e-3, momentum=0.01), nn.ReLU())
    layers = [block(4, 16, True, 'subm1')]
    for i, (cin, cout) in enumerate(CHANNELS[1:], start=2):
        layers += [block(cin, cout, False, f'spconv{i}'), block(cout, cout, True, f'subm{i}')]
    return lib.SparseSequential(*layers)


def _clock(fn):
    """(wall ms, process CPU ms) of one call; CPU time is what a shared, loaded machine distorts least."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3


def _timings(fns, repeat):
    """Median wall and CPU ms of each named fn; calls are interleaved so load spikes hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    runs = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            runs[name].append(_clock(fn))
    return {name: (float(np.median([r[0] for r in rs])), float(np.median([r[1] for r in rs])))
            for name, rs in runs.items()}


def _sorted_output(out):
    idx = out.indices.long()
    key = ((idx[:, 0] * out.spatial_shape[0] + idx[:, 1]) * out.spatial_shape[1] + idx[:, 2]) * \
        out.spatial_shape[2] + idx[:, 3]
    order = torch.argsort(key)
    return key[order], out.features[order]


def run_native_only(scan: Path, threads: int):
    """Child process: native fwd+bwd a few times, print peak RSS (GiB) as JSON."""
    torch.set_num_threads(threads)
    from pcdet_ext.ops import sparse
    feats, indices, shape, _ = load_voxels(scan)
    net = build_stack(sparse).train()
    for _ in range(3):
        f = feats.clone().requires_grad_(True)
        out = net(sparse.SparseConvTensor(f, indices, shape, 1))
        out.features.sum().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB on Linux
    print(json.dumps({'peak_rss_gib': peak}))


def measure(scan: Path, repeat: int):
    from pcdet_ext.ops import sparse
    torch.manual_seed(0)
    torch.set_num_threads(1)
    feats, indices, shape, n_points = load_voxels(scan)
    native = build_stack(sparse).train()
    res = {'scan': str(scan), 'points': n_points, 'voxels': int(feats.shape[0]), 'spatial_shape': shape,
           'repeat': repeat, 'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
           'loadavg_before': os.getloadavg()[0]}

    def fwd(net, lib):
        return net(lib.SparseConvTensor(feats, indices, shape, 1))

    def fwd_bwd(net, lib):
        # Input features need no grad (OpenPCDet's MeanVFE has no parameters); weights and BN do.
        out = net(lib.SparseConvTensor(feats, indices, shape, 1))
        out.features.sum().backward()
        return out

    out = fwd(native, sparse)
    res['out_sites'] = int(out.features.shape[0])
    res['out_spatial_shape'] = out.spatial_shape
    fns = {'native_fwd': lambda: fwd(native, sparse), 'native_fwd_bwd': lambda: fwd_bwd(native, sparse)}
    try:
        import spconv
        import spconv.pytorch as spt
        res['spconv_version'] = getattr(spconv, '__version__', '?')
        ref = build_stack(spt).train()
        res['state_dict_loads'] = str(ref.load_state_dict(native.state_dict(), strict=True))
        with torch.no_grad():
            a_key, a_feat = _sorted_output(fwd(native, sparse))
            b_key, b_feat = _sorted_output(fwd(ref, spt))
        res['same_output_sites'] = bool(torch.equal(a_key, b_key))
        if res['same_output_sites']:
            res['max_abs_diff'] = float((a_feat - b_feat).abs().max())
            res['max_abs_out'] = float(a_feat.abs().max())
        fns['spconv_fwd'] = lambda: fwd(ref, spt)
        try:
            fwd_bwd(ref, spt)
            fns['spconv_fwd_bwd'] = lambda: fwd_bwd(ref, spt)
        except Exception as e:  # noqa: BLE001 - expected on CPU: spconv's backward asks for CUDA
            res['spconv_backward_error'] = f'{type(e).__name__}: {str(e).splitlines()[-1][:200]}'
    except Exception as e:  # noqa: BLE001
        res['spconv_error'] = f'spconv not importable: {e}'
    for name, (wall, cpu) in _timings(fns, repeat).items():
        res[f'{name}_ms_t1'], res[f'{name}_cpu_ms_t1'] = wall, cpu
    torch.set_num_threads(2)
    two = {k: v for k, v in fns.items() if k.startswith('native')}
    for name, (wall, cpu) in _timings(two, repeat).items():
        res[f'{name}_ms_t2'], res[f'{name}_cpu_ms_t2'] = wall, cpu
    torch.set_num_threads(1)
    res['loadavg_after'] = os.getloadavg()[0]
    return res


def peak_rss(scan: Path, threads: int = 1) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, '--native-only', '--scan', str(scan), '--threads', str(threads)],
                         capture_output=True, text=True, env=env, cwd=str(REPO), check=False)
    if out.returncode:
        raise RuntimeError(f'bench_sparse --native-only failed:\n{out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_rss_gib']


def rows_from(res, rss):
    sizes = f"{res['voxels']} voxels {res['spatial_shape']} -> {res['out_sites']} sites"
    spc = res.get('spconv_fwd_ms_t1')
    if spc:
        note = f"ref = spconv {res['spconv_version']} CPU 1 thread"
        if not res.get('same_output_sites', False):
            note += '; OUTPUT SITES DIFFER'
        else:
            note += f"; max|native-spconv| {res['max_abs_diff']:.1e}"
    else:
        note = res.get('spconv_error', 'spconv unavailable')
    busy = max(res['loadavg_before'], res['loadavg_after']) > (os.cpu_count() or 1)
    busy_note = (f"; machine oversubscribed (load {max(res['loadavg_before'], res['loadavg_after']):.1f} on "
                 f"{os.cpu_count()} cores): 2-thread wall times not meaningful") if busy else ''
    rows = []
    for t in (1, 2):
        fwd, cpu = res[f'native_fwd_ms_t{t}'], res[f'native_fwd_cpu_ms_t{t}']
        extra = f"; CPU-time ratio {res['spconv_fwd_cpu_ms_t1'] / cpu:.2f}x" if spc and t == 1 else ''
        rows.append({'op': 'sparse stack fwd', 'sizes': sizes, 'ref_ms': spc, 'compiled_ms': fwd,
                     'speedup': (spc / fwd) if spc else None, 'threads': t, 'peak_rss_gib': rss,
                     'note': note + extra + (f'; native {t} threads{busy_note}' if t > 1 else '')})
    for t in (1, 2):
        rows.append({'op': 'sparse stack fwd+bwd', 'sizes': sizes, 'ref_ms': res.get('spconv_fwd_bwd_ms_t1'),
                     'compiled_ms': res[f'native_fwd_bwd_ms_t{t}'], 'speedup': None, 'threads': t,
                     'peak_rss_gib': rss,
                     'note': 'spconv CPU backward: ' + res.get('spconv_backward_error', 'ran')[:60]
                     + (busy_note if t > 1 else '')})
    return rows


def bench_rows(scan=None, repeat: int = 5):
    """Rows {op, sizes, ref_ms, compiled_ms, speedup, threads, peak_rss_gib, note} for tools/bench_ops.py.

    Runs in a child process with OMP_NUM_THREADS=1 so spconv's OpenMP pool is single-threaded."""
    scan = Path(scan) if scan else DEFAULT_SCAN
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'sparse.json'
        env = dict(os.environ, OMP_NUM_THREADS='1')
        out = subprocess.run([sys.executable, __file__, '--scan', str(scan), '--repeat', str(repeat),
                              '--json', str(path), '--quiet'], capture_output=True, text=True, env=env,
                             cwd=str(REPO), check=False)
        if out.returncode:
            raise RuntimeError(f'bench_sparse failed:\n{out.stderr[-2000:]}')
        return json.loads(path.read_text())['rows']


def format_table(rows):
    head = f"{'op':<22} {'threads':>7} {'ref ms':>9} {'native ms':>10} {'speed-up':>9} {'peak RSS':>9}  note"
    lines = [head, '-' * len(head)]
    for r in rows:
        ref = f"{r['ref_ms']:.1f}" if r['ref_ms'] else '-'
        sp = f"{r['speedup']:.2f}x" if r['speedup'] else '-'
        lines.append(f"{r['op']:<22} {r['threads']:>7} {ref:>9} {r['compiled_ms']:>10.1f} {sp:>9} "
                     f"{r['peak_rss_gib']:>7.2f}G  {r['note']}")
    return '\n'.join(lines)


def write_markdown(path: Path, res, rows, command):
    cpu = platform.processor() or platform.machine()
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    text = [
        '# Sparse convolution benchmark (generated by tools/bench_sparse.py)', '',
        f'- date: {datetime.date.today().isoformat()}',
        f'- machine: {cpu}, {os.cpu_count()} CPU cores visible, torch {torch.__version__}, '
        f'Python {platform.python_version()}',
        f'- command: `{command}`',
        f"- input: {res['scan']} ({res['points']} points) voxelised at {VOXEL_SIZE} m over {PC_RANGE}: "
        f"{res['voxels']} voxels, spatial_shape {res['spatial_shape']}; output {res['out_sites']} sites "
        f"at {res['out_spatial_shape']}",
        '- stack: SubM 4->16, 3 x (SparseConv3d k3 s2 p1 + SubM k3) to 32, 64, 64 channels, BatchNorm1d + ReLU '
        'after each conv, train mode',
        f"- reference: spconv {res.get('spconv_version', 'n/a')} CPU path, single thread (OMP_NUM_THREADS=1, "
        'torch.set_num_threads(1)); same weights loaded into both; '
        f"output sites identical: {res.get('same_output_sites')}, max abs feature difference "
        f"{res.get('max_abs_diff', float('nan')):.2e}",
        f"- spconv backward on CPU: {res.get('spconv_backward_error', 'ran')}",
        f"- median of {res['repeat']} runs after one warm-up, native and spconv calls interleaved; wall "
        f"time in the table, process CPU time in the JSON; 1-min load average {res['loadavg_before']:.1f} "
        f"before, {res['loadavg_after']:.1f} after (2-core machine shared with other jobs: wall times at "
        '2 threads suffer most from it)',
        '- peak RSS: a separate process that runs only the native stack (forward + backward, 3 times) '
        'and never imports spconv', '',
        '```', format_table(rows), '```', '',
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(text))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scan', default=str(DEFAULT_SCAN))
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--json', default=None, help='write {result, rows} here')
    ap.add_argument('--md', default=None, help='write a markdown report here (e.g. docs/benchmarks_sparse.md)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--native-only', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--quiet', action='store_true')
    args = ap.parse_args()
    scan = Path(args.scan)
    if args.native_only:
        run_native_only(scan, args.threads)
        return
    res = measure(scan, args.repeat)
    rss = peak_rss(scan)
    rows = rows_from(res, rss)
    if not args.quiet:
        print(format_table(rows))
        print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({'result': res, 'rows': rows}, indent=1))
    if args.md:
        write_markdown(Path(args.md), res, rows, 'OMP_NUM_THREADS=1 python ' + ' '.join(sys.argv))


if __name__ == '__main__':
    main()
