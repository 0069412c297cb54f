"""Dataset pipeline units on small hand-made inputs: collate, object pasting, processor,
feature encoding, augmentor; and the synthetic subcommand end to end."""
import numpy as np
import pytest

from pcdet_ext.config import ConfigDict
from pcdet_ext.datasets import DatasetTemplate, build_dataloader
from pcdet_ext.datasets.augmentor import DataAugmentor, paste_objects
from pcdet_ext.datasets.processor import DataProcessor, PointFeatureEncoder
from pcdet_ext.ops.roiaware_pool3d import points_in_boxes_mask

from _datasets_helpers import CLASSES, REPO

PCR = [0, -40, -3, 70.4, 40, 1]


def _sample(n_pts, n_boxes, seed):
    rng = np.random.default_rng(seed)
    return {'points': rng.random((n_pts, 4)).astype(np.float32),
            'voxels': rng.random((n_pts // 2, 5, 4)).astype(np.float32),
            'voxel_coords': rng.integers(0, 10, (n_pts // 2, 3)).astype(np.int32),
            'voxel_num_points': np.full(n_pts // 2, 5, dtype=np.int32),
            'gt_boxes': rng.random((n_boxes, 8)).astype(np.float32),
            'frame_id': f'{seed:06d}', 'image_shape': np.array([375, 1242]),
            'use_lead_xyz': True}


def test_collate_batch_layout():
    batch = DatasetTemplate.collate_batch([_sample(10, 3, 0), _sample(6, 0, 1), _sample(8, 1, 2)])
    assert batch['batch_size'] == 3
    assert batch['points'].shape == (24, 5)
    assert list(np.bincount(batch['points'][:, 0].astype(int))) == [10, 6, 8]
    assert batch['voxel_coords'].shape == (12, 4) and batch['voxel_coords'].dtype == np.int32
    assert list(np.bincount(batch['voxel_coords'][:, 0])) == [5, 3, 4]
    assert batch['voxels'].shape == (12, 5, 4) and batch['voxel_num_points'].shape == (12,)
    gt = batch['gt_boxes']
    assert gt.shape == (3, 3, 8) and not gt[1].any() and not gt[2, 1:].any()
    assert list(batch['frame_id']) == ['000000', '000001', '000002']
    assert batch['image_shape'].shape == (3, 2)
    with pytest.raises(ValueError, match="key 'voxels' is present in 1 of 2"):
        s = _sample(4, 1, 3)
        del s['voxels']
        DatasetTemplate.collate_batch([_sample(4, 1, 4), s])


def test_paste_objects_replaces_scene_points():
    rng = np.random.default_rng(0)
    scene = np.concatenate([rng.uniform([-10, -10, -2, 0], [10, 10, 2, 1], (4000, 4))]).astype(np.float32)
    boxes = np.array([[5, 5, 0, 2, 2, 2, 0.3]], dtype=np.float32)
    obj_boxes = np.array([[-5, -5, 0, 4, 2, 1.5, 0.7], [0, 6, 0, 1, 1, 2, -1.0]], dtype=np.float32)
    objs = [rng.uniform(-0.4, 0.4, (50, 4)).astype(np.float32), rng.uniform(-0.2, 0.2, (20, 4)).astype(np.float32)]
    inside_before = np.asarray(points_in_boxes_mask(scene, obj_boxes)).sum(1)
    assert (inside_before > 0).all()
    pts, out_boxes = paste_objects(scene, boxes, objs, obj_boxes, relative=True)
    assert out_boxes.shape == (3, 7) and np.array_equal(out_boxes[1:], obj_boxes)
    inside = np.asarray(points_in_boxes_mask(pts, obj_boxes)).sum(1)
    assert list(inside) == [50, 20]  # only the pasted points remain inside
    assert len(pts) == len(scene) - inside_before.sum() + 70
    with pytest.raises(ValueError, match=r'obj_points_list\[0\] has shape \(50, 3\)'):
        paste_objects(scene, boxes, [objs[0][:, :3], objs[1]], obj_boxes)
    with pytest.raises(ValueError, match='2 point sets for 1 boxes'):
        paste_objects(scene, boxes, objs, obj_boxes[:1])


def _proc_cfg():
    return [ConfigDict({'NAME': 'mask_points_and_boxes_outside_range', 'REMOVE_OUTSIDE_BOXES': True}),
            ConfigDict({'NAME': 'shuffle_points', 'SHUFFLE_ENABLED': {'train': True, 'test': False}}),
            ConfigDict({'NAME': 'transform_points_to_voxels', 'VOXEL_SIZE': [0.2, 0.2, 4],
                        'MAX_POINTS_PER_VOXEL': 3, 'MAX_NUMBER_OF_VOXELS': {'train': 50, 'test': 100}})]


def test_data_processor():
    proc = DataProcessor(_proc_cfg(), PCR, training=True, num_point_features=4, seed=0)
    assert list(proc.grid_size) == [352, 400, 1] and proc.voxel_size == [0.2, 0.2, 4]
    pts = np.array([[1.1, 1.1, 0, 0.5], [1.15, 1.15, 0, 0.1], [-1, 0, 0, 0], [10, 50, 0, 0],
                    [20.1, 0.1, 0.5, 0]], dtype=np.float32)
    boxes = np.array([[1, 1, 0, 1, 1, 1, 0, 1], [-5, 0, 0, 1, 1, 1, 0, 1]], dtype=np.float32)
    out = proc.forward({'points': pts.copy(), 'gt_boxes': boxes.copy(), 'use_lead_xyz': True})
    assert len(out['points']) == 3 and (out['points'][:, 0] >= 0).all()
    assert out['gt_boxes'].shape == (1, 8)
    assert out['voxels'].shape == (2, 3, 4) and sorted(out['voxel_num_points']) == [1, 2]
    coords = out['voxel_coords'][np.argsort(out['voxel_coords'][:, 2])]
    assert coords.tolist() == [[0, 205, 5], [0, 200, 100]]  # [z, y, x]
    test_proc = DataProcessor(_proc_cfg(), PCR, training=False, num_point_features=4)
    out = test_proc.forward({'points': pts.copy(), 'gt_boxes': boxes.copy(), 'use_lead_xyz': True})
    assert np.array_equal(out['points'], pts[[0, 1, 4]])  # not shuffled, boxes kept at test
    assert len(out['gt_boxes']) == 2
    bad = _proc_cfg()[:1] + [ConfigDict({'NAME': 'shufle_points'})]
    with pytest.raises(ValueError, match="unknown NAME 'shufle_points'"):
        DataProcessor(bad, PCR, training=True, num_point_features=4)


def test_point_feature_encoder():
    enc = PointFeatureEncoder(ConfigDict({'encoding_type': 'absolute_coordinates_encoding',
                                          'used_feature_list': ['x', 'y', 'z'],
                                          'src_feature_list': ['x', 'y', 'z', 'intensity']}))
    assert enc.num_point_features == 3
    out = enc.forward({'points': np.arange(8, dtype=np.float32).reshape(2, 4)})
    assert out['points'].shape == (2, 3) and out['use_lead_xyz']
    with pytest.raises(ValueError, match=r"\['elongation'\] which are not in src_feature_list"):
        PointFeatureEncoder(ConfigDict({'encoding_type': 'absolute_coordinates_encoding',
                                        'used_feature_list': ['x', 'y', 'z', 'elongation'],
                                        'src_feature_list': ['x', 'y', 'z', 'intensity']}))


def test_augmentor_queue_random_scene_consistency():
    cfg = ConfigDict({'DISABLE_AUG_LIST': ['placeholder'], 'AUG_CONFIG_LIST': [
        {'NAME': 'random_world_flip', 'ALONG_AXIS_LIST': ['x', 'y']},
        {'NAME': 'random_world_rotation', 'WORLD_ROT_ANGLE': [-0.78, 0.78]},
        {'NAME': 'random_world_scaling', 'WORLD_SCALE_RANGE': [0.9, 1.1]}]})
    rng = np.random.default_rng(3)
    boxes = np.column_stack([rng.uniform(5, 60, 8), rng.uniform(-30, 30, 8), rng.uniform(-1.5, 0, 8),
                             rng.uniform(1, 5, (8, 3)), rng.uniform(-np.pi, np.pi, 8)])
    pts = np.concatenate([rng.uniform(-0.5, 0.5, (40, 3)) * b[3:6] for b in boxes])
    for i, b in enumerate(boxes):  # points spread inside each box, in its frame
        seg = pts[i * 40:(i + 1) * 40]
        c, s = np.cos(b[6]), np.sin(b[6])
        seg[:] = np.column_stack([seg[:, 0] * c - seg[:, 1] * s, seg[:, 0] * s + seg[:, 1] * c, seg[:, 2]]) + b[:3]
    pts = np.column_stack([pts, np.zeros(len(pts))]).astype(np.float32)
    before = np.asarray(points_in_boxes_mask(pts, boxes))
    for seed in range(4):
        aug = DataAugmentor('.', cfg, CLASSES, seed=seed)
        out = aug.forward({'points': pts.copy(), 'gt_boxes': boxes.copy(), 'gt_names': np.array(['Car'] * 8)})
        assert np.abs(out['gt_boxes'][:, 6]).max() <= np.pi + 1e-6
        after = np.asarray(points_in_boxes_mask(out['points'], out['gt_boxes']))
        assert np.array_equal(before, after)
        again = DataAugmentor('.', cfg, CLASSES, seed=seed).forward(
            {'points': pts.copy(), 'gt_boxes': boxes.copy(), 'gt_names': np.array(['Car'] * 8)})
        assert np.array_equal(out['points'], again['points'])  # seeded: replayable
    with pytest.raises(ValueError, match="unknown augmentor NAME 'random_world_flp'"):
        DataAugmentor('.', ConfigDict({'AUG_CONFIG_LIST': [{'NAME': 'random_world_flp'}]}), CLASSES)


def test_synthetic_subcommand_feeds_kitti_loader(tmp_path):
    pytest.importorskip('pcdet_ext.datasets.synthetic.writer', reason='synthetic generator not present')
    from tools.create_data import main
    out = tmp_path / 'synthetic'
    assert main(['synthetic', '--out', str(out), '--frames', '4', '--seed', '2', '--val_fraction', '0.25',
                 '--workers', '1', '--no_progress']) == 0
    for name in ('kitti_infos_train.pkl', 'kitti_infos_val.pkl', 'kitti_dbinfos_train.pkl', 'gt_database'):
        assert (out / name).exists(), name
    from pcdet_ext.config import ConfigDict as CD, cfg_from_yaml_file
    cfg = cfg_from_yaml_file(str(REPO / 'cfgs/dataset_configs/synthetic_dataset.yaml'), CD())
    assert cfg.DATASET == 'KittiDataset' and cfg.DATA_PATH == 'data/synthetic'
    ds, dl, _ = build_dataloader(cfg, CLASSES, batch_size=2, dist=False, root_path=out, workers=0,
                                 seed=0, training=True)
    batch = next(iter(dl))
    assert batch['gt_boxes'].shape[0] == 2 and (batch['gt_boxes'][..., 7] > 0).any()
