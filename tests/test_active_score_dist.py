"""tools/al_score.py: pool scoring with a checkpoint, split across two torchrun ranks (gloo, CPU)
and merged: the same summaries as one process. --repeat_pool links a large pool to a few frames
(without their labels) and every copy scores as its source frame."""
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures('one_torch_thread')

REPO = Path(__file__).resolve().parents[1]
TOOL = str(REPO / 'tools' / 'al_score.py')
CFG = """_BASE_CONFIG_: {repo}/cfgs/sssal/pointpillar_tiny.yaml
DATA_CONFIG:
    DATA_PATH: {root}
"""
ENV = {'OMP_NUM_THREADS': '1'}


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    import torch
    from pcdet_ext.active.summaries import build_label_free_dataloader
    from pcdet_ext.datasets.synthetic import generate_dataset
    from pcdet_ext.models import build_network
    from pcdet_ext.runtime import checkpoint_state, save_checkpoint
    from pcdet_ext.runtime.common import load_config
    import argparse
    base = tmp_path_factory.mktemp('al_score')
    root = base / 'data'
    generate_dataset(root, num_frames=9, seed=5, workers=1, progress=False, write_images=False)
    cfg_file = base / 'cfgs' / 'al_score' / 'tiny.yaml'
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text(CFG.format(repo=REPO, root=root))
    cfg = load_config(argparse.Namespace(cfg_file=str(cfg_file), set_cfgs=None))
    ids = (root / 'ImageSets' / 'train.txt').read_text().split()
    ds, _ = build_label_free_dataloader(cfg.DATA_CONFIG, list(cfg.CLASS_NAMES), ids, root_path=root)
    torch.manual_seed(1)  # random weights: with SCORE_THRESH 0 every frame has boxes to compare
    model = build_network(cfg.MODEL, num_class=3, dataset=ds)
    ckpt = save_checkpoint(checkpoint_state(model, None, 1, 1), base / 'checkpoint_epoch_1')
    return base, root, str(cfg_file), str(ckpt), ids


def _load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)['summaries']


def _assert_same(a, b, ids_a=None):
    for fid, sb in b.items():
        sa = a[ids_a[fid] if ids_a else fid]
        assert sa.num_boxes == sb.num_boxes and sa.num_boxes > 0, fid
        np.testing.assert_allclose(sa.scores, sb.scores, atol=1e-5, err_msg=fid)
        np.testing.assert_allclose(sa.boxes, sb.boxes, atol=1e-4, err_msg=fid)
        np.testing.assert_allclose(sa.box_features, sb.box_features, atol=1e-4, err_msg=fid)
        assert np.array_equal(sa.labels, sb.labels), fid


def test_two_ranks_match_one_process(setup):
    import os
    base, root, cfg, ckpt, ids = setup
    assert len(ids) % 2 == 1, 'an odd pool exercises the sampler padding'
    common = ['--cfg_file', cfg, '--ckpt', ckpt, '--workers', '0', '--device', 'cpu', '--batch_size', '1']
    env = {**os.environ, **ENV}
    one = subprocess.run([sys.executable, TOOL, *common, '--out', str(base / 'one.pkl')],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                          '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), TOOL,
                          '--launcher', 'pytorch', *common, '--out', str(base / 'two.pkl'),
                          '--json', str(base / 'two.json')],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    a, b = _load(base / 'one.pkl'), _load(base / 'two.pkl')
    assert sorted(a) == sorted(b) == sorted(ids)  # no frame lost or doubled by the padding
    _assert_same(a, b)
    import json
    rep = json.loads((base / 'two.json').read_text())
    assert rep['ranks'] == 2 and rep['frames'] == len(ids) and len(rep['peak_rss_gib_per_rank']) == 2


def test_repeat_pool_scores_links_without_labels(setup, capsys):
    base, root, cfg, ckpt, ids = setup
    sys.path.insert(0, str(REPO / 'tools'))
    import al_score
    common = ['--cfg_file', cfg, '--ckpt', ckpt, '--workers', '0', '--device', 'cpu', '--batch_size', '1']
    assert al_score.main([*common, '--out', str(base / 'src.pkl')]) == 0
    assert al_score.main([*common, '--out', str(base / 'rep.pkl'), '--repeat_pool', '20']) == 0
    src, rep = _load(base / 'src.pkl'), _load(base / 'rep.pkl')
    assert sorted(rep) == [f'{i:06d}' for i in range(20)]
    _assert_same(src, rep, ids_a={f'{i:06d}': ids[i % len(ids)] for i in range(20)})
    # bad input: a clear error, no traceback, nothing written
    assert al_score.main(['--cfg_file', cfg, '--ckpt', str(base / 'missing.pth'), '--out', str(base / 'x.pkl')]) == 2
    assert 'missing.pth' in capsys.readouterr().err
    (base / 'not_a_ckpt.pth').write_text('{}')
    assert al_score.main(['--cfg_file', cfg, '--ckpt', str(base / 'not_a_ckpt.pth'), '--out', str(base / 'x.pkl')]) == 2
    assert 'not_a_ckpt.pth cannot be read' in capsys.readouterr().err
    assert al_score.main(['--cfg_file', cfg, '--ckpt', ckpt, '--out', str(base / 'x.pkl'),
                          '--set', 'DATA_CONFIG.DATA_PAHT', 'x']) == 2
    assert "'DATA_CONFIG.DATA_PAHT' does not exist" in capsys.readouterr().err
    assert not (base / 'x.pkl').exists()
