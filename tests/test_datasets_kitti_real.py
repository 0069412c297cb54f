"""KITTI loading on the real frames: create_data outputs, box round trips, 2D projection,
augmentation consistency, gt sampling without overlaps, collate shapes, predictions."""
import pickle

import numpy as np
import pytest

from pcdet_ext.datasets import build_dataloader
from pcdet_ext.datasets.augmentor import augmentor_utils
from pcdet_ext.datasets.kitti import KittiDataset
from pcdet_ext.datasets.kitti.kitti_label_io import read_label_file
from pcdet_ext.geometry import (Calibration, boxes3d_kitti_camera_to_imageboxes,
                                boxes3d_kitti_camera_to_lidar, boxes3d_lidar_to_kitti_camera)
from pcdet_ext.ops.iou3d_nms import boxes_iou_bev
from pcdet_ext.ops.roiaware_pool3d import points_in_boxes, points_in_boxes_mask

from _datasets_helpers import CLASSES, TRAIN_IDS, VAL_IDS, kitti_cfg, make_kitti_copy


@pytest.fixture(scope='module')
def kitti_root(tmp_path_factory, kitti_real):
    root = make_kitti_copy(kitti_real, tmp_path_factory.mktemp('kitti'))
    from tools.create_data import main
    assert main(['kitti', '--data_path', str(root), '--workers', '2', '--no_progress']) == 0
    return root


def _infos(root, split):
    with open(root / f'kitti_infos_{split}.pkl', 'rb') as f:
        return pickle.load(f)


def test_create_data_outputs(kitti_root):
    for split, n in (('train', 6), ('val', 5), ('trainval', 11), ('test', 6)):
        assert len(_infos(kitti_root, split)) == n
    info = _infos(kitti_root, 'train')[0]
    assert info['point_cloud'] == {'num_features': 4, 'lidar_idx': '000000'}
    assert tuple(info['image']['image_shape']) == (370, 1224)
    assert info['calib']['P2'].shape == (4, 4)
    annos = info['annos']
    for key in ('name', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions', 'location',
                'rotation_y', 'score', 'difficulty', 'index', 'gt_boxes_lidar', 'num_points_in_gt'):
        assert key in annos, key
    assert 'annos' not in _infos(kitti_root, 'test')[0]
    # Every labelled object of the train split: dbinfo present, its file holds exactly the
    # points inside the box (box-centred), and DontCare sits at the end with index -1.
    with open(kitti_root / 'kitti_dbinfos_train.pkl', 'rb') as f:
        db = pickle.load(f)
    n_obj = sum(int((i['annos']['name'] != 'DontCare').sum()) for i in _infos(kitti_root, 'train'))
    assert sum(len(v) for v in db.values()) == n_obj
    for name, entries in db.items():
        for e in entries:
            pts = np.fromfile(kitti_root / e['path'], dtype=np.float32).reshape(-1, 4)
            assert len(pts) == e['num_points_in_gt']
            pts[:, :3] += e['box3d_lidar'][:3]
            assert (points_in_boxes(pts, e['box3d_lidar'][None]) == 0).all()
    for info in _infos(kitti_root, 'trainval'):
        a = info['annos']
        dc = a['name'] == 'DontCare'
        assert (a['index'][dc] == -1).all() and not dc[:(~dc).sum()].any()
        assert (a['num_points_in_gt'][~dc] >= 0).all()
    assert not list(kitti_root.glob('.*tmp*')), 'temporary files left behind'


def test_boxes_round_trip_camera_lidar(kitti_root):
    for info in _infos(kitti_root, 'trainval'):
        a = info['annos']
        keep = a['name'] != 'DontCare'
        calib = Calibration(str(kitti_root / 'training/calib' / f"{info['point_cloud']['lidar_idx']}.txt"))
        cam = np.concatenate([a['location'][keep], a['dimensions'][keep], a['rotation_y'][keep, None]], 1)
        lidar = boxes3d_kitti_camera_to_lidar(cam, calib)
        assert np.allclose(lidar, a['gt_boxes_lidar'])
        back = boxes3d_lidar_to_kitti_camera(lidar, calib)
        # Dimensions and heading come back exactly; the location within 2 cm, because the
        # bottom-centre <-> centre shift runs along camera y one way and LiDAR z the other
        # (OpenPCDet's convention), and the two axes differ by the calibration's small tilt.
        assert np.allclose(back[:, 3:6], cam[:, 3:6], atol=1e-9)
        assert np.abs(back[:, :3] - cam[:, :3]).max() < 0.02
        dang = (back[:, 6] - cam[:, 6] + np.pi) % (2 * np.pi) - np.pi
        assert np.abs(dang).max() < 1e-6


def _iou2d(a, b):
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a) + area(b) - inter)


def test_projected_boxes_match_label_2d_boxes(kitti_root):
    ious = []
    for info in _infos(kitti_root, 'trainval'):
        a = info['annos']
        sel = (a['name'] == 'Car') & (a['occluded'] == 0)
        if not sel.any():
            continue
        calib = Calibration(str(kitti_root / 'training/calib' / f"{info['point_cloud']['lidar_idx']}.txt"))
        # project the LiDAR boxes the loader uses (DontCare rows are last, so indices agree)
        lidar = a['gt_boxes_lidar'][sel[:len(a['gt_boxes_lidar'])]]
        proj = boxes3d_kitti_camera_to_imageboxes(boxes3d_lidar_to_kitti_camera(lidar, calib), calib,
                                                  image_shape=info['image']['image_shape'])
        ious.extend(_iou2d(proj, a['bbox'][sel]))
    assert len(ious) >= 5, 'too few unoccluded cars to test'
    assert min(ious) >= 0.8, ious


def _frame(root, idx):
    ds_info = {i['point_cloud']['lidar_idx']: i for i in _infos(root, 'trainval')}[idx]
    pts = np.fromfile(root / 'training/velodyne' / f'{idx}.bin', dtype=np.float32).reshape(-1, 4)
    a = ds_info['annos']
    return pts, a['gt_boxes_lidar'].astype(np.float64).copy()


@pytest.mark.parametrize('aug', ['flip_x', 'flip_y', 'rotate', 'scale'])
def test_augmentations_keep_points_in_boxes(kitti_root, aug):
    rng = np.random.default_rng(0)
    for idx in ('000001', '000003', '000008'):
        pts, boxes = _frame(kitti_root, idx)
        pts = pts.astype(np.float64)
        before = np.asarray(points_in_boxes_mask(pts, boxes))
        assert before.sum() > 50
        b, p = boxes.copy(), pts.copy()
        if aug == 'flip_x':
            b, p, _ = augmentor_utils.random_flip_along_x(b, p, rng, enable=True)
        elif aug == 'flip_y':
            b, p, _ = augmentor_utils.random_flip_along_y(b, p, rng, enable=True)
        elif aug == 'rotate':
            b, p, _ = augmentor_utils.global_rotation(b, p, [-0.78, 0.78], rng, angle=0.6)
        else:
            b, p, _ = augmentor_utils.global_scaling(b, p, [0.95, 1.05], rng, scale=1.04)
        assert not np.allclose(p[:, :3], pts[:, :3])
        after = np.asarray(points_in_boxes_mask(p, b))
        # Points exactly on a face can flip by rounding; allow a tiny number.
        assert (before != after).sum() <= 2, (aug, idx, (before != after).sum())


def test_gt_sampling_never_overlaps(kitti_root):
    cfg = kitti_cfg()
    aug = cfg.DATA_AUGMENTOR
    aug.AUG_CONFIG_LIST[0].PREPARE.filter_by_min_points = ['Car:1', 'Pedestrian:1', 'Cyclist:1']
    aug.DISABLE_AUG_LIST = ['random_world_flip', 'random_world_rotation', 'random_world_scaling']
    ds = KittiDataset(cfg, CLASSES, training=True, root_path=kitti_root)
    sampler = ds.data_augmentor.data_augmentor_queue[0]
    ds.set_random_seed(1)
    total = 0
    for idx in TRAIN_IDS + VAL_IDS:
        pts, boxes = _frame(kitti_root, idx)
        names = {i['point_cloud']['lidar_idx']: i for i in _infos(kitti_root, 'trainval')}[idx]['annos']['name']
        names = names[names != 'DontCare']
        mask = np.isin(names, CLASSES)
        out = sampler({'points': pts.copy(), 'gt_boxes': boxes.astype(np.float32), 'gt_names': names,
                       'gt_boxes_mask': mask})
        n0 = int(mask.sum())
        new = out['gt_boxes'][n0:]
        total += len(new)
        if len(new) == 0:
            continue
        iou_all = np.asarray(boxes_iou_bev(new, np.concatenate([boxes.astype(np.float32), new])))
        iou_all[:, len(boxes):][np.arange(len(new)), np.arange(len(new))] = 0
        assert iou_all.max() == 0, idx
        # the scene's own points inside the pasted boxes were removed: only object points remain
        inside = np.asarray(points_in_boxes_mask(out['points'], new)).sum(1)
        expected = [sum(len(np.fromfile(kitti_root / e['path'], dtype=np.float32)) // 4
                        for e in [e]) for e in _sampled_infos(sampler, new)]
        assert list(inside) == expected
    assert total >= 5, 'gt sampling pasted almost nothing; the test would prove little'


def _sampled_infos(sampler, boxes):
    by_box = {tuple(np.round(e['box3d_lidar'][:7], 4)): e
              for v in sampler.db_infos.values() for e in v}
    return [by_box[tuple(np.round(b[:7], 4))] for b in boxes]


def test_dataloader_collate_shapes_and_seed(kitti_root):
    cfg = kitti_cfg()
    ds, dl, sampler = build_dataloader(cfg, CLASSES, batch_size=2, dist=False, root_path=kitti_root,
                                       workers=0, seed=3, training=True)
    assert sampler is None and len(ds) == 6
    assert list(ds.grid_size) == [1408, 1600, 40] and ds.voxel_size == [0.05, 0.05, 0.1]
    assert ds.point_feature_encoder.num_point_features == 4
    batch = next(iter(dl))
    assert batch['batch_size'] == 2
    assert batch['points'].shape[1] == 5 and set(np.unique(batch['points'][:, 0])) == {0, 1}
    assert batch['voxel_coords'].shape[1] == 4 and batch['voxels'].shape[1:] == (5, 4)
    assert len(batch['voxels']) == len(batch['voxel_coords']) == len(batch['voxel_num_points'])
    gt = batch['gt_boxes']
    assert gt.ndim == 3 and gt.shape[0] == 2 and gt.shape[2] == 8
    labels = gt[..., 7]
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels > 0).any()
    assert batch['image_shape'].shape == (2, 2) and batch['frame_id'].shape == (2,)
    assert isinstance(batch['calib'][0], Calibration) and batch['use_lead_xyz'].all()
    # voxel coordinates lie inside the grid ([b, z, y, x])
    c = batch['voxel_coords']
    assert (c[:, 1] < 40).all() and (c[:, 2] < 1600).all() and (c[:, 3] < 1408).all()
    # same seed, same batch
    _, dl2, _ = build_dataloader(cfg, CLASSES, batch_size=2, dist=False, root_path=kitti_root,
                                 workers=0, seed=3, training=True)
    b2 = next(iter(dl2))
    assert np.array_equal(batch['frame_id'], b2['frame_id'])
    assert np.array_equal(batch['gt_boxes'], b2['gt_boxes'])


def test_test_split_predictions_round_trip(kitti_root, tmp_path):
    import torch
    cfg = kitti_cfg()
    ds, dl, _ = build_dataloader(cfg, CLASSES, batch_size=5, dist=False, root_path=kitti_root,
                                 workers=0, training=False)
    assert len(ds) == len(VAL_IDS) and ds.data_augmentor is None
    batch = next(iter(dl))
    preds = []
    for i in range(batch['batch_size']):
        g = batch['gt_boxes'][i]
        g = g[g[:, 7] > 0]
        preds.append({'pred_boxes': torch.from_numpy(g[:, :7]), 'pred_scores': torch.ones(len(g)),
                      'pred_labels': torch.from_numpy(g[:, 7]).long()})
    annos = ds.generate_prediction_dicts(batch, preds, CLASSES, output_path=tmp_path)
    for anno in annos:
        written = read_label_file(tmp_path / f"{anno['frame_id']}.txt")
        label = read_label_file(kitti_root / 'training/label_2' / f"{anno['frame_id']}.txt")
        keep = np.isin(label['name'], CLASSES)
        assert list(written['name']) == list(label['name'][keep])
        assert np.abs(written['location'] - label['location'][keep]).max() < 0.02  # tilt, see above
        assert np.allclose(written['dimensions'], label['dimensions'][keep], atol=2e-3)
        assert np.allclose(written['alpha'], label['alpha'][keep], atol=0.05)
    # Ground truth turned into predictions must score exactly like the labels themselves
    # (the official protocol under-reports AP with this few objects, so compare, not 100).
    result_str, result = ds.evaluation(annos, CLASSES)
    import copy
    from pcdet_ext.evaluation.kitti import get_official_eval_result
    gt = [copy.deepcopy(i['annos']) for i in ds.kitti_infos]
    dt = copy.deepcopy(gt)
    for d, a in zip(dt, annos):
        d['score'] = np.ones(len(d['name']))
    _, ref = get_official_eval_result(gt, dt, CLASSES)
    for key in ('Car_3d/moderate_R40', 'Car_bev/easy', 'Pedestrian_3d/moderate_R40'):
        assert result[key] == pytest.approx(ref[key], abs=1e-6), (key, result_str)
    assert result['Car_3d/moderate_R40'] > 0


def test_worker_seeding_replays_augmentation(kitti_root):
    cfg = kitti_cfg()

    def first_batch(seed):
        _, dl, _ = build_dataloader(cfg, CLASSES, batch_size=2, dist=False, root_path=kitti_root,
                                    workers=2, seed=seed, training=True)
        return next(iter(dl))
    a, b, c = first_batch(7), first_batch(7), first_batch(8)
    assert np.array_equal(a['gt_boxes'], b['gt_boxes']) and np.array_equal(a['points'], b['points'])
    assert not (np.array_equal(a['frame_id'], c['frame_id']) and np.array_equal(a['gt_boxes'], c['gt_boxes']))
