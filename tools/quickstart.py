"""The README's main job on the embedded synthetic data, end to end on a CPU:

  1. generate a small synthetic KITTI-format dataset (tools/create_data.py synthetic),
  2. train SECOND (cfgs/synthetic_models/second_cpu.yaml) with tools/train.py,
  3. evaluate it on the synthetic val split (KITTI protocol; tools/train.py evaluates at the end),
  4. write BEV / image PNGs of predictions vs ground truth (tools/demo.py).

Every step is one of the package's ordinary commands, run as a user would; re-running resumes
(generated frames are kept, training resumes from its newest checkpoint).

    python tools/quickstart.py [--frames 160] [--epochs 6] [--out output/quickstart]
"""
import argparse
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(step: str, cmd: list) -> float:
    print(f'\n=== {step}\n$ {" ".join(cmd)}', flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, check=True)
    dt = time.time() - t0
    print(f'=== {step}: done in {dt:.0f} s', flush=True)
    return dt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=160, help='synthetic frames (3/4 train, 1/4 val)')
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--data', default='data/synthetic_quickstart')
    p.add_argument('--out', default='output/quickstart')
    args = p.parse_args(argv)
    py = sys.executable
    cfg = 'cfgs/synthetic_models/second_cpu.yaml'
    times = {}
    if not (REPO / args.data / 'kitti_infos_val.pkl').exists():
        times['generate'] = run('generate synthetic data', [
            py, 'tools/create_data.py', 'synthetic', '--out', args.data, '--frames', str(args.frames),
            '--seed', str(args.seed)])
    times['train+eval'] = run('train SECOND and evaluate on synthetic val', [
        py, 'tools/train.py', '--cfg_file', cfg, '--epochs', str(args.epochs), '--extra_tag', 'quickstart',
        '--workers', '1', '--fix_random_seed', '--set', 'DATA_CONFIG.DATA_PATH', args.data])
    ckpts = sorted(glob.glob(str(REPO / 'output/synthetic_models/second_cpu/quickstart/ckpt/checkpoint_epoch_*.pth')),
                   key=os.path.getmtime)
    times['demo'] = run('write BEV PNGs', [
        py, 'tools/demo.py', '--cfg_file', cfg, '--ckpt', ckpts[-1], '--data_path', args.data,
        '--num_frames', '4', '--out_dir', args.out, '--set', 'DATA_CONFIG.DATA_PATH', args.data])
    print('\nquickstart finished:', ', '.join(f'{k} {v:.0f} s' for k, v in times.items()))
    print(f'evaluation: output/synthetic_models/second_cpu/quickstart/eval/ ; PNGs: {args.out}/')


if __name__ == '__main__':
    main()
