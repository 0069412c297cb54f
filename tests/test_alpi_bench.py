"""ALPI benchmark pieces: the upper-bound dataset mode (3D ground truth as targets, off by
default), the annotator's 2D-loss options, and the benchmark's report writer."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pcdet_ext.alpi.annotator import PSEUDO, REAL, ALPIAnnotator
from pcdet_ext.alpi.dataset import ALPIFrustumDataset
from pcdet_ext.config import ConfigDict
from pcdet_ext.geometry import Calibration, boxes3d_kitti_camera_to_lidar

from _synthetic_helpers import synthetic_root

REPO = Path(__file__).resolve().parents[1]
CLASSES = ['Car', 'Pedestrian', 'Cyclist']


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory, 'alpi_bench', num_frames=2, seed=3)


def data_cfg(root, **extra):
    return ConfigDict({'DATASET': 'ALPIFrustumDataset', 'DATA_PATH': str(root),
                       'DATA_SPLIT': {'train': 'train', 'test': 'train'}, 'FRUSTUM': {'NUM_POINTS': 64},
                       'PROXY': {'RATIO': 0}, 'PROGRESS': False, **extra})


def test_upper_bound_mode_uses_3d_ground_truth_only_when_asked(synth_root):
    weak = ALPIFrustumDataset(data_cfg(synth_root), CLASSES, training=True)
    assert weak.pseudo_labels == {} and {k for k, _ in weak.items} == {'real'}
    assert all(weak[i]['sample_type'] == REAL and weak[i]['box3d_mask'] == 0 for i in range(len(weak)))

    full = ALPIFrustumDataset(data_cfg(synth_root, UPPER_BOUND_3D_LABELS=True), CLASSES, training=True)
    assert len(full) == len(weak) and {k for k, _ in full.items} == {'pseudo'}
    for i in range(len(full)):
        item = full[i]
        assert item['sample_type'] == PSEUDO and item['box3d_mask'] == 1
        fid, oi = str(item['frame_id']), int(item['obj_index'])
        tok = (synth_root / 'training/label_2' / f'{fid}.txt').read_text().splitlines()[oi].split()
        h, w, l, x, y, z, ry = map(float, tok[8:15])
        calib = Calibration(str(synth_root / 'training/calib' / f'{fid}.txt'))
        gt = boxes3d_kitti_camera_to_lidar(np.array([[x, y, z, l, h, w, ry]]), calib)[0]
        np.testing.assert_allclose(full.pseudo_labels[(fid, oi)]['box_lidar'], gt, atol=1e-5)
        # the item's frustum-frame target is that box: same size, centre on the frustum's z axis side
        np.testing.assert_allclose(item['box3d'][3:6], gt[3:6], atol=1e-4)


def test_upper_bound_mode_rejects_2d_only_label_files(synth_root, tmp_path):
    import shutil
    root = tmp_path / 'syn2d'
    shutil.copytree(synth_root, root)
    for p in (root / 'training/label_2').glob('*.txt'):
        lines = [ln.split() for ln in p.read_text().splitlines() if ln.split()]
        p.write_text(''.join(' '.join(t[:8] + ['-1', '-1', '-1', '-1000', '-1000', '-1000', '-10']) + '\n'
                             for t in lines))
    with pytest.raises(ValueError, match='UPPER_BOUND_3D_LABELS needs full KITTI labels'):
        ALPIFrustumDataset(data_cfg(root, UPPER_BOUND_3D_LABELS=True), CLASSES, training=True)


def _model(**loss):
    cfg = ConfigDict({'NAME': 'ALPIAnnotator', 'DEPTH_RANGE': [1.0, 41.0], 'ANCHOR_STRIDE': 2.0, 'SLICE_WIDTH': 4.0,
                      'POINT_MLP': [8, 16], 'DEPTH_CONV': [16], 'NUM_HEADING_BIN': 8, 'LOSS_CONFIG': loss})
    return ALPIAnnotator(cfg, 3)


def test_2d_loss_options_validated_and_centre_mode_spares_heading_and_size(synth_root):
    with pytest.raises(ValueError, match='PROJ_2D_ANCHORS'):
        _model(PROJ_2D_ANCHORS='every')
    ds = ALPIFrustumDataset(data_cfg(synth_root), CLASSES, training=True)
    batch = ds.collate_batch([ds[i] for i in range(min(6, len(ds)))])
    batch = {k: torch.as_tensor(v) if k != 'frame_id' and not isinstance(v, int) else v for k, v in batch.items()}
    grads = {}
    for mode in ('all', 'centre'):
        torch.manual_seed(0)
        # only the 2D loss: every other weight 0
        m = _model(PROJ_2D_GRAD=mode, PROJ_2D_ANCHORS='top',
                   WEIGHTS={k: 0.0 for k in ('objectness', 'center', 'heading_cls', 'heading_res', 'size', 'corner',
                                             'size_prior')})
        m.train()
        ret, tb, _ = m(dict(batch))
        ret['loss'].backward()
        nb = m.num_heading_bin
        g = m.head.weight.grad[:, :, 0].abs().sum(dim=1)
        grads[mode] = (g[1:4].sum().item(), g[4 + nb:].sum().item())  # centre rows, heading residual + size rows
    assert grads['all'][0] > 0 and grads['all'][1] > 0
    assert grads['centre'][0] > 0 and grads['centre'][1] == 0


def test_bench_report_table(tmp_path):
    sys.path.insert(0, str(REPO / 'tools'))
    import bench_alpi
    rep = {'ap': {'Car': {'3d_R40_moderate@0.7': 50.0, '3d_R40_moderate@0.5': 90.0, 'bev_R40_moderate@0.7': 60.0,
                          'bev_R40_moderate@0.5': 95.0}},
           'quality': {'Car': {'median_iou_3d': 0.7, 'median_centre_error': 0.2, 'median_heading_error': 0.1,
                               'mean_size_error_l': 0.3}}, 'seconds': 12.0}
    m = bench_alpi.stage_metrics(rep)
    assert m['Car'] == {'3d@0.7': 50.0, '3d@0.5': 90.0, 'bev@0.7': 60.0, 'bev@0.5': 95.0}
    res = {'date': 'd', 'machine': 'm', 'command': 'c', 'frames': 2, 'seed': 0, 'num_objects': 5, 'epochs': 1,
           'steps': 0, 'cfg_file': 'x.yaml', 'seconds': 1.0, 'stage_seconds': 2.0,
           'variants': {'weak': {'stages': {'0': m}}, 'full': {'stages': {'0': m}}},
           'ratios': {'Car 3d@0.7': 1.0}}
    text = bench_alpi.markdown(res)
    assert '| weak | 0 | 50.00 | 90.00 | 60.00 | 95.00 |' in text and 'UPPER BOUND' in text
    assert 'Car 3d@0.7: 1.00' in text
