"""Score an unlabelled pool with a detector checkpoint: per-frame summaries (boxes, scores, class
probabilities, pooled box features, frame feature), the input of every query strategy. Frames
are read label-free and streamed; only the summaries stay in memory. Under torchrun the pool is
split across ranks and merged on rank 0.

    python tools/al_score.py --cfg_file cfgs/sssal/second_synthetic.yaml --ckpt model.pth \\
        --split train --out summaries.pkl
    torchrun --nproc_per_node 2 tools/al_score.py --launcher pytorch --cfg_file ... --ckpt ... --out ...
    # memory at KITTI scale: a 3712-frame pool made of links to the split's frames (no labels linked)
    python tools/peak_rss.py -- python tools/al_score.py --cfg_file ... --ckpt ... --repeat_pool 3712 \\
        --out /tmp/summaries.pkl --json /tmp/al_score.json

Prints (and with --json writes) frames, boxes, the summaries' size, wall time, frames/s and the
peak resident memory of each rank. `tools/al_round.py` scores the same way inside a round.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pcdet_ext.active.summaries import save_summaries, score_frames  # noqa: E402
from pcdet_ext.datasets.data_io import read_split_file  # noqa: E402
from pcdet_ext.config import ConfigError  # noqa: E402
from pcdet_ext.runtime import dist as dist_utils  # noqa: E402
from pcdet_ext.runtime.checkpoint import CheckpointError, read_checkpoint  # noqa: E402
from pcdet_ext.runtime.common import load_config, resolve_device, resolve_root_path  # noqa: E402

# what a label-free frame needs, folder -> file suffix; label_2 is never linked (the scorer must not need it)
POOL_FILES = {'velodyne': '.bin', 'calib': '.txt', 'image_2': '.png'}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cfg_file', required=True, help='detector config (DATA_CONFIG.DATA_PATH is the dataset)')
    p.add_argument('--ckpt', required=True, help='checkpoint to score with')
    p.add_argument('--split', default=None, help='ImageSets list of the pool (default DATA_SPLIT.train)')
    p.add_argument('--ids', default=None, help='a text file of frame ids instead of --split')
    p.add_argument('--out', required=True, help='summaries .pkl to write (atomically, rank 0)')
    p.add_argument('--repeat_pool', type=int, default=None,
                   help='benchmark: score a pool of this many frames made of links to the listed frames, '
                        'cycled (to measure memory at scale without generating data)')
    p.add_argument('--mc_passes', type=int, default=0, help='stochastic passes (MC dropout)')
    p.add_argument('--batch_size', type=int, default=None, help='frames per batch (default SCORE_BATCH_SIZE or 4)')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--device', default='auto')
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none')
    p.add_argument('--tcp_port', type=int, default=18888)
    p.add_argument('--json', default=None, help='write the report here (rank 0)')
    p.add_argument('--set', dest='set_cfgs', default=None, nargs=argparse.REMAINDER)
    return p


def replicated_pool(root: Path, ids, n: int, folder: Path):
    """A KITTI-layout folder of n frames whose files link to `ids` in turn; returns (root, new ids)."""
    src = root / 'training'
    new_ids = [f'{i:06d}' for i in range(n)]
    for sub, ext in POOL_FILES.items():
        if not (src / sub).is_dir():
            continue
        (folder / 'training' / sub).mkdir(parents=True, exist_ok=True)
        for i, nid in enumerate(new_ids):
            target = src / sub / f'{ids[i % len(ids)]}{ext}'
            link = folder / 'training' / sub / f'{nid}{ext}'
            if target.is_file() and not link.exists():
                os.symlink(target.resolve(), link)
    return folder, new_ids


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    ns = argparse.Namespace(cfg_file=args.cfg_file, set_cfgs=args.set_cfgs)
    if not Path(args.cfg_file).is_file():
        print(f'al_score.py: error: --cfg_file {args.cfg_file}: file not found', file=sys.stderr)
        return 2
    try:
        read_checkpoint(args.ckpt)  # a missing or unreadable checkpoint fails before any work
    except CheckpointError as e:
        print(f'al_score.py: error: --ckpt: {e}', file=sys.stderr)
        return 2
    try:
        cfg = load_config(ns)
    except ConfigError as e:   # a bad --set key or a broken yaml
        print(f'al_score.py: error: {e}', file=sys.stderr)
        return 2
    root = resolve_root_path(cfg)
    if root is None or not (Path(root) / 'training').is_dir():
        print(f'al_score.py: error: {args.cfg_file}: DATA_CONFIG.DATA_PATH {root} has no training/ folder',
              file=sys.stderr)
        return 2
    try:
        if args.ids:
            ids = read_split_file(args.ids)
        else:
            split = args.split or cfg.DATA_CONFIG.DATA_SPLIT['train']
            ids = read_split_file(Path(root) / 'ImageSets' / f'{split}.txt')
    except Exception as e:  # noqa: BLE001 - DataFileError names the file
        print(f'al_score.py: error: {e}', file=sys.stderr)
        return 2
    if not ids:
        print('al_score.py: error: the pool is empty (no frame ids)', file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    dist = args.launcher == 'pytorch'
    if dist:
        dist_utils.init_dist_pytorch(args.tcp_port, device=str(device))
        if device.type == 'cuda':
            import torch
            device = torch.device('cuda', torch.cuda.current_device())
    rank, world = dist_utils.get_dist_info()
    al = cfg.get('ACTIVE_LEARNING', None) or {}
    batch = args.batch_size or int(al.get('SCORE_BATCH_SIZE', 4) or 4)
    tmp = None
    if args.repeat_pool:
        # rank 0 makes the links in one folder shared by the ranks
        tmp = Path(tempfile.gettempdir()) / f'al_score_pool_{os.getppid() if dist else os.getpid()}'
        if rank == 0:
            pool = replicated_pool(Path(root), ids, args.repeat_pool, tmp)
        dist_utils.barrier()
        if rank != 0:  # the links exist now: this only names them
            pool = replicated_pool(Path(root), ids, args.repeat_pool, tmp)
        root, ids = pool
    t0 = time.time()
    summaries = score_frames(cfg, ids, args.ckpt, root_path=root, batch_size=batch, workers=args.workers,
                             device=device, mc_passes=args.mc_passes, dist=dist, progress=rank == 0)
    wall = time.time() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
    peaks = [peak_gib]
    if dist:
        import torch.distributed as tdist
        peaks = [None] * world
        tdist.all_gather_object(peaks, peak_gib)
    report = None
    if rank == 0:
        save_summaries(summaries, args.out)
        nbytes = len(pickle.dumps(summaries, protocol=pickle.HIGHEST_PROTOCOL))
        boxes = sum(s.num_boxes for s in summaries.values())
        report = {'frames': len(summaries), 'boxes': boxes, 'ranks': world, 'batch_size': batch,
                  'summaries_mib': round(nbytes / 2 ** 20, 2), 'kib_per_frame': round(nbytes / 1024 / len(summaries), 2),
                  'wall_s': round(wall, 1), 'frames_per_s': round(len(summaries) / max(wall, 1e-9), 2),
                  'peak_rss_gib_per_rank': [round(p, 3) for p in peaks], 'device': str(device),
                  'out': str(args.out)}
        print(json.dumps(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    dist_utils.barrier()
    if tmp is not None and rank == 0:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    dist_utils.destroy()
    return 0


if __name__ == '__main__':
    sys.exit(main())
