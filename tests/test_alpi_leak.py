"""LEAK TEST (DESIGN.md section 3, Integrity): the ALPI labeller never reads 3D ground truth.

The labeller runs with a fixed seed on a tiny synthetic set three times: label files as
generated, with every 3D field (alpha, dimensions, location, rotation_y) replaced by random
values, and with KITTI's unknown values (-1 -1 -1 -1000 -1000 -1000 -10, what users without 3D
labels have). Pseudo-labels of every step and the exported files must be identical.
"""
import pickle
import shutil

import numpy as np
import pytest

from pcdet_ext.alpi.pipeline import ALPIPipeline

from test_alpi_pipeline import _scramble_3d, tiny_cfg
from _synthetic_helpers import synthetic_root

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory, 'alpi_leak', num_frames=3, seed=11)


def _run(root, out):
    ALPIPipeline(tiny_cfg(root, steps=1, refine=False), out, progress=False).run()
    preds = {}
    for k in (0, 1):
        with open(out / f'step_{k}' / 'pseudo_labels.pkl', 'rb') as f:
            preds[k] = pickle.load(f)
    files = {p.name: p.read_text() for p in sorted((out / 'label_2').glob('*.txt'))}
    return preds, files


def _same(a, b):
    pa, fa = a
    pb, fb = b
    assert fa == fb
    for k in pa:
        assert pa[k]['kept'] == pb[k]['kept']
        assert pa[k]['predictions'].keys() == pb[k]['predictions'].keys()
        for fid in pa[k]['predictions']:
            for oi, p in pa[k]['predictions'][fid].items():
                q = pb[k]['predictions'][fid][oi]
                np.testing.assert_array_equal(p['box_lidar'], q['box_lidar'])
                assert p['score'] == q['score']


def test_scrambled_and_2d_only_label_files_give_identical_pseudo_labels(synth_root, tmp_path):
    ref = _run(synth_root, tmp_path / 'ref')
    assert sum(len(v) for v in ref[0][1]['predictions'].values()) > 0
    assert len(ref[0][0]['kept']) > 0  # step 1 did train on pseudo-labels
    for mode in ('random', 'unknown'):
        root = tmp_path / f'data_{mode}'
        shutil.copytree(synth_root, root)
        _scramble_3d(root / 'training' / 'label_2', mode)
        _same(ref, _run(root, tmp_path / f'out_{mode}'))
