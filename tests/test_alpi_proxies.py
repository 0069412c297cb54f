"""ALPI proxies: points on the visible faces of their box, nothing behind it, density falls with
range, placement from the 2D box and prior only, occlusion of real points, copy-paste."""
import numpy as np
import pytest

from pcdet_ext.alpi.frustum import FrustumExtractor
from pcdet_ext.alpi.proxies import (ProxyGenerator, inject_object, occluded_by_box, ray_box_entry,
                                    scan_object)
from pcdet_ext.alpi.weak_labels import WeakLabel
from pcdet_ext.datasets.synthetic import default_lidar, kitti_calibration
from pcdet_ext.geometry import boxes3d_lidar_to_imageboxes

IMAGE_SHAPE = (375, 1242)


def _local(points, box):
    """Points in the box frame (x along the heading)."""
    c, s = np.cos(box[6]), np.sin(box[6])
    d = points[:, :3] - box[:3]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)


def test_box_proxy_points_lie_on_visible_faces():
    lidar = default_lidar()
    box = np.array([12.0, 3.0, -0.9, 4.0, 1.7, 1.5, 0.6])
    pts = scan_object(box, 'Car', np.random.default_rng(0), lidar, shape='box')
    assert len(pts) > 100
    loc = _local(pts, box)
    half = box[3:6] / 2
    # on the surface: some coordinate at +-half (range noise 2 cm), all within the box + noise
    dist_to_face = np.min(np.abs(np.abs(loc) - half), axis=1)
    assert np.all(np.abs(loc) <= half + 0.1)
    assert np.percentile(dist_to_face, 95) < 0.06
    # visible faces only: the face a point lies on looks towards the sensor
    face = np.argmin(np.abs(np.abs(loc) - half), axis=1)
    sign = np.sign(loc[np.arange(len(loc)), face])
    c, s = np.cos(box[6]), np.sin(box[6])
    axes = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
    normals = axes[face] * sign[:, None]
    to_sensor = -box[:3]
    assert np.mean((normals @ to_sensor) > 0) > 0.97


def test_parts_proxy_inside_box_and_nothing_behind_it():
    lidar = default_lidar()
    box = np.array([15.0, -2.0, -0.9, 4.2, 1.8, 1.5, -0.3])
    pts = scan_object(box, 'Car', np.random.default_rng(1), lidar, shape='parts')
    assert len(pts) > 50
    loc = _local(pts, box)
    assert np.all(np.abs(loc) <= box[3:6] / 2 + 0.1)
    # every point is the first hit on its ray: no proxy point lies behind another surface of the box
    t = ray_box_entry(pts, box + np.array([0, 0, 0, 0.2, 0.2, 0.2, 0]))
    assert np.all(np.linalg.norm(pts[:, :3], axis=1) >= t - 0.1)


def test_point_count_falls_with_range():
    lidar = default_lidar()
    counts = []
    for r in (8.0, 16.0, 32.0, 50.0):
        box = np.array([r, 0.0, -0.9, 4.0, 1.7, 1.5, 0.3])
        counts.append(len(scan_object(box, 'Car', np.random.default_rng(2), lidar, shape='box')))
    assert all(a > b for a, b in zip(counts, counts[1:])), counts
    assert counts[0] > 8 * counts[-1]


def test_injection_removes_real_points_inside_and_behind():
    lidar = default_lidar()
    box = np.array([10.0, 0.0, -0.9, 4.0, 1.7, 1.5, 0.0])
    # a wall 10 m behind the box, points in the box, a point in front of it
    ys, zs = np.meshgrid(np.linspace(-3, 3, 61), np.linspace(-1.6, 1.0, 27))
    wall = np.stack([np.full(ys.size, 20.0), ys.ravel(), zs.ravel(), np.zeros(ys.size)], axis=1)
    inside = np.array([[10.0, 0.2, -0.9, 0.0], [9.5, -0.3, -0.5, 0.0]])
    front = np.array([[5.0, 0.0, -0.9, 0.0]])
    scene = np.concatenate([wall, inside, front]).astype(np.float32)
    obj = scan_object(box, 'Car', np.random.default_rng(3), lidar, shape='box')
    out = inject_object(scene, box, obj, lidar)
    hidden = occluded_by_box(scene, box)
    assert hidden[len(wall):len(wall) + 2].all() and not hidden[-1]
    kept_wall = out[(out[:, 0] > 19)]
    # no remaining wall point is behind the box from the sensor
    assert not occluded_by_box(kept_wall, box).any()
    assert len(kept_wall) < len(wall)
    assert np.any(np.all(np.isclose(out, front[0]), axis=1))


def test_occluder_in_front_hides_proxy_points():
    lidar = default_lidar()
    box = np.array([20.0, 0.0, -0.9, 4.0, 1.7, 1.5, 0.0])
    obj = scan_object(box, 'Car', np.random.default_rng(4), lidar, shape='box')
    occluder = scan_object(np.array([10.0, 0.0, -0.9, 0.6, 3.0, 1.5, 0.0]), 'Car', np.random.default_rng(5),
                           lidar, shape='box')
    out = inject_object(occluder, box, obj, lidar)
    assert len(out) < len(occluder) + len(obj)  # part of the proxy is hidden
    assert len(out) > len(occluder)


def test_proxy_placement_uses_2d_box_and_prior_only():
    calib = kitti_calibration()
    gen = ProxyGenerator({'RATIO': 100, 'SHAPE': 'box', 'DEPTH_JITTER': 0.0},
                         extractor=FrustumExtractor({'NUM_POINTS': 256}))
    # a car-like 2D box 60 px tall: depth = f_y * h / 60
    lab = WeakLabel('000000', 0, 'Car', np.array([500.0, 170.0, 600.0, 230.0]), 0.0, 0)
    box = gen.place(lab, calib, np.random.default_rng(0))
    proj = boxes3d_lidar_to_imageboxes(box[None], calib)[0]
    assert abs(0.5 * (proj[0] + proj[2]) - 550) < 20 and abs(0.5 * (proj[1] + proj[3]) - 200) < 20
    rect_depth = calib.lidar_to_rect(box[None, :3])[0, 2]
    assert rect_depth == pytest.approx(calib.P2[1, 1] * box[5] / 60.0, rel=0.02)


def test_make_proxy_gives_exact_target_and_is_seeded():
    calib = kitti_calibration()
    rng = np.random.default_rng(0)
    ground = np.stack([rng.uniform(3, 40, 20000), rng.uniform(-15, 15, 20000), np.full(20000, -1.7),
                       rng.uniform(0, 1, 20000)], axis=1).astype(np.float32)
    lab = WeakLabel('000007', 2, 'Car', np.array([520.0, 165.0, 640.0, 225.0]), 0.0, 0)
    gen = ProxyGenerator({'SHAPE': 'parts'}, extractor=FrustumExtractor({'NUM_POINTS': 256}))
    a = gen.make_proxy('000007', ground, calib, lab, 0, IMAGE_SHAPE)
    b = gen.make_proxy('000007', ground, calib, lab, 0, IMAGE_SHAPE)
    assert a is not None
    np.testing.assert_array_equal(a.sample.points, b.sample.points)
    back = a.sample.to_lidar_boxes(a.box_frustum[None])[0]
    np.testing.assert_allclose(back[:6], a.box_lidar[:6], atol=2e-2)
    # the frustum (frustum frame) holds the proxy's own points, around the target centre
    pts = a.sample.points[:a.sample.num_real_points, :3]
    near = np.linalg.norm(pts - a.box_frustum[:3], axis=1) <= np.linalg.norm(a.box_frustum[3:6]) / 2 + 0.1
    assert near.mean() > 0.3


def test_unknown_class_is_skipped_and_counted():
    from pcdet_ext.alpi.weak_labels import ReadReport
    gen = ProxyGenerator({}, extractor=FrustumExtractor({'NUM_POINTS': 64}))
    rep = ReadReport()
    lab = WeakLabel('000000', 0, 'Tram', np.array([500.0, 170.0, 600.0, 230.0]), 0.0, 0)
    assert gen.make_proxy('000000', np.zeros((10, 4), np.float32), kitti_calibration(), lab, 0, IMAGE_SHAPE,
                          rep) is None
    assert rep.skipped['unknown_class'] == 1


def test_copy_paste_keeps_range_and_moves_to_host_azimuth():
    calib = kitti_calibration()
    lidar = default_lidar()
    gen = ProxyGenerator({}, extractor=FrustumExtractor({'NUM_POINTS': 128}), lidar=lidar)
    src_box = np.array([15.0, 4.0, -0.9, 4.0, 1.7, 1.5, 0.4])
    src_pts = scan_object(src_box, 'Car', np.random.default_rng(6), lidar)
    host = WeakLabel('000001', 0, 'Car', np.array([560.0, 170.0, 660.0, 230.0]), 0.0, 0)
    out = gen.paste_instance('000001', np.zeros((0, 4), np.float32), calib, host, src_pts, src_box, 'Car', 0,
                             IMAGE_SHAPE)
    assert out is not None and out.kind == 'paste'
    assert np.hypot(*out.box_lidar[:2]) == pytest.approx(np.hypot(*src_box[:2]), rel=1e-4)
    proj = boxes3d_lidar_to_imageboxes(out.box_lidar[None].astype(np.float64), calib)[0]
    assert 540 < 0.5 * (proj[0] + proj[2]) < 680
