"""ALPI annotator + frustum dataset: batch contract, forward/backward, learning on a fixed batch,
objectness targets without 3D ground truth, eval outputs, and tools/train.py training it."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pcdet_ext.alpi.annotator import PROXY, REAL, ALPIAnnotator
from pcdet_ext.alpi.dataset import ALPIFrustumDataset
from pcdet_ext.config import ConfigDict
from pcdet_ext.runtime.batch import load_data_to_gpu

from _synthetic_helpers import synthetic_root

pytestmark = pytest.mark.usefixtures('one_torch_thread')

CLASSES = ['Car', 'Pedestrian', 'Cyclist']
TINY_MODEL = {'NAME': 'ALPIAnnotator', 'DEPTH_RANGE': [1.0, 61.0], 'ANCHOR_STRIDE': 2.0, 'SLICE_WIDTH': 4.0,
              'POINT_MLP': [16, 32], 'DEPTH_CONV': [32, 32], 'NUM_HEADING_BIN': 8}


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory, 'alpi_ann', num_frames=3, seed=3)


def _data_cfg(root, **kw):
    cfg = {'DATASET': 'ALPIFrustumDataset', 'DATA_PATH': str(root), 'DATA_SPLIT': {'train': 'train', 'test': 'train'},
           'FRUSTUM': {'NUM_POINTS': 128}, 'PROXY': {'RATIO': 50}, 'PROGRESS': False}
    cfg.update(kw)
    return ConfigDict(cfg)


@pytest.fixture(scope='module')
def train_set(synth_root):
    return ALPIFrustumDataset(_data_cfg(synth_root), CLASSES, training=True)


def _batch(ds, n=24):
    b = ds.collate_batch([ds[i] for i in range(min(n, len(ds)))])
    return load_data_to_gpu(b, 'cpu')


def test_dataset_items_and_kinds(train_set):
    kinds = {k for k, _ in train_set.items}
    assert {'real', 'proxy'} <= kinds
    item = train_set[0]
    assert item['points'].shape == (128, 4)
    for i in range(len(train_set)):
        it = train_set[i]
        if it['sample_type'] == REAL:
            assert it['box3d_mask'] == 0 and not it['box3d'].any()   # no 3D target for real objects
            assert it['depth_hint'] > 0
        if it['sample_type'] == PROXY:
            assert it['box3d_mask'] == 1 and it['box3d'][3:6].min() > 0.1


def test_proxy_ratio_counts_proxies_per_real_object(synth_root):
    """RATIO is proxies per 100 labelled objects, above 100 too (several proxies per host)."""
    def proxies(ratio):
        ds = ALPIFrustumDataset(_data_cfg(synth_root, PROXY={'RATIO': ratio}), CLASSES, training=True)
        return [ds.injected[r].box_lidar for k, r in ds.items if k == 'proxy']
    n50, n100, n300 = (len(proxies(r)) for r in (50, 100, 300))
    # a proxy whose scan ends up with too few points is skipped: ratios hold up to a few
    assert 0.4 * n100 <= n50 <= 0.6 * n100 + 1
    assert 2.7 * n100 <= n300 <= 3.5 * n100
    boxes = {tuple(np.round(b, 4)) for b in proxies(300)}
    assert len(boxes) == n300   # every proxy of a host is its own draw


def test_forward_backward_and_eval_contract(train_set):
    torch.manual_seed(0)
    model = ALPIAnnotator(ConfigDict(TINY_MODEL), 3, train_set)
    model.train()
    batch = _batch(train_set)
    ret, tb, disp = model(batch)
    ret['loss'].backward()
    assert torch.isfinite(ret['loss'])
    for key in ('loss_objectness', 'loss_proj_2d', 'loss_center', 'loss_corner', 'loss_size'):
        assert key in tb
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        preds, recall = model(batch)
    assert len(preds) == batch['points'].shape[0]
    assert preds[0]['pred_boxes'].shape == (1, 7) and 0 <= float(preds[0]['pred_scores'][0]) <= 1


def test_objectness_targets_from_2d_evidence_and_3d_target(train_set):
    model = ALPIAnnotator(ConfigDict(TINY_MODEL), 3, train_set)
    batch = _batch(train_set)
    tgt = model.objectness_targets(batch)
    assert ((tgt == 1).sum(dim=1) >= 1).all()
    real = batch['box3d_mask'] < 0.5
    a = model.anchors
    top = a[(tgt == 1).float().argmax(dim=1)]
    # real objects: positives around the depth hint; 3D-supervised: around the target depth
    assert torch.all((top[real] - batch['depth_hint'][real]).abs() <= 0.12 * batch['depth_hint'][real] + 2.0)
    assert torch.all((top[~real] - batch['box3d'][~real, 2]).abs() <= model.pos_radius + 1.0)


def test_learns_on_a_fixed_batch(train_set):
    torch.manual_seed(0)
    model = ALPIAnnotator(ConfigDict(TINY_MODEL), 3, train_set)
    model.train()
    batch = _batch(train_set, 16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        ret, _, _ = model(batch)
        ret['loss'].backward()
        opt.step()
        losses.append(ret['loss'].item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_unknown_loss_weight_is_an_error(train_set):
    with pytest.raises(ValueError, match='WEIGHTS'):
        ALPIAnnotator(ConfigDict({**TINY_MODEL, 'LOSS_CONFIG': {'WEIGHTS': {'projj_2d': 1.0}}}), 3, train_set)


def test_tools_train_trains_the_annotator(synth_root, tmp_path):
    import yaml
    from pcdet_ext.runtime.train_tool import main
    import pcdet_ext.alpi  # noqa: F401  (tools/train.py imports it too)
    cfg = {'CLASS_NAMES': CLASSES,
           'DATA_CONFIG': {'DATASET': 'ALPIFrustumDataset', 'DATA_PATH': str(synth_root),
                           'DATA_SPLIT': {'train': 'train', 'test': 'train'}, 'FRUSTUM': {'NUM_POINTS': 64},
                           'PROXY': {'RATIO': 30}, 'PROGRESS': False},
           'MODEL': TINY_MODEL,
           'OPTIMIZATION': {'BATCH_SIZE_PER_GPU': 16, 'NUM_EPOCHS': 1, 'OPTIMIZER': 'adam_onecycle', 'LR': 0.003}}
    path = tmp_path / 'alpi_tiny.yaml'
    path.write_text(yaml.safe_dump(cfg))
    out = main(['--cfg_file', str(path), '--output_root', str(tmp_path), '--workers', '0'])
    assert list(Path(out['ckpt_dir']).glob('checkpoint_epoch_1.pth'))


def test_pseudo_labelled_and_pasted_instances(synth_root):
    """Pseudo-labels become 3D targets; copy-paste injects them into other frames' frustums.
    (The test builds pseudo boxes from the generator's 3D labels; the code under test never does.)"""
    from pcdet_ext.geometry import Calibration, boxes3d_kitti_camera_to_lidar
    pseudo = {}
    for fid in (synth_root / 'ImageSets' / 'train.txt').read_text().split():
        calib = Calibration(str(synth_root / 'training' / 'calib' / f'{fid}.txt'))
        lines = (synth_root / 'training' / 'label_2' / f'{fid}.txt').read_text().splitlines()
        for i, line in enumerate(lines[:3]):
            t = line.split()
            h, w, l, x, y, z, ry = map(float, t[8:15])
            box = boxes3d_kitti_camera_to_lidar(np.array([[x, y, z, l, h, w, ry]]), calib)[0]
            pseudo[(fid, i)] = {'box_lidar': box, 'score': 0.9}
    ds = ALPIFrustumDataset(_data_cfg(synth_root, PROXY={'RATIO': 0, 'COPY_PASTE_RATIO': 50}), CLASSES,
                            training=True, pseudo_labels=pseudo)
    kinds = [k for k, _ in ds.items]
    assert 'pseudo' in kinds and 'paste' in kinds and 'proxy' not in kinds
    for i, (kind, _) in enumerate(ds.items):
        if kind in ('pseudo', 'paste'):
            it = ds[i]
            assert it['box3d_mask'] == 1
            # the target box's centre lies on (near) the frustum axis: it is the object the box was cut for
            assert np.hypot(it['box3d'][0], it['box3d'][1]) < 0.25 * it['box3d'][2]


@pytest.mark.parametrize('mode,size_moves,heading_moves', [
    ('all', True, True), ('centre_heading', False, True), ('centre', False, False),
    ({c: 'centre_heading' for c in CLASSES}, False, True), ({'Car': 'centre'}, True, True)])
def test_proj_2d_grad_routes_the_2d_loss(train_set, mode, size_moves, heading_moves):
    """PROJ_2D_GRAD decides which box parameters the 2D loss may move (the size head's output
    rows of the last conv get no gradient from it unless 'all')."""
    weights = {k: 0.0 for k in ('objectness', 'center', 'heading_cls', 'heading_res', 'size', 'corner', 'size_prior')}
    cfg = {**TINY_MODEL, 'LOSS_CONFIG': {'WEIGHTS': {**weights, 'proj_2d': 1.0}, 'PROJ_2D_GRAD': mode}}
    torch.manual_seed(0)
    model = ALPIAnnotator(ConfigDict(cfg), 3, train_set)
    model.train()
    real = [i for i in range(len(train_set)) if train_set.items[i][0] == 'real'][:12]
    batch = load_data_to_gpu(train_set.collate_batch([train_set[i] for i in real]), 'cpu')
    ret, tb, _ = model(batch)
    ret['loss'].backward()
    nb = model.num_heading_bin
    g = model.head.weight.grad[:, :, 0].abs().sum(dim=1)
    assert g[1:4].sum() > 0                                           # centre always
    assert (g[4 + 2 * nb:4 + 2 * nb + 3].sum() > 0) == size_moves     # size residual
    assert (g[4 + nb:4 + 2 * nb].sum() > 0) == heading_moves          # heading residuals


def test_proj_2d_grad_per_class_config_errors(train_set):
    with pytest.raises(ValueError, match='not in CLASS_NAMES'):
        ALPIAnnotator(ConfigDict({**TINY_MODEL, 'LOSS_CONFIG': {'PROJ_2D_GRAD': {'Truck': 'centre'}}}), 3, train_set)
    with pytest.raises(ValueError, match='PROJ_2D_GRAD'):
        ALPIAnnotator(ConfigDict({**TINY_MODEL, 'LOSS_CONFIG': {'PROJ_2D_GRAD': {'Car': 'size'}}}), 3, train_set)


def test_depth_hint_loss_pulls_real_depths_only(train_set):
    """WEIGHTS.depth_hint: a smooth-L1 pull of real objects' centre depth towards the depth hint;
    only the depth offset of the head gets a gradient; off by default."""
    weights = {k: 0.0 for k in ('objectness', 'center', 'heading_cls', 'heading_res', 'size', 'corner', 'proj_2d',
                                'size_prior')}
    cfg = {**TINY_MODEL, 'LOSS_CONFIG': {'WEIGHTS': {**weights, 'depth_hint': 1.0}}}
    torch.manual_seed(0)
    model = ALPIAnnotator(ConfigDict(cfg), 3, train_set)
    model.train()
    batch = _batch(train_set, 16)
    ret, tb, _ = model(batch)
    ret['loss'].backward()
    g = model.head.weight.grad[:, :, 0].abs().sum(dim=1)
    assert tb['loss_depth_hint'] > 0 and g[3] > 0 and g[1:3].sum() == 0 and g[4:].sum() == 0
    default = ALPIAnnotator(ConfigDict(TINY_MODEL), 3, train_set)
    default.train()
    assert 'loss_depth_hint' not in default(batch)[1]   # off by default



def test_pseudo_3d_weight_scales_pseudo_label_terms_only(train_set):
    """WEIGHTS.pseudo_3d scales the 3D terms of pseudo-labelled rows; proxies keep weight 1."""
    from pcdet_ext.alpi.annotator import PSEUDO
    batch = _batch(train_set, 24)
    proxy = batch['sample_type'] == PROXY
    assert proxy.any() and (~proxy).any()

    def terms(weight, as_pseudo):
        b = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in batch.items()}
        if as_pseudo:
            b['sample_type'][proxy] = PSEUDO
        torch.manual_seed(0)
        model = ALPIAnnotator(ConfigDict({**TINY_MODEL, 'LOSS_CONFIG': {'WEIGHTS': {'pseudo_3d': weight}}}), 3,
                              train_set)
        model.train()
        tb = model(b)[1]
        return np.array([tb[k] for k in ('loss_center', 'loss_size', 'loss_corner', 'loss_heading_cls')])

    full = terms(1.0, as_pseudo=False)
    np.testing.assert_allclose(terms(0.25, as_pseudo=False), full, rtol=1e-6)  # no pseudo rows: unchanged
    np.testing.assert_allclose(terms(0.25, as_pseudo=True), 0.25 * full, rtol=1e-5)
    assert (terms(0.0, as_pseudo=True) == 0).all()
