"""Compiled kernels vs the pure-PyTorch reference on the same random inputs, and dispatch."""
import logging

import numpy as np
import pytest
import torch

from pcdet_ext.ops import _backend, hard_voxelize, iou3d_nms, points_in_boxes, points_in_boxes_mask
from pcdet_ext.ops.iou3d_nms import batched_nms, boxes_iou3d, boxes_iou_bev, boxes_overlap_bev, nms

SEED = np.random.SeedSequence().entropy % (2 ** 32)
CPU_BUILT = _backend.available()['cpu']
needs_cpu_ext = pytest.mark.skipif(
    not CPU_BUILT, reason='compiled CPU ops not built (run `pip install -e . --no-build-isolation`)')


@pytest.fixture
def rng():
    print(f'random seed {SEED}')
    return np.random.default_rng(SEED)


def both(monkeypatch, fn, *args, **kw):
    """(compiled result, reference result) of the same call."""
    monkeypatch.delenv('PCDET_EXT_OPS', raising=False)
    fast = fn(*args, **kw)
    monkeypatch.setenv('PCDET_EXT_OPS', 'reference')
    ref = fn(*args, **kw)
    monkeypatch.delenv('PCDET_EXT_OPS')
    return fast, ref


def scene_boxes(rng, n, extent=20.0):
    b = np.zeros((n, 7))
    b[:, 0:2] = rng.uniform(-extent, extent, (n, 2))
    b[:, 2] = rng.uniform(-1, 1, n)
    b[:, 3:6] = rng.uniform([0.3, 0.3, 0.5], [5, 3, 2.5], (n, 3))
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    return torch.from_numpy(b)


@needs_cpu_ext
def test_iou_and_overlap_match_reference(rng, monkeypatch):
    a, b = scene_boxes(rng, 300), scene_boxes(rng, 300)
    b[:50] = a[:50]                     # identical pairs
    b[50:60, 3] = 0                     # zero size
    for fn in (boxes_iou_bev, boxes_overlap_bev, boxes_iou3d):
        fast, ref = both(monkeypatch, fn, a, b)
        assert fast.shape == ref.shape == (300, 300)
        assert (ref > 0).sum() > 100
        torch.testing.assert_close(fast, ref, atol=1e-9, rtol=1e-9)
    fast, ref = both(monkeypatch, boxes_iou_bev, a.float(), b.float())
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=0)


@needs_cpu_ext
@pytest.mark.parametrize('thresh', [0.01, 0.3, 0.7])
def test_nms_matches_reference(rng, monkeypatch, thresh):
    boxes = scene_boxes(rng, 1200, extent=20)
    boxes[600:] = boxes[:600] + torch.from_numpy(rng.normal(0, 0.05, (600, 7)))   # near-duplicates
    scores = torch.from_numpy(rng.random(1200))
    fast, ref = both(monkeypatch, nms, boxes, scores, thresh)
    assert 10 < len(ref) < 1200
    assert fast.tolist() == ref.tolist()
    labels = torch.from_numpy(rng.integers(0, 3, 1200))
    fast, ref = both(monkeypatch, batched_nms, boxes, scores, labels, thresh, pre_max_size=1000, post_max_size=300)
    assert fast.tolist() == ref.tolist()


@needs_cpu_ext
def test_points_in_boxes_bit_identical(rng, monkeypatch):
    boxes = scene_boxes(rng, 60, extent=10)
    pts = torch.from_numpy(rng.uniform(-12, 12, (40000, 4)))
    pts[:, 2] = torch.from_numpy(rng.uniform(-2, 2, 40000))
    # points exactly on faces of axis-aligned boxes, where rounding would show
    boxes[:10, 6] = 0
    face = boxes[:10, :3].clone()
    face[:, 0] += boxes[:10, 3] / 2
    pts[:10, :3] = face
    fast, ref = both(monkeypatch, points_in_boxes, pts, boxes)
    assert (ref >= 0).sum() > 1000
    assert torch.equal(fast, ref)
    fast, ref = both(monkeypatch, points_in_boxes_mask, pts.float(), boxes.float())
    assert torch.equal(fast, ref)


@needs_cpu_ext
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_hard_voxelize_identical(rng, monkeypatch, dtype):
    pts = rng.uniform(-1, 11, (20000, 5)).astype(dtype)
    pts[:2000, :3] = np.round(pts[:2000, :3] * 5) / 5        # on voxel borders
    for max_points, max_voxels in ((4, 100000), (2, 500)):
        fast, ref = both(monkeypatch, hard_voxelize, pts, [0.2, 0.2, 0.4], [0, 0, 0, 10, 10, 10],
                         max_points, max_voxels)
        for f, r in zip(fast, ref):
            assert f.dtype == r.dtype and f.shape == r.shape
            np.testing.assert_array_equal(f, r)


@needs_cpu_ext
def test_compiled_kernels_reject_bad_tensors():
    """Called directly (bypassing the Python checks) the kernels raise, never crash."""
    from pcdet_ext.ops import _C_cpu
    with pytest.raises(RuntimeError, match='float64'):
        _C_cpu.overlap_bev(torch.zeros(3, 7), torch.zeros(3, 7, dtype=torch.float64), False)
    with pytest.raises(RuntimeError, match='shape'):
        _C_cpu.nms(torch.zeros(3, 5, dtype=torch.float64), 0.5)
    with pytest.raises(RuntimeError, match='contiguous'):
        _C_cpu.points_in_boxes(torch.zeros(3, 6, dtype=torch.float64)[:, ::2], torch.zeros(2, 8, dtype=torch.float64))


def test_env_forces_reference_and_choice_is_logged_once(monkeypatch, caplog):
    monkeypatch.setenv('PCDET_EXT_OPS', 'reference')
    monkeypatch.setattr(_backend, '_reported', set())
    assert _backend.compiled_module(torch.device('cpu')) is None
    with caplog.at_level(logging.INFO, logger='pcdet_ext.ops'):
        boxes_iou_bev(torch.ones(2, 7), torch.ones(2, 7))
        boxes_iou_bev(torch.ones(2, 7), torch.ones(2, 7))
    msgs = [r.getMessage() for r in caplog.records if 'boxes_iou_bev' in r.getMessage()]
    assert len(msgs) == 1 and 'reference' in msgs[0]
    monkeypatch.delenv('PCDET_EXT_OPS')
    assert (_backend.compiled_module(torch.device('cpu')) is not None) == CPU_BUILT


def test_reference_nms_memory_is_chunked(monkeypatch):
    """20k-box NMS must not build a dense 20k x 20k float matrix: shrink the chunks and check
    the result is unchanged (the chunked path is the one that runs)."""
    rng = np.random.default_rng(0)
    boxes = scene_boxes(rng, 500, extent=15)
    scores = torch.from_numpy(rng.random(500))
    monkeypatch.setenv('PCDET_EXT_OPS', 'reference')
    whole = nms(boxes, scores, 0.2)
    monkeypatch.setattr(iou3d_nms, '_MASK_CHUNK', 5000)
    monkeypatch.setattr(iou3d_nms, '_PAIR_CHUNK', 777)
    assert nms(boxes, scores, 0.2).tolist() == whole.tolist()


CUDA_READY = torch.cuda.is_available() and _backend.available()['cuda']


@pytest.mark.skipif(not CUDA_READY, reason='needs a CUDA GPU and the _C_cuda extension (built by setup.py '
                                           'only with a CUDA build of torch)')
def test_cuda_kernels_match_cpu_reference(rng, monkeypatch):
    a, b = scene_boxes(rng, 300), scene_boxes(rng, 200)
    monkeypatch.setenv('PCDET_EXT_OPS', 'reference')
    ref_iou = boxes_iou_bev(a, b)
    scores = torch.from_numpy(rng.random(300))
    ref_keep = nms(a, scores, 0.2)
    pts = torch.from_numpy(rng.uniform(-20, 20, (20000, 3)))
    ref_pib = points_in_boxes(pts, b)
    monkeypatch.delenv('PCDET_EXT_OPS')
    dev = torch.device('cuda')
    torch.testing.assert_close(boxes_iou_bev(a.to(dev), b.to(dev)).cpu(), ref_iou, atol=1e-9, rtol=1e-9)
    assert nms(a.to(dev), scores.to(dev), 0.2).cpu().tolist() == ref_keep.tolist()
    assert torch.equal(points_in_boxes(pts.to(dev), b.to(dev)).cpu(), ref_pib)
    assert torch.equal(points_in_boxes_mask(pts.to(dev), b.to(dev)).cpu(),
                       points_in_boxes_mask(pts, b))
