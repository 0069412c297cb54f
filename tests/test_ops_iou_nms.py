"""Rotated IoU and NMS against independent references (shapely polygons, brute-force NMS).

Inputs are fresh random draws each run; the seed is printed on failure via the test id.
Runs on whichever backend dispatch picks (compiled when built); test_ops_compiled.py
compares the backends with each other.
"""
import numpy as np
import pytest
import shapely
import torch

from pcdet_ext.geometry import boxes_bev_corners
from pcdet_ext.ops import batched_nms, boxes_iou3d, boxes_iou_bev, boxes_overlap_bev, nms

SEED = np.random.SeedSequence().entropy % (2 ** 32)


@pytest.fixture
def rng():
    print(f'random seed {SEED}')
    return np.random.default_rng(SEED)


def shapely_iou_pairs(a, b):
    """IoU of a[k] vs b[k] by exact polygon intersection (float64)."""
    pa = shapely.polygons(boxes_bev_corners(np.asarray(a, np.float64)[:, :7]))
    pb = shapely.polygons(boxes_bev_corners(np.asarray(b, np.float64)[:, :7]))
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-300), 0.0), inter


def pairwise_diag(fn, a, b, spacing=30.0):
    """Evaluate fn on pairs laid out on a grid `spacing` apart (more than any pair's extent,
    small enough that coordinates stay exact), so only a[k]/b[k] interact; take the diagonal."""
    a, b = a.copy(), b.copy()
    side = int(np.ceil(np.sqrt(len(a))))
    k = np.arange(len(a))
    shift = np.stack([k % side, k // side], 1) * spacing
    a[:, 0:2] += shift
    b[:, 0:2] += shift
    return np.diag(fn(a, b)), a, b


def random_pairs(rng, n, scale=1.0):
    a = np.zeros((n, 7))
    a[:, 3:6] = rng.uniform(0.2, 5.0, (n, 3)) * scale
    a[:, 6] = rng.uniform(-np.pi, np.pi, n)
    b = a.copy()
    b[:, 0:2] = rng.normal(0, 1.5, (n, 2)) * scale
    b[:, 3:6] = rng.uniform(0.2, 5.0, (n, 3)) * scale
    b[:, 6] = rng.uniform(-2 * np.pi, 2 * np.pi, n)
    return a, b


def special_pairs(rng):
    rows_a, rows_b = [], []
    for _ in range(40):
        box = np.array([0, 0, 0, *rng.uniform(0.5, 4, 3), rng.uniform(-np.pi, np.pi)])
        h = box[6]
        rows_a += [box] * 5
        rows_b.append(box.copy())                                          # identical
        rows_b.append(box + [0, 0, 0, 0, 0, 0, np.pi])                     # rotated by pi
        touch = box.copy()                                                 # touching along heading
        touch[0:2] += box[3] * np.array([np.cos(h), np.sin(h)])
        rows_b.append(touch)
        inner = box.copy()                                                 # contained
        inner[3:5] *= rng.uniform(0.1, 0.6, 2)
        inner[0:2] += rng.uniform(-0.1, 0.1, 2) * box[3:5].min()
        rows_b.append(inner)
        flat = box.copy()                                                  # zero size
        flat[3] = 0.0
        rows_b.append(flat)
    return np.array(rows_a), np.array(rows_b)


def test_iou_bev_matches_shapely(rng):
    groups = [random_pairs(rng, 1600), random_pairs(rng, 200, scale=1e-3),   # normal, tiny,
              random_pairs(rng, 200, scale=1e3), special_pairs(rng)]           # huge, special
    spacing = [30.0, 0.03, 3e4, 30.0]
    got, want = [], []
    for (a, b), sp in zip(groups, spacing):
        g, a_far, b_far = pairwise_diag(boxes_iou_bev, a, b, sp)
        got.append(g)
        want.append(shapely_iou_pairs(a_far, b_far)[0])
    got, want = np.concatenate(got), np.concatenate(want)
    assert len(got) >= 2000
    assert np.isfinite(got).all()
    # GEOS itself mis-clips exactly touching rectangles at times (returns a full overlap), so
    # the touching pairs are checked against 0 by construction below, not against shapely.
    touching = np.zeros(len(got), bool)
    touching[len(got) - len(groups[-1][0]) + 2::5] = True
    assert np.abs(got - want)[~touching].max() <= 1e-5
    assert ((want > 0.01) & (want < 0.99)).sum() > 500      # the draw really tests partial overlaps
    sa, sb = groups[-1]
    # special cases by construction, in the order special_pairs builds them
    s = got[len(got) - len(sa):].reshape(-1, 5)
    np.testing.assert_allclose(s[:, 0], 1.0, atol=1e-9)      # identical
    np.testing.assert_allclose(s[:, 1], 1.0, atol=1e-9)      # rotated by pi
    np.testing.assert_allclose(s[:, 2], 0.0, atol=1e-7)      # touching
    ratio = (sb[3::5, 3] * sb[3::5, 4]) / (sa[3::5, 3] * sa[3::5, 4])
    np.testing.assert_allclose(s[:, 3], ratio, atol=1e-9)    # contained: area ratio
    assert (s[:, 4] == 0).all()                              # zero size: 0, not NaN


def test_overlap_and_iou3d(rng):
    a, b = random_pairs(rng, 300)
    b[:, 2] = rng.uniform(-3, 3, len(b))
    inter, a_far, b_far = pairwise_diag(boxes_overlap_bev, a, b)
    _, want_inter = shapely_iou_pairs(a_far, b_far)
    np.testing.assert_allclose(inter, want_inter, rtol=1e-9, atol=1e-9)
    iou3d, _, _ = pairwise_diag(boxes_iou3d, a, b)
    hov = np.clip(np.minimum(a[:, 2] + a[:, 5] / 2, b[:, 2] + b[:, 5] / 2)
                  - np.maximum(a[:, 2] - a[:, 5] / 2, b[:, 2] - b[:, 5] / 2), 0, None)
    vi = want_inter * hov
    want = vi / (np.prod(a[:, 3:6], 1) + np.prod(b[:, 3:6], 1) - vi)
    np.testing.assert_allclose(iou3d, want, atol=1e-6)


def test_types_devices_and_dtypes(rng):
    a, b = random_pairs(rng, 50)
    out_np = boxes_iou_bev(a.astype(np.float32), b.astype(np.float32))
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32 and out_np.shape == (50, 50)
    out_t = boxes_iou_bev(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_allclose(out_np, out_t.numpy(), atol=1e-5)
    extra = np.concatenate([a, np.ones((50, 2))], 1)          # extra columns (velocity) ignored
    np.testing.assert_allclose(boxes_iou_bev(extra, b), out_t.numpy(), atol=1e-12)


def test_empty_and_bad_inputs():
    e = np.zeros((0, 7))
    assert boxes_iou_bev(e, np.ones((3, 7))).shape == (0, 3)
    assert boxes_iou3d(np.ones((2, 7)), e).shape == (2, 0)
    assert nms(torch.zeros(0, 7), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError, match='boxes_a'):
        boxes_iou_bev(np.ones((3, 6)), np.ones((3, 7)))
    with pytest.raises(ValueError, match='boxes_b'):
        boxes_iou_bev(np.ones((3, 7)), np.ones((3, 7), dtype=np.int64))
    bad = np.ones((3, 7))
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match='boxes_a: box 1'):
        boxes_iou_bev(bad, np.ones((3, 7)))
    neg = np.ones((2, 7))
    neg[1, 3] = -1
    with pytest.raises(ValueError, match='boxes_b: box 1 has a negative size'):
        boxes_iou_bev(np.ones((3, 7)), neg)
    with pytest.raises(ValueError, match='scores'):
        nms(torch.ones(4, 7), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match='boxes'):
        nms([[0, 0, 0, 1, 1, 1, 0]], torch.ones(1), 0.5)
    with pytest.raises(ValueError, match='labels'):
        batched_nms(torch.ones(2, 7), torch.ones(2), torch.ones(2), 0.5)


def brute_nms(boxes, scores, thresh):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    corners = shapely.polygons(boxes_bev_corners(np.asarray(boxes, np.float64)[:, :7]))
    keep = []
    for i in order:
        ok = True
        for k in keep:
            inter = shapely.area(shapely.intersection(corners[i], corners[k]))
            union = shapely.area(corners[i]) + shapely.area(corners[k]) - inter
            if union > 0 and inter / union > thresh:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def clustered_boxes(rng, n, clusters=25):
    centres = rng.uniform(-30, 30, (clusters, 2))
    b = np.zeros((n, 7))
    b[:, 0:2] = centres[rng.integers(0, clusters, n)] + rng.normal(0, 0.8, (n, 2))
    b[:, 3:6] = rng.uniform([3, 1.5, 1.4], [4.5, 2.0, 1.7], (n, 3))
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    return b


@pytest.mark.parametrize('thresh', [0.1, 0.5, 0.8])
def test_nms_matches_brute_force(rng, thresh):
    b = clustered_boxes(rng, 300)
    s = rng.random(300)
    s[:10] = s[10]                                      # ties: lower index first
    keep = nms(torch.from_numpy(b), torch.from_numpy(s), thresh)
    assert keep.dtype == torch.long
    assert keep.tolist() == brute_nms(b, s, thresh)
    top = nms(b, s, thresh, pre_max_size=100, post_max_size=7)
    order = np.argsort(-s, kind='stable')[:100]
    assert top.tolist() == [int(order[i]) for i in brute_nms(b[order], s[order], thresh)][:7]


def test_batched_nms_is_per_class(rng):
    b = clustered_boxes(rng, 200, clusters=10)
    s = rng.random(200)
    labels = rng.integers(1, 4, 200)
    keep = batched_nms(b, s, labels, 0.3)
    want = []
    for c in (1, 2, 3):
        idx = np.nonzero(labels == c)[0]
        want += [int(idx[i]) for i in brute_nms(b[idx], s[idx], 0.3)]
    want.sort(key=lambda i: (-s[i], i))
    assert isinstance(keep, np.ndarray) and keep.tolist() == want
