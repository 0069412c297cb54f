"""points_in_boxes against a brute-force reference; voxelization invariants and first-come order."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pcdet_ext.geometry import boxes_to_corners_3d
from pcdet_ext.ops import dynamic_voxelize, hard_voxelize, points_in_boxes, points_in_boxes_mask

SEED = np.random.SeedSequence().entropy % (2 ** 32)
KITTI = Path(__file__).resolve().parents[2] / 'shared/data/kitti_real'


@pytest.fixture
def rng():
    print(f'random seed {SEED}')
    return np.random.default_rng(SEED)


def brute_inside(point, corners):
    """Inside a box given by its 8 corners: bottom-face polygon (clockwise) and z-range."""
    bottom = corners[:4, :2]
    for k in range(4):
        p, q = bottom[k], bottom[(k + 1) % 4]
        if (q[0] - p[0]) * (point[1] - p[1]) - (q[1] - p[1]) * (point[0] - p[0]) > 0:
            return False     # left of a clockwise edge: outside
    return corners[0, 2] <= point[2] <= corners[4, 2]


def face_distance(points, boxes):
    """Smallest distance of each point to any face plane of any box (to skip ambiguous points)."""
    d = points[:, None, :2] - boxes[None, :, :2]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = d[..., 0] * c + d[..., 1] * s
    ly = d[..., 1] * c - d[..., 0] * s
    lz = points[:, None, 2] - boxes[None, :, 2]
    gaps = [np.abs(np.abs(v) - boxes[None, :, k] / 2) for v, k in ((lx, 3), (ly, 4), (lz, 5))]
    return np.minimum(np.minimum(*gaps[:2]), gaps[2]).min(1)


def test_points_in_boxes_matches_brute_force(rng):
    boxes = np.zeros((12, 7))
    boxes[:, 0:3] = rng.uniform(-4, 4, (12, 3))
    boxes[:, 3:6] = rng.uniform(0.5, 4, (12, 3))
    boxes[:, 6] = rng.uniform(-np.pi, np.pi, 12)
    boxes[6:, :3] = boxes[:6, :3] + rng.uniform(-0.3, 0.3, (6, 3))   # overlapping boxes
    pts = rng.uniform(-7, 7, (3000, 4))
    pts[:1500, :3] = boxes[rng.integers(0, 12, 1500), :3] + rng.uniform(-2, 2, (1500, 3))   # near boxes
    pts = pts[face_distance(pts, boxes) > 1e-6]
    corners = boxes_to_corners_3d(boxes)
    want = np.full(len(pts), -1)
    want_mask = np.zeros((len(boxes), len(pts)), bool)
    for i, p in enumerate(pts):
        for k in range(len(boxes)):
            if brute_inside(p, corners[k]):
                want_mask[k, i] = True
                if want[i] < 0:
                    want[i] = k
    assert (want >= 0).sum() > 300 and (want_mask.sum(0) > 1).sum() > 5   # overlaps exercised
    got = points_in_boxes(pts.astype(np.float32), boxes.astype(np.float32))
    got64 = points_in_boxes(torch.from_numpy(pts), torch.from_numpy(boxes))
    assert got.dtype == np.int64 and got64.dtype == torch.long
    np.testing.assert_array_equal(got64.numpy(), want)
    # float32 inputs round coordinates: compare only points well clear of faces
    clear = face_distance(pts.astype(np.float32).astype(np.float64), boxes.astype(np.float32)) > 1e-4
    np.testing.assert_array_equal(got[clear], want[clear])
    np.testing.assert_array_equal(points_in_boxes_mask(pts, boxes), want_mask)


def test_points_on_faces_are_inside():
    """Closed-box rule: faces, edges and corners count as inside; just beyond does not."""
    box = np.array([[1.0, -2.0, 0.5, 4.0, 2.0, 1.0, 0.0]])
    on = np.array([[3.0, -2, 0.5], [-1.0, -2, 0.5], [1, -1.0, 0.5], [1, -3.0, 0.5],
                   [1, -2, 1.0], [1, -2, 0.0], [3.0, -1.0, 1.0], [-1.0, -3.0, 0.0]])
    out = on + np.array([[2 ** -20, 0, 0], [-2 ** -20, 0, 0], [0, 2 ** -20, 0], [0, -2 ** -20, 0],
                         [0, 0, 2 ** -20], [0, 0, -2 ** -20], [0, 2 ** -20, 0], [-2 ** -20, 0, 0]])
    assert (points_in_boxes(on, box) == 0).all()
    assert (points_in_boxes(out, box) == -1).all()
    assert (points_in_boxes(on.astype(np.float32), box.astype(np.float32)) == 0).all()
    two = np.array([[0.0, 0, 0, 2, 2, 2, 0], [2.0, 0, 0, 2, 2, 2, 0]])   # shared face x = 1
    assert points_in_boxes(np.array([[1.0, 0.5, 0.5]]), two).tolist() == [0]   # lowest index wins
    assert points_in_boxes_mask(np.array([[1.0, 0.5, 0.5]]), two)[:, 0].tolist() == [True, True]


def test_points_in_boxes_bad_and_empty():
    assert points_in_boxes(np.zeros((0, 3)), np.ones((2, 7))).shape == (0,)
    assert (points_in_boxes(np.zeros((4, 3)), np.zeros((0, 7))) == -1).all()
    assert points_in_boxes_mask(np.zeros((4, 3)), np.zeros((0, 7))).shape == (0, 4)
    with pytest.raises(ValueError, match='points'):
        points_in_boxes(np.zeros((4, 2)), np.ones((2, 7)))
    with pytest.raises(ValueError, match='points: point 1'):
        points_in_boxes(np.array([[0.0, 0, 0], [np.nan, 0, 0]]), np.ones((2, 7)))
    with pytest.raises(ValueError, match='boxes'):
        points_in_boxes(np.zeros((4, 3)), np.ones((2, 5)))


def brute_voxelize(pts, vs, rng_, max_points, max_voxels):
    """Python dict, first-come in input order."""
    grid = [int(round((rng_[i + 3] - rng_[i]) / vs[i])) for i in range(3)]
    voxels, order = {}, []
    for i, p in enumerate(pts):
        c = [int(np.floor((float(p[a]) - rng_[a]) / vs[a])) for a in range(3)]
        if not all(0 <= c[a] < grid[a] for a in range(3)):
            continue
        key = (c[2], c[1], c[0])
        if key not in voxels:
            if len(order) >= max_voxels:
                continue
            voxels[key] = []
            order.append(key)
        if len(voxels[key]) < max_points:
            voxels[key].append(i)
    return order, voxels


@pytest.mark.parametrize('max_points,max_voxels', [(3, 10000), (5, 150), (1, 40)])
def test_hard_voxelize_matches_first_come_reference(rng, max_points, max_voxels):
    vs, pcr = [0.5, 0.5, 0.5], [-2.0, -2.0, -1.0, 2.0, 2.0, 1.0]
    pts = rng.uniform(-2.5, 2.5, (2000, 4)).astype(np.float32)
    pts[:, :3] = np.round(pts[:, :3] * 4) / 4     # many points exactly on voxel borders
    voxels, coords, num = hard_voxelize(pts, vs, pcr, max_points, max_voxels)
    order, want = brute_voxelize(pts, vs, pcr, max_points, max_voxels)
    assert coords.dtype == np.int32 and num.dtype == np.int32
    assert voxels.shape == (len(order), max_points, 4)
    assert [tuple(c) for c in coords.tolist()] == order
    for v, key in enumerate(order):
        idx = want[key]
        assert num[v] == len(idx)
        np.testing.assert_array_equal(voxels[v, :len(idx)], pts[idx])
        assert (voxels[v, len(idx):] == 0).all()
    if max_voxels < 1000:
        assert len(order) == max_voxels


def test_voxelize_real_kitti_scan_invariants():
    path = KITTI / 'training/velodyne/000000.bin'
    if not path.exists():
        pytest.skip(f'real KITTI frames not found at {KITTI}')
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    vs, pcr = [0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1]
    voxels, coords, num = hard_voxelize(torch.from_numpy(pts), vs, pcr, 5, 16000)
    assert voxels.shape[0] == coords.shape[0] == num.shape[0] == 16000
    assert int(num.min()) >= 1 and int(num.max()) <= 5
    c = coords.long()
    assert len({tuple(r) for r in c.tolist()}) == len(c)            # voxels are unique
    assert (c >= 0).all() and (c < torch.tensor([40, 1600, 1408])).all()
    slot = torch.arange(5)[None, :] < num[:, None].long()
    kept = voxels[slot]                                                # (K, 4) real points
    owner = c[:, None, :].expand(-1, 5, -1)[slot]
    lo = torch.tensor(pcr[:3], dtype=torch.float64) + owner[:, [2, 1, 0]] * torch.tensor(vs, dtype=torch.float64)
    p = kept[:, :3].double()
    assert ((p >= lo - 1e-6) & (p < lo + torch.tensor(vs, dtype=torch.float64) + 1e-6)).all()
    ids = dynamic_voxelize(pts, vs, pcr)
    in_range = ((pts[:, :3] >= pcr[:3]) & (pts[:, :3] < pcr[3:])).all(1)
    assert ((ids >= 0) == in_range).mean() > 0.999                    # borders may round either way
    lin = (c[:, 0] * 1600 + c[:, 1]) * 1408 + c[:, 2]
    assert set(lin.tolist()) <= set(ids[ids >= 0].tolist())


def test_voxelize_bad_and_empty():
    v, c, n = hard_voxelize(np.zeros((0, 4), np.float32), [1, 1, 1], [0, 0, 0, 4, 4, 4], 3, 10)
    assert v.shape == (0, 3, 4) and c.shape == (0, 3) and n.shape == (0,)
    with pytest.raises(ValueError, match='voxel_size'):
        hard_voxelize(np.zeros((3, 4), np.float32), [1, 0, 1], [0, 0, 0, 4, 4, 4], 3, 10)
    with pytest.raises(ValueError, match='point_cloud_range'):
        hard_voxelize(np.zeros((3, 4), np.float32), [1, 1, 1], [0, 0, 0, 4, 4], 3, 10)
    with pytest.raises(ValueError, match='max_voxels'):
        hard_voxelize(np.zeros((3, 4), np.float32), [1, 1, 1], [0, 0, 0, 4, 4, 4], 3, 0)
    with pytest.raises(ValueError, match='points'):
        dynamic_voxelize(np.zeros((3, 2), np.float32), [1, 1, 1], [0, 0, 0, 4, 4, 4])
