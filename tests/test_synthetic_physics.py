"""Synthetic frames are physically sane and their labels agree with the geometry module."""
import numpy as np
import pytest
from shapely.geometry import Polygon

from pcdet_ext.datasets.synthetic import IMAGE_SHAPE, LidarModel, Primitives, generate_frame
from pcdet_ext.datasets.synthetic.labels import occlusion_level
from pcdet_ext.datasets.synthetic.objects import SIZE_STATS, object_parts
from pcdet_ext.geometry import (alpha_from_ry, boxes3d_kitti_camera_to_lidar, boxes3d_lidar_to_imageboxes,
                                boxes_bev_corners, boxes_to_corners_3d, limit_period,
                                rotate_points_along_z)

NOISE_MARGIN = 0.1  # 5 sigma of the 2 cm range noise


@pytest.fixture(scope='module')
def frames():
    return [generate_frame(7, i) for i in range(6)]


def _local(points, box):
    """Points in the frame of one LiDAR box (centre at 0, heading along +x)."""
    p = (points[:, :3] - box[:3])[None].astype(np.float64)
    return rotate_points_along_z(p, np.array([-box[6]]))[0]


def _inside(points, box, shrink):
    loc = _local(points, box)
    return (np.abs(loc) < np.asarray(box[3:6]) / 2 - shrink).all(axis=1)


def test_no_points_inside_solids(frames):
    for f in frames[:3]:
        prims = f['scene'].primitives
        # foliage returns scatter inside the crowns (and whatever the crowns overlap) by design
        solid = f['point_prim'] < len(prims.boxes) + len(prims.cylinders)
        pts = f['points'][solid]
        assert solid.mean() > 0.8
        for box in prims.boxes:  # object parts and buildings
            reach = np.hypot(box[3], box[4]) / 2
            near = (np.abs(pts[:, 0] - box[0]) < reach) & (np.abs(pts[:, 1] - box[1]) < reach)
            assert not _inside(pts[near], box, NOISE_MARGIN).any()
        for x, y, z0, z1, r in prims.cylinders:
            d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
            assert not ((d < r - NOISE_MARGIN) & (pts[:, 2] > z0 + NOISE_MARGIN)
                        & (pts[:, 2] < z1 - NOISE_MARGIN)).any()
        g0, gx, gy = prims.ground
        below = pts[:, 2] < g0 + gx * pts[:, 0] + gy * pts[:, 1] - NOISE_MARGIN
        assert not below.any()


def test_object_points_lie_on_their_label_box(frames):
    held = []
    for f in frames:
        pts, owner = f['points'], f['point_owner']
        for i, box in enumerate(f['all_boxes_lidar']):
            mine = pts[owner == i]
            if len(mine):
                assert _inside(mine, box, -NOISE_MARGIN).all()
                # the label box holds its points despite the noise (KITTI boxes do); a few
                # returns at the bottom edge may dip below it
                held.append(_inside(mine, box, 0.0))
                assert held[-1].mean() >= 0.9
                # and on the surface: nothing deep inside the label box's core
                core = np.asarray(box[3:6]) / 2
                assert (np.abs(_local(mine, box)) > core * 0.1).any(axis=1).all()
        assert f['all_num_points'].sum() == (owner >= 0).sum()
    assert np.concatenate(held).mean() >= 0.99


def test_no_bev_overlaps_and_plausible_sizes(frames):
    sizes = {c: [] for c in SIZE_STATS}
    for f in frames:
        polys = [Polygon(c) for c in boxes_bev_corners(f['all_boxes_lidar'])]
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert polys[i].intersection(polys[j]).area < 1e-6
        for box, name in zip(f['all_boxes_lidar'], f['all_names']):
            sizes[name].append(box[3:6])
            dist = np.hypot(box[0], box[1])
            assert 2.0 < dist < 75.0  # clear of the ego car, within 70 m along the road
    cars = np.array(sizes['Car'])
    assert len(cars) >= 20
    assert np.allclose(cars.mean(0), [3.9, 1.6, 1.5], atol=[0.25, 0.1, 0.1])


def test_labels_round_trip_through_geometry(frames):
    for f in frames:
        calib = f['calib']
        rows = [line.split() for line in f['labels_text'].splitlines()]
        assert [r[0] for r in rows] == list(f['names'])
        if not rows:
            continue
        vals = np.array([[float(v) for v in r[1:]] for r in rows])
        h, w, l = vals[:, 7], vals[:, 8], vals[:, 9]
        cam = np.column_stack([vals[:, 10:13], l, h, w, vals[:, 13]])
        lidar = boxes3d_kitti_camera_to_lidar(cam, calib)
        ref = f['boxes_lidar']
        assert np.allclose(lidar[:, :6], ref[:, :6], atol=1e-6)
        assert np.allclose(limit_period(lidar[:, 6] - ref[:, 6]), 0, atol=1e-6)
        assert np.allclose(vals[:, 2], alpha_from_ry(cam[:, 6], cam[:, 0], cam[:, 2]), atol=0.006)
        # objects wholly in front of the camera: the 2D box is the projected LiDAR box's
        # (exactly), and the geometry module's up to its ~1 cm camera/LiDAR height quirk
        box2d = vals[:, 3:7]
        ahead = cam[:, 2] - np.hypot(l, w) / 2 > 0.5
        corners = boxes_to_corners_3d(ref)
        uv, _ = calib.lidar_to_img(corners.reshape(-1, 3))
        uv = uv.reshape(-1, 8, 2)
        exact = np.concatenate([uv.min(1), uv.max(1)], 1)
        exact[:, [0, 2]] = exact[:, [0, 2]].clip(0, IMAGE_SHAPE[1] - 1)
        exact[:, [1, 3]] = exact[:, [1, 3]].clip(0, IMAGE_SHAPE[0] - 1)
        assert np.allclose(box2d[ahead], exact[ahead], atol=0.006)
        geo = boxes3d_lidar_to_imageboxes(ref, calib, IMAGE_SHAPE)
        assert np.allclose(box2d[ahead], geo[ahead], atol=3.0)
        # truncation is zero exactly when the projected box stays inside the image
        full = np.concatenate([uv.min(1), uv.max(1)], 1)
        inside = (full[:, 0] >= 0) & (full[:, 1] >= 0) & (full[:, 2] <= IMAGE_SHAPE[1] - 1) \
            & (full[:, 3] <= IMAGE_SHAPE[0] - 1)
        assert np.all(vals[ahead & inside, 0] == 0)
        assert np.all(vals[ahead & ~inside, 0] > 0)


def test_2d_boxes_enclose_visible_points(frames):
    checked = 0
    for f in frames:
        calib = f['calib']
        labelled = np.nonzero(f['labelled'])[0]
        for k, i in enumerate(labelled):
            mine = f['points'][f['point_owner'] == i]
            if len(mine) == 0:
                continue
            uv, depth = calib.lidar_to_img(mine[:, :3])
            x1, y1, x2, y2 = f['box2d'][k]
            ok = (uv[:, 0] >= x1 - 2) & (uv[:, 0] <= x2 + 2) & (uv[:, 1] >= y1 - 2) & (uv[:, 1] <= y2 + 2)
            in_img = (uv[:, 0] >= 0) & (uv[:, 0] < IMAGE_SHAPE[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < IMAGE_SHAPE[0])
            assert ok[in_img & (depth > 0)].all()
            checked += 1
    assert checked >= 20


def test_only_camera_view_objects_are_labelled(frames):
    for f in frames:
        cam_x = f['all_boxes_lidar'][:, 0]
        assert not f['labelled'][cam_x < -3].any()  # behind the car: never in image_2
    assert any((~f['labelled']).any() for f in frames)  # scenes do have unlabelled objects


def _car_scene(occluder: bool):
    car = np.array([20.0, 0.0, -1.73 + 0.75, 4.0, 1.7, 1.5, 0.3])
    parts = object_parts(car, 'Car', np.random.default_rng(0))
    boxes, owner = parts, [0] * len(parts)
    if occluder:  # a van-sized box in front, hiding the lower-left of the car
        boxes = np.vstack([parts, [[12.0, -0.6, -1.73 + 0.9, 2.0, 1.2, 1.8, 0.0]]])
        owner = owner + [-1]
    return car, Primitives(boxes=boxes, box_owner=owner, ground=np.array([-1.73, 0.0, 0.0]))


def test_occlusion_reduces_points_and_raises_level():
    lidar = LidarModel()
    car, free = _car_scene(False)
    _, hidden = _car_scene(True)
    a = lidar.cast(free, np.random.default_rng(1), num_objects=1)
    b = lidar.cast(hidden, np.random.default_rng(1), num_objects=1)
    assert a.rays_total[0] == b.rays_total[0] > 100
    assert a.rays_visible[0] == a.rays_total[0]
    assert b.num_points[0] < 0.8 * a.num_points[0]
    assert occlusion_level(a.rays_total, a.rays_visible)[0] == 0
    assert occlusion_level(b.rays_total, b.rays_visible)[0] >= 1
    # the car's surviving points are its visible rays minus dropout, never more
    assert b.num_points[0] <= b.rays_visible[0] < a.rays_visible[0]
    assert 0.85 * a.rays_visible[0] <= a.num_points[0] <= a.rays_visible[0]


def test_range_noise_and_limits():
    lidar = LidarModel()
    wall = Primitives(boxes=np.array([[30.0, 0.0, 0.0, 1.0, 40.0, 10.0, 0.0]]))
    scan = lidar.cast(wall, np.random.default_rng(0))
    front = scan.points[:, 0] - 29.5  # the wall's face is the plane x = 29.5
    assert len(scan.points) > 1000
    assert abs(front.mean()) < 0.005 and 0.01 < front.std() < 0.03
    far = Primitives(boxes=np.array([[150.0, 0.0, 0.0, 1.0, 40.0, 10.0, 0.0]]))
    assert len(lidar.cast(far, np.random.default_rng(0)).points) == 0  # beyond 120 m


def test_2d_box_of_an_object_straddling_the_camera_plane():
    """Part of the car is behind the camera: its 2D box must still enclose every in-view
    point of the box (a naive corner projection flips the corners behind the camera)."""
    from pcdet_ext.datasets.synthetic import kitti_calibration
    from pcdet_ext.datasets.synthetic.labels import image_boxes, truncation
    calib = kitti_calibration()
    box = np.array([[1.0, -1.6, -0.98, 4.0, 1.6, 1.5, 0.0]])  # x from -1 to 3 m, right beside
    full, clipped, ok = image_boxes(box, calib)
    assert ok[0] and truncation(full, clipped)[0] > 0.3
    g = np.linspace(-0.5, 0.5, 15)
    local = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3) * box[0, 3:6]
    pts = local + box[0, :3]
    uv, depth = calib.lidar_to_img(pts)
    # boxes are clipped to the last pixel centre (W - 1, H - 1), as OpenPCDet does
    seen = (depth > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] <= IMAGE_SHAPE[1] - 1) & (uv[:, 1] >= 0) \
        & (uv[:, 1] <= IMAGE_SHAPE[0] - 1)
    assert seen.sum() > 10
    x1, y1, x2, y2 = clipped[0]
    u, v = uv[seen, 0], uv[seen, 1]
    assert ((u >= x1 - 1e-6) & (u <= x2 + 1e-6) & (v >= y1 - 1e-6) & (v <= y2 + 1e-6)).all()
    # and it is tight: the seen points reach near each side not on the image border
    assert u.min() - x1 < 30 and y2 - v.max() < 30
