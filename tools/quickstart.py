"""The README's main job on the embedded synthetic data, end to end on a CPU.

--job alpi (default): ALPI auto-labelling from 2D boxes only
  1. generate a synthetic KITTI-format dataset (tools/create_data.py synthetic),
  2. auto-label every object in 3D from its 2D box and the class size prior
     (tools/alpi_label.py: step 0 and the refinement stage, 6 epochs each, to stay well inside
     20 minutes on 2 cores; --steps N adds pseudo-labelling steps, --epochs E changes the
     schedule; 3D fields never read),
  3. print the pseudo-label quality table against the synthetic 3D ground truth (used for
     evaluation only) and write PNGs (BEV of pseudo vs true boxes, error histograms).
--job second: train SECOND (cfgs/synthetic_models/second_cpu.yaml) with tools/train.py,
  evaluate on synthetic val, write BEV PNGs with tools/demo.py.

Every step is one of the package's ordinary commands, run as a user would; re-running resumes
(generated frames are kept, finished stages are skipped, training resumes from checkpoints).

    python tools/quickstart.py [--job alpi|second] [--frames 200] [--out output/quickstart]
"""
import argparse
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The ALPI job's schedule: 6 epochs per stage (the config's 12 are for the benchmark); with the
# config's 600 % proxies step 0 + refinement on 200 frames fit well inside 20 minutes on 2 cores.
ALPI_QUICK_EPOCHS = 6


def run(step: str, cmd: list) -> float:
    print(f'\n=== {step}\n$ {" ".join(cmd)}', flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, check=True)
    dt = time.time() - t0
    print(f'=== {step}: done in {dt:.0f} s', flush=True)
    return dt


def run_alpi(args, py, times, t_start):
    out = REPO / args.out / 'alpi'
    cmd = [py, 'tools/alpi_label.py', '--data_path', args.data, '--split', 'trainval',
           '--cfg_file', 'cfgs/alpi/alpi_synthetic_cpu.yaml', '--steps', str(args.steps), '--out', str(out),
           '--epochs', str(args.epochs or ALPI_QUICK_EPOCHS)]
    times['auto-label'] = run('ALPI: auto-label in 3D from 2D boxes only', cmd)
    stages = sorted(p for p in out.iterdir() if p.is_dir() and (p / 'report.txt').exists())
    final = out / 'refine' if (out / 'refine' / 'report.txt').exists() else stages[-1]
    print(f'\n=== pseudo-label quality against the synthetic 3D ground truth ({final.name})')
    print((final / 'report.txt').read_text())
    pngs = sorted(str(p.relative_to(REPO)) for p in out.rglob('*.png'))
    print(f'KITTI label files: {out.relative_to(REPO)}/label_2/  ({len(list((out / "label_2").glob("*.txt")))} frames)')
    print('PNGs:', *pngs[:8], '...' if len(pngs) > 8 else '', sep='\n  ')
    print('\nquickstart finished in %.0f s:' % (time.time() - t_start),
          ', '.join(f'{k} {v:.0f} s' for k, v in times.items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--job', choices=['alpi', 'second'], default='alpi')
    p.add_argument('--frames', type=int, default=200, help='synthetic frames (3/4 train, 1/4 val)')
    p.add_argument('--epochs', type=int, default=None,
                   help=f'epochs per training stage (default: ALPI {ALPI_QUICK_EPOCHS}, SECOND the config\'s)')
    p.add_argument('--steps', type=int, default=0, help='ALPI pseudo-labelling steps after step 0 (default 0)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--data', default='data/synthetic_quickstart')
    p.add_argument('--out', default='output/quickstart')
    args = p.parse_args(argv)
    py = sys.executable
    times = {}
    t_start = time.time()
    if not (REPO / args.data / 'kitti_infos_val.pkl').exists():
        times['generate'] = run('generate synthetic data', [
            py, 'tools/create_data.py', 'synthetic', '--out', args.data, '--frames', str(args.frames),
            '--seed', str(args.seed)])
    if args.job == 'alpi':
        return run_alpi(args, py, times, t_start)
    cfg = 'cfgs/synthetic_models/second_cpu.yaml'
    epochs = ['--epochs', str(args.epochs)] if args.epochs else []
    times['train+eval'] = run('train SECOND and evaluate on synthetic val', [
        py, 'tools/train.py', '--cfg_file', cfg, *epochs, '--extra_tag', 'quickstart',
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
