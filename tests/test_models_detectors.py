"""SECOND and PointPillars end to end on CPU with hand-made batches: training loss, overfitting
sanity, eval outputs and the active-learning feature hook, config keys, state_dict names, checkpoints."""
import pytest
import torch

from pcdet_ext.config import ConfigDict, cfg_from_yaml_file, find_unused_keys
from pcdet_ext.models import build_network

from _models_helpers import REPO, TinyDataset, build, load_model_cfg, make_batch

pytestmark = pytest.mark.usefixtures('one_torch_thread')

DETECTORS = ['SECONDNet', 'PointPillar']


@pytest.mark.parametrize('name', DETECTORS)
def test_forward_backward_and_overfit_one_batch(name):
    model, dataset, cfg = build(name)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = make_batch(dataset)
    losses = []
    for _ in range(5):
        ret, tb, disp = model(dict(batch))
        loss = ret['loss']
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(tb) >= {'loss_rpn', 'rpn_loss_cls', 'rpn_loss_loc', 'rpn_loss_dir', 'rpn_loss'}
    assert tb['rpn_loss'] == pytest.approx(tb['rpn_loss_cls'] + tb['rpn_loss_loc'] + tb['rpn_loss_dir'], rel=1e-4)
    assert losses[-1] < 0.7 * losses[0], losses
    # every parameter that should learn got a gradient
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    # every MODEL key of the yaml was read while building (typos would be reported)
    assert find_unused_keys(cfg.MODEL) == []


@pytest.mark.parametrize('name', DETECTORS)
def test_eval_outputs_and_box_feature_hook(name):
    model, dataset, _ = build(name)
    model.eval()
    model.score_thresh = 0.0  # keep every box so the shapes are non-trivial
    batch = make_batch(dataset)
    with torch.no_grad():
        pred_dicts, recall = model(dict(batch))
    assert len(pred_dicts) == 2
    for pd in pred_dicts:
        assert set(pd) == {'pred_boxes', 'pred_scores', 'pred_labels'}
        k = pd['pred_boxes'].shape[0]
        assert k > 0 and pd['pred_boxes'].shape == (k, 7)
        assert pd['pred_scores'].shape == (k,) and pd['pred_labels'].shape == (k,)
        assert ((pd['pred_labels'] >= 1) & (pd['pred_labels'] <= 3)).all()
        assert (pd['pred_scores'][:-1] >= pd['pred_scores'][1:]).all()  # NMS order
    assert recall['gt'] == 5 and set(recall) >= {'rcnn_0.3', 'rcnn_0.5', 'rcnn_0.7'}

    model.train()  # the hook runs the inference path and restores the mode and the flag
    out, _ = model.forward_with_box_features(dict(batch))
    assert model.return_box_features is False and model.training
    c = model.backbone_2d.num_bev_features
    for pd, ref in zip(out, pred_dicts):
        k = pd['pred_boxes'].shape[0]
        torch.testing.assert_close(pd['pred_boxes'], ref['pred_boxes'])
        assert pd['pred_cls_probs'].shape == (k, 3)
        # the kept score is the max class probability of the box
        torch.testing.assert_close(pd['pred_cls_probs'].max(dim=1).values, pd['pred_scores'])
        assert pd['pred_box_features'].shape == (k, c) and pd['frame_feature'].shape == (c,)
        assert torch.isfinite(pd['pred_box_features']).all()


def test_box_features_are_bilinear_samples_at_box_centres():
    model, dataset, _ = build('PointPillar')
    h, w = 32, 32  # 64 x 64 pillars of 0.4 m, stride 2: 0.8 m cells over [0, 25.6] x [-12.8, 12.8]
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 1, h, w)
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 1, h, w)
    batch = {'spatial_features_2d': torch.cat([xs, ys], dim=1)}
    boxes = torch.tensor([[0.4, -12.4, 0, 1, 1, 1, 0], [10.0, 2.0, 0, 1, 1, 1, 0]])
    feats = model._bev_features_at(batch, 0, boxes)
    # cell i covers [i, i+1) * 0.8 m, its centre at (i + 0.5) * 0.8
    expected = torch.tensor([[0.0, 0.0], [10.0 / 0.8 - 0.5, 14.8 / 0.8 - 0.5]])
    torch.testing.assert_close(feats, expected)


# Names and shapes as in OpenPCDet's KITTI checkpoints (second_7862.pth, pointpillar_7728.pth).
SECOND_KEYS = {
    'global_step': (1,),
    'backbone_3d.conv_input.0.weight': (16, 3, 3, 3, 4),
    'backbone_3d.conv_input.1.running_mean': (16,),
    'backbone_3d.conv1.0.0.weight': (16, 3, 3, 3, 16),
    'backbone_3d.conv2.0.0.weight': (32, 3, 3, 3, 16),
    'backbone_3d.conv3.2.1.num_batches_tracked': (),
    'backbone_3d.conv4.0.0.weight': (64, 3, 3, 3, 64),
    'backbone_3d.conv_out.0.weight': (128, 3, 1, 1, 64),
    'backbone_3d.conv_out.1.bias': (128,),
    'backbone_2d.blocks.0.1.weight': (128, 256, 3, 3),
    'backbone_2d.blocks.0.2.running_var': (128,),
    'backbone_2d.blocks.1.16.weight': (256, 256, 3, 3),
    'backbone_2d.deblocks.0.0.weight': (128, 256, 1, 1),
    'backbone_2d.deblocks.1.0.weight': (256, 256, 2, 2),
    'dense_head.conv_cls.weight': (18, 512, 1, 1),
    'dense_head.conv_cls.bias': (18,),
    'dense_head.conv_box.weight': (42, 512, 1, 1),
    'dense_head.conv_dir_cls.weight': (12, 512, 1, 1),
}
PILLAR_KEYS = {
    'vfe.pfn_layers.0.linear.weight': (64, 10),
    'vfe.pfn_layers.0.norm.weight': (64,),
    'backbone_2d.blocks.0.1.weight': (64, 64, 3, 3),
    'backbone_2d.blocks.2.16.weight': (256, 256, 3, 3),
    'backbone_2d.deblocks.2.0.weight': (256, 128, 4, 4),
    'dense_head.conv_cls.weight': (18, 384, 1, 1),
    'dense_head.conv_box.weight': (42, 384, 1, 1),
    'dense_head.conv_dir_cls.weight': (12, 384, 1, 1),
}


@pytest.mark.parametrize('name,voxel,rng,keys', [
    ('SECONDNet', [0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1], SECOND_KEYS),
    ('PointPillar', [0.16, 0.16, 4], [0, -39.68, -3, 69.12, 39.68, 1], PILLAR_KEYS)])
def test_state_dict_names_match_openpcdet(name, voxel, rng, keys):
    _, model_cfg = load_model_cfg(name, small=False)
    model = build_network(model_cfg, num_class=3, dataset=TinyDataset(voxel, rng))
    sd = model.state_dict()
    for k, shape in keys.items():
        assert k in sd, k
        assert tuple(sd[k].shape) == shape, (k, tuple(sd[k].shape))
    assert not any(k.startswith('dense_head.reg_loss_func') for k in sd)  # code weights are not saved
    # modules registered in OpenPCDet's topology order (absent ones are None and not children)
    expected = ['vfe', 'backbone_3d', 'map_to_bev_module', 'backbone_2d', 'dense_head']
    if name == 'PointPillar':
        expected.remove('backbone_3d')
    assert [n for n, _ in model.named_children()] == expected
    assert [type(m).__name__ for m in model.module_list] == [type(getattr(model, n)).__name__ for n in expected]
    anchors = torch.cat(model.dense_head.anchors, dim=-3)
    fmap = (176, 200) if name == 'SECONDNet' else (216, 248)
    assert anchors.shape == (1, fmap[1], fmap[0], 3, 2, 7)


def test_checkpoint_round_trip_and_spconv1_layout(tmp_path):
    model, dataset, _ = build('SECONDNet')
    model.train()
    model(make_batch(dataset))  # updates BN statistics
    model.update_global_step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # a checkpoint written by spconv 1.x stores sparse kernels as (kz, ky, kx, in, out)
    old = dict(state)
    old['backbone_3d.conv_input.0.weight'] = state['backbone_3d.conv_input.0.weight'].permute(1, 2, 3, 4, 0)
    torch.save({'epoch': 3, 'it': 10, 'model_state': old, 'optimizer_state': None, 'version': 'x'},
               tmp_path / 'ckpt.pth')
    fresh, _, _ = build('SECONDNet', seed=1)
    loaded, total = fresh.load_params_from_file(str(tmp_path / 'ckpt.pth'), to_cpu=True)
    assert loaded == total
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, state[k], msg=k)
    it, epoch = fresh.load_params_with_optimizer(str(tmp_path / 'ckpt.pth'), to_cpu=True)
    assert (it, epoch) == (10, 3)
    logged = []
    logger = type('L', (), {'info': staticmethod(logged.append)})()
    fresh.load_params_from_file(str(tmp_path / 'ckpt.pth'), logger=logger)
    assert logged[0].endswith('ckpt.pth to CPU')  # a CPU model, whatever to_cpu says
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        fresh.load_params_from_file(str(tmp_path / 'nope.pth'))


def test_unknown_module_name_is_a_clear_error():
    _, model_cfg = load_model_cfg('SECONDNet')
    model_cfg.BACKBONE_3D.NAME = 'VoxelBackBone9x'
    with pytest.raises(KeyError, match='BACKBONE_3D.NAME.*VoxelBackBone9x'):
        build_network(model_cfg, num_class=3, dataset=TinyDataset([0.4, 0.4, 0.1]))


def test_second_cpu_config_geometry():
    """second_cpu.yaml builds on its own range/voxels and its BEV map matches the anchors."""
    cfg = ConfigDict()
    cfg_from_yaml_file(REPO / 'cfgs/synthetic_models/second_cpu.yaml', cfg)
    dc = cfg.DATA_CONFIG
    voxel = [p for p in dc.DATA_PROCESSOR if p.NAME == 'transform_points_to_voxels'][0].VOXEL_SIZE
    ds = TinyDataset(voxel, dc.POINT_CLOUD_RANGE, cfg.CLASS_NAMES)
    assert ds.grid_size.tolist() == [512, 448, 40]
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, num_class=3, dataset=ds)
    model.eval()
    batch = make_batch(ds, max_voxels=40000)
    with torch.no_grad():
        pred_dicts, _ = model(batch)
    assert batch['spatial_features'].shape[1:] == (256, 56, 64)
    assert batch['spatial_features_2d'].shape[2:] == (56, 64)
    assert model.dense_head.anchors[0].shape[1:3] == (56, 64)
    assert find_unused_keys(cfg.MODEL) == []


def test_voxel_res_backbone_forward_and_names():
    _, model_cfg = load_model_cfg('SECONDNet')
    model_cfg.BACKBONE_3D.NAME = 'VoxelResBackBone8x'
    torch.manual_seed(0)
    dataset = TinyDataset([0.4, 0.4, 0.1])
    model = build_network(model_cfg, num_class=3, dataset=dataset)
    sd = model.state_dict()
    assert tuple(sd['backbone_3d.conv1.0.conv1.weight'].shape) == (16, 3, 3, 3, 16)
    assert 'backbone_3d.conv4.2.bn2.running_mean' in sd
    assert tuple(sd['backbone_3d.conv_out.0.weight'].shape) == (128, 3, 1, 1, 128)
    model.train()
    ret, _, _ = model(make_batch(dataset))
    ret['loss'].backward()
    assert torch.isfinite(ret['loss'])
    assert model.backbone_3d.conv1[0].conv1.weight.grad is not None


def test_post_processing_on_hand_made_predictions():
    model, _, _ = build('PointPillar')
    boxes = torch.tensor([[[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],    # overlaps the next box
                           [10.3, 0.1, 0.0, 4.0, 2.0, 1.5, 0.1],
                           [20.0, 5.0, 0.0, 0.8, 0.6, 1.7, 0.0],
                           [20.0, -9.0, 0.0, 4.0, 2.0, 1.5, 0.0]]])  # below SCORE_THRESH
    probs = torch.tensor([[[0.8, 0.0, 0.0], [0.0, 0.0, 0.9], [0.0, 0.6, 0.0], [0.05, 0.0, 0.0]]])
    logits = torch.logit(probs.clamp(1e-4, 1 - 1e-4))
    gt = torch.zeros(1, 3, 8)
    gt[0, 0, :7], gt[0, 0, 7] = boxes[0, 1], 3
    gt[0, 1, :7], gt[0, 1, 7] = boxes[0, 3], 1

    def run(**over):
        for k, v in over.items():
            setattr(model, k, v)
        batch = {'batch_size': 1, 'batch_box_preds': boxes.clone(), 'batch_cls_preds': logits.clone(),
                 'cls_preds_normalized': False, 'gt_boxes': gt}
        return model.post_processing(batch)

    (pd,), recall = run()  # class-agnostic NMS (second.yaml / pointpillar.yaml), threshold 0.1
    assert pd['pred_labels'].tolist() == [3, 2]
    assert pd['pred_scores'].tolist() == pytest.approx([0.9, 0.6], abs=1e-4)
    torch.testing.assert_close(pd['pred_boxes'], boxes[0, [1, 2]])
    # gt 0 is predicted exactly, gt 1 was dropped by the score threshold
    assert recall == {'gt': 2, 'roi_0.3': 0, 'rcnn_0.3': 1, 'roi_0.5': 0, 'rcnn_0.5': 1, 'roi_0.7': 0, 'rcnn_0.7': 1}

    (pd,), _ = run(multi_classes_nms=True)  # per class: the two overlapping boxes differ in class
    assert pd['pred_labels'].tolist() == [1, 2, 3]
    assert pd['pred_scores'].tolist() == pytest.approx([0.8, 0.6, 0.9], abs=1e-4)

    (pd,), _ = run(multi_classes_nms=False, output_raw_score=True)
    torch.testing.assert_close(pd['pred_scores'], logits[0, [1, 2]].max(dim=1).values)


def test_wrong_feature_map_stride_is_a_clear_error():
    _, model_cfg = load_model_cfg('PointPillar')
    for a in model_cfg.DENSE_HEAD.ANCHOR_GENERATOR_CONFIG:
        a['feature_map_stride'] = 4  # the 2D backbone outputs stride 2
    dataset = TinyDataset([0.4, 0.4, 4.0])
    model = build_network(model_cfg, num_class=3, dataset=dataset)
    model.eval()
    with pytest.raises(ValueError, match='feature_map_stride'):
        model(make_batch(dataset))
