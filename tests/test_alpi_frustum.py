"""ALPI frustums on the real KITTI frames: selection, frustum frame, box mapping, resampling,
skips, jitter and the on-disk store."""
import json

import numpy as np
import pytest
import torch

from pcdet_ext.alpi.frustum import (FrustumExtractor, FrustumStore, FrustumWriter, collate_frustums,
                                    frustum_boxes_to_lidar_torch, load_frame_frustums, rect_to_frustum,
                                    write_frustum_split)
from pcdet_ext.alpi.weak_labels import WeakLabel, read_image_shape, read_kitti_weak_labels
from pcdet_ext.geometry import Calibration, boxes3d_kitti_camera_to_lidar

FRAMES = ('000000', '000001', '000002', '000003', '000076')


@pytest.fixture(scope='module')
def frames(kitti_real):
    """{frame_id: (points, calib, weak labels, image shape, 3D ground truth by obj_index)}."""
    root = kitti_real / 'training'
    out = {}
    for fid in FRAMES:
        pts = np.fromfile(root / 'velodyne' / f'{fid}.bin', dtype=np.float32).reshape(-1, 4)
        calib = Calibration(str(root / 'calib' / f'{fid}.txt'))
        shape = read_image_shape(str(root / 'image_2' / f'{fid}.png'))
        labels, _ = read_kitti_weak_labels(str(root / 'label_2' / f'{fid}.txt'), image_shape=shape)
        gt = {}  # the test (not the code under test) reads 3D ground truth to check the mapping
        lines = [l for l in (root / 'label_2' / f'{fid}.txt').read_text().splitlines() if l.strip()]
        for i, line in enumerate(lines):
            t = line.split()
            h, w, l = map(float, t[8:11])
            gt[i] = np.array([float(t[11]), float(t[12]), float(t[13]), l, h, w, float(t[14])])
        out[fid] = (pts, calib, labels, shape, gt)
    return out


@pytest.fixture(scope='module')
def extracted(frames):
    ex = FrustumExtractor({'NUM_POINTS': 512})
    return {fid: ex.extract(pts, calib, labels, frame_id=fid, image_shape=shape)
            for fid, (pts, calib, labels, shape, _) in frames.items()}


def test_every_point_projects_inside_its_box(frames, extracted):
    n_samples = 0
    for fid, (samples, _) in extracted.items():
        pts, calib = frames[fid][0], frames[fid][1]
        uv_all, depth_all = calib.lidar_to_img(pts[:, :3])
        for s in samples:
            assert s.points.shape == (512, 4) and s.points.dtype == np.float32
            uv, depth = uv_all[s.point_indices], depth_all[s.point_indices]
            x1, y1, x2, y2 = s.box2d_input
            assert (depth > 0).all()
            assert ((uv[:, 0] >= x1) & (uv[:, 0] <= x2) & (uv[:, 1] >= y1) & (uv[:, 1] <= y2)).all()
            # and it is all of them: an independent count of the points in the box
            full = (depth_all > 0) & (uv_all[:, 0] >= x1) & (uv_all[:, 0] <= x2) & \
                   (uv_all[:, 1] >= y1) & (uv_all[:, 1] <= y2)
            assert s.num_real_points == full.sum()
            # the stored frustum-frame points are the rotated rect-frame points, features kept
            ref = rect_to_frustum(calib.lidar_to_rect(pts[s.point_indices, :3]), s.rot, s.origin)
            np.testing.assert_allclose(s.points[:, :3], ref, atol=1e-4)
            np.testing.assert_array_equal(s.points[:, 3], pts[s.point_indices, 3])
            n_samples += 1
    assert n_samples >= 12


@pytest.mark.parametrize('align_pitch', [True, False])
def test_centre_ray_becomes_plus_z(frames, align_pitch):
    ex = FrustumExtractor({'NUM_POINTS': 64, 'ALIGN_PITCH': align_pitch})
    depths = np.array([0.5, 5.0, 20.0, 70.0])
    checked = 0
    for fid, (pts, calib, labels, shape, _) in frames.items():
        samples, _ = ex.extract(pts, calib, labels, frame_id=fid)
        for s in samples:
            u = np.full(4, 0.5 * (s.box2d[0] + s.box2d[2]))
            v = np.full(4, 0.5 * (s.box2d[1] + s.box2d[3]))
            ray = rect_to_frustum(calib.img_to_rect(u, v, depths), s.rot, s.origin)
            np.testing.assert_allclose(ray[:, 0], 0, atol=1e-9)
            if align_pitch:
                np.testing.assert_allclose(ray[:, 1], 0, atol=1e-9)
                np.testing.assert_allclose(ray[:, 2], np.linalg.norm(ray, axis=1), rtol=1e-12)
            else:  # yaw-only frame: the ray keeps its slope in y
                assert s.pitch == 0 and abs(ray[-1, 1]) > 1e-3
            assert (np.diff(ray[:, 2]) > 0).all()
            checked += 1
    assert checked >= 12


def test_box_mapping_round_trip_on_ground_truth(frames, extracted):
    for fid, (samples, _) in extracted.items():
        calib, gt = frames[fid][1], frames[fid][4]
        for s in samples:
            cam = gt[s.obj_index][None]
            box_f = s.from_camera_boxes(cam)
            # the labelled object lies near the frustum axis, ahead of the camera
            assert box_f[0, 2] > 2 and np.hypot(box_f[0, 0], box_f[0, 1]) < 0.1 * box_f[0, 2] + 0.5
            np.testing.assert_allclose(s.to_camera_boxes(box_f), cam, atol=1e-9)
            lidar = boxes3d_kitti_camera_to_lidar(cam, calib)
            np.testing.assert_allclose(s.to_lidar_boxes(box_f), lidar, atol=1e-9)
            # geometry's LiDAR <-> camera shift of the centre by h / 2 uses each frame's own
            # vertical (camera y vs LiDAR z, ~0.5 deg apart), as OpenPCDet: a ~1 cm round trip
            np.testing.assert_allclose(s.from_lidar_boxes(lidar), box_f, atol=0.02)


def test_torch_mapping_matches_numpy_and_has_gradients(frames, extracted):
    samples = [s for fid in FRAMES for s in extracted[fid][0]]
    batch = collate_frustums(samples, class_names=['Car', 'Pedestrian', 'Cyclist'])
    assert batch['cls_index'].shape == (len(samples),) and batch['P2'].shape == (len(samples), 3, 4)
    with pytest.raises(ValueError, match=r"classes \['Cyclist'\] are not in CLASS_NAMES"):
        collate_frustums(samples, class_names=['Car', 'Pedestrian'])
    rng = np.random.default_rng(0)
    n = len(samples)
    boxes_f = np.concatenate([rng.normal(0, 0.5, (n, 2)), rng.uniform(5, 40, (n, 1)),
                              rng.uniform(0.5, 4, (n, 3)), rng.uniform(-3, 3, (n, 1))], 1)
    ref = np.concatenate([s.to_lidar_boxes(b[None]) for s, b in zip(samples, boxes_f)])
    t = torch.tensor(boxes_f, requires_grad=True)
    out = frustum_boxes_to_lidar_torch(t, torch.tensor(batch['rot']), torch.tensor(batch['origin']),
                                       torch.tensor(batch['yaw']), torch.tensor(batch['rect_to_lidar']))
    np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-9)
    out.sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_resampling_is_fixed_size_and_seeded(frames):
    pts, calib, labels, shape, _ = frames['000076']
    ex = FrustumExtractor({'NUM_POINTS': 300, 'SEED': 3})
    samples, _ = ex.extract(pts, calib, labels, frame_id='000076')
    many = [s for s in samples if s.num_real_points > 300]
    few = [s for s in samples if s.num_real_points < 300]
    assert many and few
    for s in many:  # a random subset without repeats
        assert len(np.unique(s.point_indices)) == 300
    for s in few:  # all real points first, then repeats of them
        real = s.point_indices[:s.num_real_points]
        assert len(np.unique(real)) == s.num_real_points
        assert np.isin(s.point_indices[s.num_real_points:], real).all()
    # the draw depends on (seed, frame, object), not on the order of the labels
    again, _ = ex.extract(pts, calib, labels[::-1], frame_id='000076')
    by_obj = {s.obj_index: s for s in again}
    for s in samples:
        np.testing.assert_array_equal(s.point_indices, by_obj[s.obj_index].point_indices)
    other, _ = FrustumExtractor({'NUM_POINTS': 300, 'SEED': 4}).extract(pts, calib, labels, frame_id='000076')
    assert any(not np.array_equal(a.point_indices, b.point_indices) for a, b in zip(samples, other))


def test_small_and_empty_frustums_are_skipped_and_counted(frames):
    pts, calib, labels, shape, _ = frames['000001']
    ex = FrustumExtractor()
    _, rep = ex.extract(pts, calib, labels, frame_id='000001')
    assert rep.skipped == {'too_small': 1}  # the 21.6 px tall Car
    # a box in the sky above the horizon has no LiDAR point behind it
    sky = WeakLabel('000001', 7, 'Car', np.array([600.0, 0.0, 700.0, 40.0]), 0.0, 0)
    samples, rep = FrustumExtractor({'MIN_BOX_HEIGHT': 10}).extract(pts, calib, [sky], frame_id='000001')
    assert samples == [] and rep.skipped == {'empty_frustum': 1}
    assert 'frame 000001 object 7' in rep.messages[0]
    with pytest.raises(ValueError, match=r'frame x: points must be \(N, 3\+C\)'):
        ex.extract(pts[:, :2], calib, labels, frame_id='x')


def test_training_jitter(frames):
    pts, calib, labels, shape, _ = frames['000076']
    ex = FrustumExtractor({'NUM_POINTS': 64, 'JITTER_2D': 0.05})
    a, _ = ex.extract(pts, calib, labels, frame_id='000076', training=True, epoch=0, image_shape=shape)
    b, _ = ex.extract(pts, calib, labels, frame_id='000076', training=True, epoch=0, image_shape=shape)
    c, _ = ex.extract(pts, calib, labels, frame_id='000076', training=True, epoch=1, image_shape=shape)
    plain, _ = ex.extract(pts, calib, labels, frame_id='000076', image_shape=shape)
    for sa, sb, sc, sp in zip(a, b, c, plain):
        np.testing.assert_array_equal(sa.box2d, sp.box2d)  # the loss target never moves
        np.testing.assert_array_equal(sp.box2d_input, sp.box2d)  # no jitter outside training
        np.testing.assert_array_equal(sa.box2d_input, sb.box2d_input)
        assert not np.array_equal(sa.box2d_input, sc.box2d_input)
        w, h = sa.box2d[2] - sa.box2d[0], sa.box2d[3] - sa.box2d[1]
        d = np.abs(sa.box2d_input - sa.box2d)
        # a side moves by the centre shift (<= 5 %) plus half the size change (<= 2.5 %)
        assert 0 < d.max() and (d[[0, 2]] <= 0.075 * w + 1e-9).all() and (d[[1, 3]] <= 0.075 * h + 1e-9).all()


def _frame_source(frames):
    for fid, (pts, calib, labels, _, _) in frames.items():
        yield fid, pts, calib, labels


def test_writer_store_round_trip_and_resume(frames, tmp_path):
    ex = FrustumExtractor({'NUM_POINTS': 128})
    out = tmp_path / 'frustums'
    # a first run that wrote one frame and was killed before its manifest
    pts, calib, labels, _, _ = frames['000000']
    first = FrustumWriter(str(out))
    first.write('000000', ex.extract(pts, calib, labels, frame_id='000000')[0], calib, num_features=1)
    mtime = (out / '000000.npz').stat().st_mtime_ns
    write_frustum_split(_frame_source(frames), str(out), ex, progress=False)
    assert (out / '000000.npz').stat().st_mtime_ns == mtime  # resumed, not rewritten
    assert not list(out.glob('*.tmp'))
    manifest = json.loads((out / 'manifest.json').read_text())
    assert sorted(manifest['frames']) == sorted(FRAMES)
    store = FrustumStore(str(out))
    expected = {fid: ex.extract(p, c, l, frame_id=fid)[0] for fid, (p, c, l, _, _) in frames.items()}
    assert len(store) == sum(len(v) for v in expected.values())
    for s in store:
        ref = next(r for r in expected[s.frame_id] if r.obj_index == s.obj_index)
        np.testing.assert_array_equal(s.points, ref.points)
        np.testing.assert_array_equal(s.box2d, ref.box2d)
        np.testing.assert_allclose(s.rot, ref.rot)
        assert (s.cls, s.num_real_points, s.yaw) == (ref.cls, ref.num_real_points, ref.yaw)
        np.testing.assert_allclose(s.calibration().P2, frames[s.frame_id][1].P2)
    with pytest.raises(ValueError, match='not a readable frustum file'):
        (tmp_path / 'bad.npz').write_bytes(b'junk')
        load_frame_frustums(str(tmp_path / 'bad.npz'))


def test_frustums_never_see_3d_label_fields(frames, kitti_real, tmp_path):
    """Integrity: the label files with every 3D field (and alpha) replaced by random values give
    bit-identical frustums."""
    rng = np.random.default_rng(1)
    ex = FrustumExtractor({'NUM_POINTS': 256})
    for fid in ('000076', '000003'):
        pts, calib, labels, shape, _ = frames[fid]
        lines = (kitti_real / 'training' / 'label_2' / f'{fid}.txt').read_text().splitlines()
        scrambled = []
        for line in lines:
            t = line.split()
            t[3] = f'{rng.uniform(-3, 3):.2f}'
            t[8:15] = [f'{v:.2f}' for v in rng.uniform(-100, 100, 7)]
            scrambled.append(' '.join(t))
        p = tmp_path / f'{fid}.txt'
        p.write_text('\n'.join(scrambled) + '\n')
        labels2, _ = read_kitti_weak_labels(str(p), image_shape=shape)
        for training in (False, True):
            a, _ = ex.extract(pts, calib, labels, frame_id=fid, training=training, image_shape=shape)
            b, _ = ex.extract(pts, calib, labels2, frame_id=fid, training=training, image_shape=shape)
            assert len(a) == len(b) > 0
            for sa, sb in zip(a, b):
                np.testing.assert_array_equal(sa.points, sb.points)
                np.testing.assert_array_equal(sa.box2d_input, sb.box2d_input)
