"""tools/al_round.py under torchrun (2 CPU processes, gloo): DDP training, CPSP with its bank
refresh, the pool scored in two shares and merged, rank 0 writing each artifact once; a re-run
finds the round finished on every rank."""
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures('one_torch_thread')

REPO = Path(__file__).resolve().parents[1]
CFG = """_BASE_CONFIG_: {repo}/cfgs/sssal/pointpillar_tiny.yaml
DATA_CONFIG:
    DATA_PATH: {root}
ACTIVE_LEARNING:
    INITIAL_BOXES: 20
    MIN_TRAIN_ITERS: 0
"""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _lines(p):
    return [x for x in Path(p).read_text().split('\n') if x]


def test_sssal_round_on_two_ranks(tmp_path):
    from pcdet_ext.datasets.kitti.kitti_infos import create_kitti_infos
    from pcdet_ext.datasets.synthetic import generate_dataset
    root = tmp_path / 'data'
    generate_dataset(root, num_frames=15, seed=4, workers=1, progress=False, write_images=False)
    create_kitti_infos(root, workers=1, progress=False, log=lambda *a: None)
    cfg = tmp_path / 'cfgs' / 'al_dist' / 'tiny.yaml'
    cfg.parent.mkdir(parents=True)
    cfg.write_text(CFG.format(repo=REPO, root=root))
    def cmd():
        return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
                '--master_port', str(_free_port()), str(REPO / 'tools' / 'al_round.py'), '--launcher', 'pytorch',
                '--cfg_file', str(cfg), '--strategy', 'cal', '--cpsp', '--budget_boxes', '15', '--output_root',
                str(tmp_path), '--workers', '0', '--device', 'cpu']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run(cmd(), capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / 'output' / 'al_dist' / 'tiny' / 'default'
    rd = exp / 'round_0'
    assert (rd / 'done' / 'round.json').is_file()
    pool = _lines(root / 'ImageSets' / 'train.txt')
    start_lab = _lines(rd / 'start' / 'labelled.txt')
    lab, unl = _lines(rd / 'labelled.txt'), _lines(rd / 'unlabelled.txt')
    assert len(set(lab)) == len(lab) and sorted(lab + unl) == sorted(pool) and len(lab) > len(start_lab)
    # both ranks' shares of the pool were merged: one summary per unlabelled frame, for both models
    for name in ('summaries.pkl', 'summaries_A.pkl'):
        with open(rd / name, 'rb') as f:
            summ = pickle.load(f)['summaries']
        assert sorted(summ) == sorted(set(pool) - set(start_lab)), name
    sel = json.loads((rd / 'selection.json').read_text())
    assert sorted(sel['scores']) == sorted(set(pool) - set(start_lab))
    assert list((rd / 'cpsp').glob('banks_epoch_*.pkl')), 'CPSP never refreshed its banks under DDP'
    assert len(list((exp / 'log').glob('al_round_*.log'))) == 1      # rank 0 only
    assert len(list(rd.glob('train/log/train_*.log'))) == 1
    assert 'processes 2' in next(rd.glob('train/log/train_*.log')).read_text()
    assert 'mAP' in json.loads((rd / 'eval.json').read_text())
    before = (rd / 'selection.json').stat().st_mtime
    again = subprocess.run(cmd(), capture_output=True, text=True, timeout=200, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (rd / 'selection.json').stat().st_mtime == before
    assert 'already finished' in again.stdout + again.stderr
