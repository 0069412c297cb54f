"""ALPI losses: the 2D projection loss (depth invariance), size prior, corner loss, heading bins."""
import math

import numpy as np
import pytest
import torch

from pcdet_ext.alpi.losses import (box_projection_loss, corner_loss, decode_heading, decode_heading_logits,
                                   decode_size, encode_heading, encode_size, heading_bin_loss,
                                   projected_boxes_2d, projection_loss_2d, size_prior_loss)
from pcdet_ext.geometry import Calibration, boxes3d_kitti_camera_to_lidar, boxes3d_lidar_to_imageboxes

# KITTI calibration of frame 000000, inline so these tests need no data files.
CALIB = Calibration({
    'P2': [707.0493, 0, 604.0814, 45.75831, 0, 707.0493, 180.5066, -0.3454157, 0, 0, 1, 0.004981016],
    'R0_rect': [0.9999128, 0.01009263, -0.008511932, -0.01012729, 0.9999406, -0.004037671,
                0.008470675, 0.004123522, 0.9999556],
    'Tr_velo_to_cam': [0.006927964, -0.9999722, -0.002757829, -0.02457729, -0.001162982, 0.002749836,
                       -0.9999955, -0.06127237, 0.9999753, 0.006931141, -0.001143899, -0.3321029]})
L2R = torch.tensor(CALIB.lidar_to_rect_mat)
P2 = torch.tensor(CALIB.P2)


def _car_at(depth, lateral=0.0, ry=0.4, size=(3.9, 1.6, 1.55)):
    """LiDAR box of a car whose bottom centre is at camera (lateral, 1.65, depth)."""
    l, w, h = size
    return boxes3d_kitti_camera_to_lidar(np.array([[lateral, 1.65, depth, l, h, w, ry]]), CALIB)


def test_zero_when_projection_equals_label_box():
    boxes = np.concatenate([_car_at(12.0, -3.0), _car_at(30.0, 4.0, ry=-1.2),
                            _car_at(7.0, 1.0, ry=2.5, size=(0.8, 0.6, 1.75))])
    pred = projected_boxes_2d(torch.tensor(boxes), L2R, P2)
    # geometry's numpy path builds the corners upright in the camera frame, the torch path
    # upright in the LiDAR frame (~0.5 deg apart): the same boxes to about a pixel
    np.testing.assert_allclose(pred.numpy(), boxes3d_lidar_to_imageboxes(boxes, CALIB), atol=1.5)
    target = pred.numpy().copy()
    for mode in ('depth_invariant', 'pixel'):
        loss = box_projection_loss(torch.tensor(boxes), L2R, P2, torch.tensor(target), mode=mode)
        assert float(loss) < 1e-10
        moved = torch.tensor(boxes)
        moved[:, 1] += 0.3
        assert float(box_projection_loss(moved, L2R, P2, torch.tensor(target), mode=mode)) > 1e-4


def test_fixed_relative_2d_error_costs_the_same_at_10_and_40_m():
    t10 = projected_boxes_2d(torch.tensor(_car_at(10.0, 1.0)), L2R, P2)
    t40 = projected_boxes_2d(torch.tensor(_car_at(40.0, 4.0)), L2R, P2)
    assert float(t10[0, 2] - t10[0, 0]) > 3.5 * float(t40[0, 2] - t40[0, 0])  # 4x smaller far away
    rel = torch.tensor([[0.08, -0.05, 0.12, 0.03]])
    losses = {}
    for name, t in (('10', t10), ('40', t40)):
        w, h = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
        pred = t + rel * torch.stack([w, h, w, h], dim=1)
        losses[name] = (float(projection_loss_2d(pred, t, 'depth_invariant')),
                        float(projection_loss_2d(pred, t, 'pixel')))
    assert losses['10'][0] == pytest.approx(losses['40'][0], rel=1e-9)
    assert losses['10'][1] > 3 * losses['40'][1]  # the pixel loss favours near objects


def test_same_3d_error_relative_to_depth_through_the_projection():
    """The same car 5 % too far along its viewing ray and 0.3 m off sideways is the same
    relative 2D error at 10 m and 40 m: nearly the same depth-invariant loss (perspective
    makes it inexact), while the pixel loss is several times larger near."""
    out = {}
    for d in (10.0, 40.0):
        gt = torch.tensor(_car_at(d, 0.1 * d))
        pred = torch.tensor(_car_at(1.05 * d, 1.05 * 0.1 * d + 0.3))
        target = projected_boxes_2d(gt, L2R, P2)
        out[d] = [float(box_projection_loss(pred, L2R, P2, target, mode=m))
                  for m in ('depth_invariant', 'pixel')]
    assert out[10.0][0] == pytest.approx(out[40.0][0], rel=0.1)
    assert out[10.0][1] > 3 * out[40.0][1]


def test_scaling_the_scene_about_the_camera_changes_nothing():
    """Box position and size scaled by s about the camera centre: same 2D boxes, same losses."""
    centre_rect = -np.linalg.solve(CALIB.P2[:, :3], CALIB.P2[:, 3])  # P2 @ [C, 1] = 0
    c = CALIB.rect_to_lidar(centre_rect[None])[0]
    gt = _car_at(10.0, 2.0)
    pred = _car_at(10.6, 2.3, ry=0.6, size=(4.2, 1.7, 1.5))

    def scaled(b, s):
        b = b.copy()
        b[:, 0:3] = c + s * (b[:, 0:3] - c)
        b[:, 3:6] *= s
        return torch.tensor(b)
    ref_t = projected_boxes_2d(torch.tensor(gt), L2R, P2)
    for s in (2.0, 4.0):
        t = projected_boxes_2d(scaled(gt, s), L2R, P2)
        np.testing.assert_allclose(t.numpy(), ref_t.numpy(), atol=1e-6)
        for m in ('depth_invariant', 'pixel'):
            assert float(box_projection_loss(scaled(pred, s), L2R, P2, t, mode=m)) == pytest.approx(
                float(box_projection_loss(torch.tensor(pred), L2R, P2, ref_t, mode=m)), rel=1e-6)


def test_2d_loss_gradients_finite_and_useful():
    gt = torch.tensor(np.concatenate([_car_at(15.0, 2.0), _car_at(25.0, -5.0)]))
    target = projected_boxes_2d(gt, L2R, P2)
    # per-box matrices, one box straddling the image plane (corners behind the camera)
    boxes = gt.clone()
    boxes[:, 0] += 1.5
    boxes = torch.cat([boxes, torch.tensor([[0.2, 0.0, -0.5, 4.0, 1.6, 1.5, 0.3]], dtype=gt.dtype)])
    tgt = torch.cat([target, target[:1]])
    l2r, p2 = L2R.expand(3, 4, 4), P2.expand(3, 3, 4)
    boxes.requires_grad_(True)
    for mode in ('depth_invariant', 'pixel'):
        loss = box_projection_loss(boxes, l2r, p2, tgt, mode=mode)
        grad, = torch.autograd.grad(loss, boxes)
        assert torch.isfinite(loss) and torch.isfinite(grad).all() and grad[:2].abs().sum() > 0
    # gradient descent on the box centres moves the projections onto the labels
    centre = (gt[:, :3] + torch.tensor([1.0, 0.4, 0.2], dtype=gt.dtype)).requires_grad_(True)
    opt = torch.optim.SGD([centre], lr=0.3)
    first = None
    for _ in range(30):
        loss = box_projection_loss(torch.cat([centre, gt[:, 3:]], 1), L2R, P2, target)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_projection_loss_errors():
    a = torch.zeros(2, 4)
    with pytest.raises(ValueError, match='mode must be one of'):
        projection_loss_2d(a, a, mode='iou')
    with pytest.raises(ValueError, match=r'must both be \(N, 4\)'):
        projection_loss_2d(a, torch.zeros(3, 4))


def test_size_prior_loss():
    mean = torch.tensor([[3.9, 1.6, 1.5], [0.8, 0.6, 1.7]])
    std = torch.tensor([[0.4, 0.1, 0.1], [0.2, 0.1, 0.1]])
    # batch mean = prior mean and batch (population) std = prior std: zero loss
    sizes = torch.cat([mean[0] - std[0], mean[0] + std[0], mean[1] - std[1], mean[1] + std[1]])
    sizes = sizes.view(4, 3)
    cls = torch.tensor([0, 0, 1, 1])
    assert float(size_prior_loss(sizes, cls, mean, std)) == pytest.approx(0, abs=1e-6)
    # cars predicted 20 % too long: positive, and the gradient shortens them
    big = sizes.clone()
    big[:2, 0] *= 1.2
    big.requires_grad_(True)
    loss = size_prior_loss(big, cls, mean, std)
    loss.backward()
    assert loss.item() > 0.5 and (big.grad[:2, 0] > 0).all() and big.grad[2:].abs().max() < 1e-6
    # a class with a single box in the batch is left alone (no batch statistics)
    single = size_prior_loss(sizes[:3].clone().requires_grad_(True), cls[:3], mean, std)
    assert single.item() == pytest.approx(0, abs=1e-6)
    assert float(size_prior_loss(sizes[:1], cls[:1], mean, std)) == 0.0
    nll = size_prior_loss(sizes, cls, mean, std, mode='nll')
    assert float(nll) == pytest.approx(1.5)  # each box is 1 std off on all 3 dims: 0.5 * 3
    with pytest.raises(ValueError, match=r'pred_sizes must be \(N, 3\)'):
        size_prior_loss(sizes[:, :2], cls, mean, std)


def test_corner_loss():
    gt = torch.tensor([[10.0, 2.0, -1.0, 3.9, 1.6, 1.5, 0.3], [5.0, -2.0, -0.8, 0.8, 0.6, 1.7, -2.0]])
    assert corner_loss(gt, gt).abs().max() < 1e-6
    flipped = gt.clone()
    flipped[:, 6] += math.pi
    assert corner_loss(flipped, gt).abs().max() < 1e-5
    shifted = gt.clone()
    shifted[:, 0] += 0.5
    np.testing.assert_allclose(corner_loss(shifted, gt).numpy(), [0.125, 0.125], atol=1e-6)
    shifted.requires_grad_(True)
    corner_loss(shifted, gt, reduction='mean').backward()
    assert torch.isfinite(shifted.grad).all() and shifted.grad[:, 0].min() > 0


def test_heading_bins_round_trip():
    angles = torch.cat([torch.linspace(-10, 10, 2001, dtype=torch.float64),
                        torch.tensor([-math.pi, math.pi, 0.0, math.pi / 12, -math.pi / 12],
                                     dtype=torch.float64)])
    for nb in (12, 4, 1):
        width = 2 * math.pi / nb
        for normalize in (False, True):
            bins, res = encode_heading(angles, nb, normalize=normalize)
            assert bins.min() >= 0 and bins.max() < nb
            bound = 1.0 if normalize else width / 2
            assert (res >= -bound - 1e-9).all() and (res < bound + 1e-9).all()
            dec = decode_heading(bins, res, nb, normalize=normalize)
            diff = torch.remainder(dec - angles + math.pi, 2 * math.pi) - math.pi
            assert diff.abs().max() < 1e-9 and (dec >= -math.pi).all() and (dec < math.pi).all()
    bins, _ = encode_heading(torch.tensor([0.0, 2 * math.pi / 12, -2 * math.pi / 12]), 12)
    assert bins.tolist() == [0, 1, 11]


def test_heading_bin_loss_and_decode_from_logits():
    target = torch.tensor([0.3, -2.0, 3.0])
    bins, res = encode_heading(target, 12, normalize=True)
    logits = torch.full((3, 12), -20.0)
    logits[torch.arange(3), bins] = 20.0
    residuals = torch.zeros(3, 12)
    residuals[torch.arange(3), bins] = res
    cls_loss, res_loss = heading_bin_loss(logits, residuals, target)
    assert cls_loss.max() < 1e-6 and res_loss.max() < 1e-6
    torch.testing.assert_close(decode_heading_logits(logits, residuals), target)
    logits.requires_grad_(True)
    wrong, _ = heading_bin_loss(logits, residuals, target + 1.0)
    wrong.sum().backward()
    assert wrong.min().item() > 1 and torch.isfinite(logits.grad).all()


def test_size_residual_round_trip():
    mean = torch.tensor([[3.9, 1.6, 1.5]])
    sizes = torch.tensor([[4.2, 1.5, 1.6], [3.0, 1.9, 1.4]])
    torch.testing.assert_close(decode_size(encode_size(sizes, mean), mean), sizes)
    assert float(decode_size(torch.full((1, 3), -2.0), mean).min()) == pytest.approx(0.05)
