"""Where a training step's time goes: data loading, forward per top-level module, backward.

    OMP_NUM_THREADS=2 python tools/profile_step.py --cfg_file cfgs/synthetic_models/second_cpu.yaml \\
        --threads 2 --iters 6 --set DATA_CONFIG.DATA_PATH data/synthetic_bench

Data is loaded in the main process (no workers) so its cost is measured on its own; the first
iteration is a warm-up and not counted. Prints seconds per batch.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cfg_file', required=True)
    p.add_argument('--threads', type=int, default=1, help='torch intra-op threads')
    p.add_argument('--iters', type=int, default=6, help='iterations (the first is a warm-up)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--set', dest='set_cfgs', nargs=argparse.REMAINDER, default=None, help='KEY VALUE pairs')
    args = p.parse_args(argv)
    if args.iters < 2:
        p.error('--iters must be at least 2 (the first is a warm-up)')

    from pcdet_ext.datasets import build_dataloader
    from pcdet_ext.models import build_network
    from pcdet_ext.runtime.batch import load_data_to_gpu
    from pcdet_ext.runtime.common import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(args)
    dataset, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU,
                                          False, workers=0, training=True)
    device = torch.device(args.device)
    model = build_network(cfg.MODEL, len(cfg.CLASS_NAMES), dataset).to(device).train()
    optim = torch.optim.Adam(model.parameters(), 1e-3)

    spent, started = defaultdict(float), {}
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def before(name):
        def hook(_m, _i):
            sync()
            started[name] = time.perf_counter()
        return hook

    def after(name):
        def hook(_m, _i, _o):
            sync()
            spent[name] += time.perf_counter() - started[name]
        return hook

    for name, module in model.named_children():
        module.register_forward_pre_hook(before(name))
        module.register_forward_hook(after(name))

    batches = iter(loader)
    total = defaultdict(float)
    voxels = 0
    for it in range(args.iters):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        load_data_to_gpu(batch, device)
        ret, _, _ = model(batch)
        sync()
        t2 = time.perf_counter()
        optim.zero_grad()
        ret['loss'].backward()
        optim.step()
        sync()
        t3 = time.perf_counter()
        if it == 0:
            spent.clear()
            continue
        total['data'] += t1 - t0
        total['forward'] += t2 - t1
        total['backward+step'] += t3 - t2
        voxels += int(batch['voxels'].shape[0]) if 'voxels' in batch else 0
    n = args.iters - 1
    print(f'{args.cfg_file}: batch {cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU}, {args.threads} thread(s), '
          f'{n} timed iterations, {voxels / n:.0f} voxels per batch')
    for key, val in total.items():
        print(f'  {key:16s} {val / n:7.3f} s')
    for key, val in spent.items():
        print(f'    forward {key:20s} {val / n:7.3f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
