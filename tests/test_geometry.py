"""Geometry: calibration parsing, camera<->LiDAR box conversions, corners, projection."""
import math

import numpy as np
import pytest
import torch

from pcdet_ext.geometry import (Calibration, CalibrationError, boxes3d_kitti_camera_to_corners,
                                boxes3d_kitti_camera_to_imageboxes, boxes3d_kitti_camera_to_lidar,
                                boxes3d_lidar_to_imageboxes, boxes3d_lidar_to_kitti_camera,
                                boxes_to_corners_3d, check_boxes, limit_period,
                                mask_boxes_outside_range, project_boxes_lidar_to_image_torch)


def _read_labels(path):
    out = []
    for line in open(path):
        f = line.split()
        if f[0] == 'DontCare':
            continue
        h, w, l = map(float, f[8:11])
        out.append(dict(name=f[0], trunc=float(f[1]), occ=int(f[2]), bbox=np.array(f[4:8], float),
                        cam=np.array([*map(float, f[11:14]), l, h, w, float(f[14])])))
    return out


def _iou2d(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_real_frames_roundtrip_and_projection(kitti_real):
    n_cars = 0
    for calib_file in sorted((kitti_real / 'training' / 'calib').glob('*.txt')):
        calib = Calibration(str(calib_file))
        objs = _read_labels(kitti_real / 'training' / 'label_2' / calib_file.name)
        if not objs:
            continue
        cam = np.stack([o['cam'] for o in objs])
        lidar = boxes3d_kitti_camera_to_lidar(cam, calib)
        back = boxes3d_lidar_to_kitti_camera(lidar, calib)
        # Centre and size survive the round trip; the heading up to 2*pi.
        np.testing.assert_allclose(back[:, 3:6], cam[:, 3:6], atol=1e-9)
        dyaw = limit_period(back[:, 6] - cam[:, 6])
        assert np.abs(dyaw).max() < 1e-9
        # LiDAR corners land on the camera corners (same box) up to the small tilt between
        # camera y and LiDAR z, which only moves the centre by a few cm.
        c_cam = boxes3d_kitti_camera_to_corners(cam)
        c_lid = calib.lidar_to_rect(boxes_to_corners_3d(lidar).reshape(-1, 3)).reshape(-1, 8, 3)
        assert np.abs(c_cam - c_lid).max() < 0.2
        img = boxes3d_kitti_camera_to_imageboxes(cam, calib, (375, 1242))
        img2 = boxes3d_lidar_to_imageboxes(lidar, calib, (375, 1242))
        for o, b, b2 in zip(objs, img, img2):
            if o['name'] == 'Car' and o['occ'] == 0 and o['trunc'] < 0.1:
                n_cars += 1
                assert _iou2d(b, o['bbox']) >= 0.8, (calib_file.name, b, o['bbox'])
                assert _iou2d(b2, o['bbox']) >= 0.8
    assert n_cars >= 3


def test_corner_order_and_heading():
    box = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.0, math.pi / 2]])
    c = boxes_to_corners_3d(box)[0]
    # Heading pi/2: the box's length runs along +y; corner 0 is front-left-bottom.
    np.testing.assert_allclose(c[:4, 2], 0.0, atol=1e-12)
    np.testing.assert_allclose(c[4:, 2], 1.0, atol=1e-12)
    np.testing.assert_allclose(c[0, :2], [0.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(c.mean(0), box[0, :3], atol=1e-12)


def test_torch_projection_matches_numpy(kitti_real):
    calib = Calibration(str(kitti_real / 'training' / 'calib' / '000001.txt'))
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(5, 40, 20), rng.uniform(-5, 5, 20), rng.uniform(-1.5, 0, 20),
                             rng.uniform(1, 4, 20), rng.uniform(0.5, 2, 20), rng.uniform(1, 2, 20),
                             rng.uniform(-3, 3, 20)])
    # Reference: project the LiDAR-frame corners directly (the camera-box path differs by the
    # camera/LiDAR tilt, a few pixels, because the camera box is upright in the camera frame).
    uv, _ = calib.lidar_to_img(boxes_to_corners_3d(boxes).reshape(-1, 3))
    uv = uv.reshape(-1, 8, 2)
    ref = np.concatenate([uv.min(1), uv.max(1)], 1)
    assert np.abs(ref - boxes3d_lidar_to_imageboxes(boxes, calib)).max() < 10
    t = project_boxes_lidar_to_image_torch(torch.tensor(boxes, requires_grad=True),
                                           torch.tensor(calib.lidar_to_rect_mat), torch.tensor(calib.P2))
    np.testing.assert_allclose(t.detach().numpy(), ref, atol=1e-6)
    t.sum().backward()


def test_calibration_errors(tmp_path):
    with pytest.raises(CalibrationError, match='not found'):
        Calibration(str(tmp_path / 'nope.txt'))
    bad = tmp_path / 'trunc.txt'
    bad.write_text('P2: 1 2 3\n')
    with pytest.raises(CalibrationError, match=r'trunc\.txt.*P2 has 3 values'):
        Calibration(str(bad))
    bad.write_text('P2: ' + ' '.join(['1'] * 12) + '\nR0_rect: ' + ' '.join(['nan'] * 9) + '\n')
    with pytest.raises(CalibrationError, match='NaN'):
        Calibration(str(bad))
    bad.write_text('P2: ' + ' '.join(['1'] * 12) + '\n')
    with pytest.raises(CalibrationError, match='missing calibration entries'):
        Calibration(str(bad))


def test_calibration_write_roundtrip(tmp_path, kitti_real):
    calib = Calibration(str(kitti_real / 'training' / 'calib' / '000000.txt'))
    calib.write(str(tmp_path / 'c.txt'))
    again = Calibration(str(tmp_path / 'c.txt'))
    np.testing.assert_allclose(again.lidar_to_rect_mat, calib.lidar_to_rect_mat, atol=1e-12)
    pts = np.random.default_rng(1).normal(size=(50, 3)) * 10
    np.testing.assert_allclose(calib.rect_to_lidar(calib.lidar_to_rect(pts)), pts, atol=1e-9)


def test_check_boxes_and_range_mask():
    with pytest.raises(ValueError, match='gt_boxes: expected shape'):
        check_boxes(np.zeros((3, 5), np.float32), 'gt_boxes')
    with pytest.raises(ValueError, match='box 1 contains NaN'):
        check_boxes(np.array([[0, 0, 0, 1, 1, 1, 0], [np.nan, 0, 0, 1, 1, 1, 0]], np.float32))
    boxes = np.array([[1, 1, 0, 1, 1, 1, 0], [100, 0, 0, 1, 1, 1, 0]], np.float64)
    assert mask_boxes_outside_range(boxes, [0, -40, -3, 70.4, 40, 1]).tolist() == [True, False]
    assert limit_period(np.array([3 * math.pi / 2]))[0] == pytest.approx(-math.pi / 2)
