"""Unit tests of the detector parts: box coder, anchors, target assigner, losses, post-processing."""
import math

import numpy as np
import pytest
import torch

from pcdet_ext.config import ConfigDict
from pcdet_ext.runtime.batch import load_data_to_gpu
from pcdet_ext.models import post_processing as pp
from pcdet_ext.models.box_coders import ResidualCoder, build_box_coder
from pcdet_ext.models.dense_heads.target_assigner import AnchorGenerator, AxisAlignedTargetAssigner
from pcdet_ext.models.losses import (SigmoidFocalClassificationLoss, WeightedCrossEntropyLoss,
                                     WeightedSmoothL1Loss)


def _random_boxes(n, gen):
    xyz = torch.rand(n, 3, generator=gen) * 40 - 20
    size = torch.rand(n, 3, generator=gen) * 4 + 0.3
    heading = torch.rand(n, 1, generator=gen) * 2 * math.pi - math.pi
    return torch.cat([xyz, size, heading], dim=1).double()


@pytest.mark.parametrize('sincos', [False, True])
def test_residual_coder_round_trip(sincos):
    gen = torch.Generator().manual_seed(0)
    boxes, anchors = _random_boxes(50, gen), _random_boxes(50, gen)
    coder = ResidualCoder(encode_angle_by_sincos=sincos)
    assert coder.code_size == (8 if sincos else 7)
    enc = coder.encode_torch(boxes, anchors)
    assert enc.shape == (50, coder.code_size)
    dec = coder.decode_torch(enc, anchors)
    torch.testing.assert_close(dec[:, :6], boxes[:, :6])
    # sincos decoding returns the angle wrapped to (-pi, pi]; compare on the circle.
    torch.testing.assert_close(torch.sin(dec[:, 6]), torch.sin(boxes[:, 6]))
    torch.testing.assert_close(torch.cos(dec[:, 6]), torch.cos(boxes[:, 6]))


def test_residual_coder_known_values():
    anchor = torch.tensor([[0.0, 0.0, 0.0, 3.0, 4.0, 2.0, 0.5]])
    box = torch.tensor([[5.0, -10.0, 1.0, 6.0, 4.0, 1.0, 0.75]])
    enc = ResidualCoder().encode_torch(box, anchor)[0]
    expected = [1.0, -2.0, 0.5, math.log(2.0), 0.0, math.log(0.5), 0.25]  # diagonal of 3x4 is 5
    torch.testing.assert_close(enc, torch.tensor(expected))


def test_residual_coder_decodes_runaway_sizes_to_finite_boxes():
    """A drifting head's size residuals near 90 (seen in CPSP training) overflow exp() in float32;
    decoding caps the size ratio so NMS never sees inf, and leaves normal residuals untouched."""
    anchor = torch.tensor([[18.7, 10.2, -0.9, 0.8, 0.6, 1.73, 0.0]] * 2)
    enc = torch.tensor([[-93.1, -28.2, -48.7, 90.4, 92.7, -38.2, 37.0],
                        [0.1, 0.2, 0.1, math.log(2.0), 0.0, -0.5, 0.3]])
    dec = ResidualCoder().decode_torch(enc, anchor)
    assert torch.isfinite(dec).all()
    torch.testing.assert_close(dec[0, 3:5], anchor[0, 3:5] * 1000.0 / 16.0)
    torch.testing.assert_close(dec[1, 3:6], anchor[1, 3:6] * torch.tensor([2.0, 1.0, math.exp(-0.5)]))


def test_unknown_box_coder_is_a_clear_error():
    with pytest.raises(KeyError, match='BOX_CODER'):
        build_box_coder('NoSuchCoder')


def _anchor_cfg(name, size, bottom, align_center=True, stride=1, matched=0.6, unmatched=0.45):
    return {'class_name': name, 'anchor_sizes': [size], 'anchor_rotations': [0, math.pi / 2],
            'anchor_bottom_heights': [bottom], 'align_center': align_center, 'feature_map_stride': stride,
            'matched_threshold': matched, 'unmatched_threshold': unmatched}


def test_anchor_generator_counts_and_centres():
    cfgs = [_anchor_cfg('Car', [3.9, 1.6, 1.56], -1.78, align_center=True),
            _anchor_cfg('Pedestrian', [0.8, 0.6, 1.73], -0.6, align_center=False)]
    gen = AnchorGenerator([0, -40, -3, 70.4, 40, 1], cfgs)
    anchors, per_loc = gen.generate_anchors([np.array([176, 200]), np.array([176, 200])])
    assert per_loc == [2, 2]
    car, ped = anchors
    assert car.shape == (1, 200, 176, 1, 2, 7)
    # align_center: cell centres, 0.4 m cells
    torch.testing.assert_close(car[0, 0, 0, 0, 0, :2], torch.tensor([0.2, -39.8]))
    torch.testing.assert_close(car[0, 199, 175, 0, 1, :2], torch.tensor([70.2, 39.8]))
    # z is the box centre: bottom height + dz / 2
    assert car[..., 2].unique().tolist() == pytest.approx([-1.78 + 0.78])
    assert car[0, 5, 7, 0, 1, 6].item() == pytest.approx(math.pi / 2)
    assert car[0, 5, 7, 0, 0, 3:6].tolist() == pytest.approx([3.9, 1.6, 1.56])
    # not aligned: edge to edge
    torch.testing.assert_close(ped[0, 0, 0, 0, 0, :2], torch.tensor([0.0, -40.0]))
    torch.testing.assert_close(ped[0, 199, 175, 0, 0, :2], torch.tensor([70.4, 40.0]))
    assert ped[0, 0, 1, 0, 0, 0].item() == pytest.approx(70.4 / 175)


def test_anchor_generator_rejects_bad_sizes():
    with pytest.raises(ValueError, match='anchor_sizes'):
        AnchorGenerator([0, 0, 0, 1, 1, 1], [_anchor_cfg('Car', [3.9, 1.6], -1.0)])


def _assigner_cfg():
    return ConfigDict({
        'ANCHOR_GENERATOR_CONFIG': [_anchor_cfg('Car', [4.0, 2.0, 1.5], -1.5),
                                    _anchor_cfg('Pedestrian', [0.8, 0.6, 1.7], -1.5, matched=0.5, unmatched=0.35)],
        'TARGET_ASSIGNER_CONFIG': {'NAME': 'AxisAlignedTargetAssigner', 'POS_FRACTION': -1.0, 'SAMPLE_SIZE': 512,
                                   'NORM_BY_NUM_EXAMPLES': False, 'MATCH_HEIGHT': False,
                                   'BOX_CODER': 'ResidualCoder'}})


def test_target_assigner_hand_made_case():
    cfg = _assigner_cfg()
    coder = ResidualCoder()
    # 2 x 2 BEV locations with centres (2, 2), (6, 2), (2, 6), (6, 6); 2 classes x 2 rotations each.
    anchors, _ = AnchorGenerator([0, 0, -3, 8, 8, 1], cfg.ANCHOR_GENERATOR_CONFIG).generate_anchors(
        [np.array([2, 2]), np.array([2, 2])])
    assigner = AxisAlignedTargetAssigner(cfg, ['Car', 'Pedestrian', 'Cyclist'], coder)
    car = [2.0, 2.0, -0.75, 4.0, 2.0, 1.5, 0.0, 1]     # exactly the Car anchor at (2, 2), heading 0
    ped = [6.1, 6.0, -0.65, 0.8, 0.6, 1.7, 0.0, 2]     # near the Pedestrian anchors at (6, 6)
    gt = torch.tensor([[car, ped, [0] * 8]])             # last row: zero padding
    t = assigner.assign_targets(anchors, gt)
    labels = t['box_cls_labels'][0]
    assert labels.shape == (16,)

    def idx(x, y, cls, rot):  # locations row-major (y, x), then class, then rotation
        return ((y * 2 + x) * 2 + cls) * 2 + rot

    expected = torch.zeros(16, dtype=torch.int32)
    expected[idx(0, 0, 0, 0)] = 1  # IoU 1
    # the rotated Car anchor at (2, 2): nearest-BEV IoU 4 / 12 = 0.33 < 0.45 -> background
    expected[idx(1, 1, 1, 0)] = 2  # IoU 0.42 / 0.54 = 0.78 >= 0.5
    expected[idx(1, 1, 1, 1)] = 2  # IoU 0.36 / 0.60 = 0.60 >= 0.5
    assert labels.tolist() == expected.tolist()
    assert t['reg_weights'][0].tolist() == (expected > 0).float().tolist()
    flat = torch.cat(anchors, dim=-3).view(-1, 7)
    pos = expected > 0
    decoded = coder.decode_torch(t['box_reg_targets'][0][pos], flat[pos])
    torch.testing.assert_close(decoded, torch.tensor([car[:7], ped[:7], ped[:7]]))
    torch.testing.assert_close(t['box_reg_targets'][0][~pos], torch.zeros(13, 7))


def test_target_assigner_ignores_between_thresholds_and_forces_best_match():
    cfg = _assigner_cfg()
    # 4 x 4 locations, centres at 1, 3, 5, 7 m in x and y.
    anchors, _ = AnchorGenerator([0, 0, -3, 8, 8, 1], cfg.ANCHOR_GENERATOR_CONFIG).generate_anchors(
        [np.array([4, 4]), np.array([4, 4])])
    assigner = AxisAlignedTargetAssigner(cfg, ['Car', 'Pedestrian'], ResidualCoder())

    def idx(x, y, cls, rot):
        return ((y * 4 + x) * 2 + cls) * 2 + rot

    gt = torch.tensor([[[3.5, 3.0, -0.75, 4.0, 2.0, 1.5, 0.0, 1],
                        [7.0, 9.5, -0.75, 4.0, 2.0, 1.5, math.pi / 2, 1]]])
    labels = assigner.assign_targets(anchors, gt)['box_cls_labels'][0]
    assert labels[idx(1, 1, 0, 0)].item() == 1   # IoU 7 / 9 = 0.78 >= 0.6
    assert labels[idx(2, 1, 0, 0)].item() == -1  # IoU 5 / 11 = 0.45: between thresholds -> ignored
    assert labels[idx(0, 1, 0, 0)].item() == 0   # IoU 3 / 13 = 0.23 -> background
    # Second car overlaps no anchor above 0.45 (best 3 / 13) but still claims its best anchor.
    assert labels[idx(3, 3, 0, 1)].item() == 1
    assert int((labels > 0).sum()) == 2
    # No gt at all: everything is background.
    empty = assigner.assign_targets(anchors, torch.zeros(1, 3, 8))
    assert (empty['box_cls_labels'] == 0).all() and (empty['reg_weights'] == 0).all()


def test_target_assigner_rejects_unknown_anchor_class():
    with pytest.raises(ValueError, match='Pedestrian'):
        AxisAlignedTargetAssigner(_assigner_cfg(), ['Car'], ResidualCoder())


def test_focal_loss_matches_hand_computation():
    loss_fn = SigmoidFocalClassificationLoss(gamma=2.0, alpha=0.25)
    logits = torch.tensor([[[0.5, -1.0]]])
    target = torch.tensor([[[1.0, 0.0]]])
    weights = torch.tensor([[2.0]])
    out = loss_fn(logits, target, weights)
    p0, p1 = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.0))
    expected = [2 * 0.25 * (1 - p0) ** 2 * -math.log(p0), 2 * 0.75 * p1 ** 2 * -math.log(1 - p1)]
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-5)
    # Large logits stay finite (stable formulation).
    big = loss_fn(torch.tensor([[[80.0, -80.0]]]), torch.tensor([[[0.0, 1.0]]]), torch.ones(1, 1))
    assert torch.isfinite(big).all() and big.flatten()[0].item() == pytest.approx(0.75 * 80, rel=1e-4)


def test_smooth_l1_and_direction_losses():
    loss_fn = WeightedSmoothL1Loss(beta=1.0 / 9.0, code_weights=[1.0, 2.0])
    inp = torch.tensor([[[0.05, 1.0]]])
    tgt = torch.tensor([[[0.0, float('nan')]]])  # NaN targets are ignored
    out = loss_fn(inp, tgt, weights=torch.tensor([[3.0]]))
    assert out.flatten().tolist() == pytest.approx([3 * 0.5 * 0.05 ** 2 * 9, 0.0])
    out = loss_fn(torch.tensor([[[1.0, 1.0]]]), torch.zeros(1, 1, 2))
    assert out.flatten().tolist() == pytest.approx([1 - 0.5 / 9, 2 - 0.5 / 9])
    with pytest.raises(ValueError, match='code_weights'):
        loss_fn(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))
    ce = WeightedCrossEntropyLoss()
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    onehot = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = ce(logits, onehot, torch.tensor([[1.0, 0.5]]))
    assert out.flatten().tolist() == pytest.approx([math.log(1 + math.exp(-2)), 0.5 * math.log(2)], rel=1e-5)


def _nms_cfg(multi=False, thresh=0.01, pre=4096, post=500, nms_type='nms_gpu'):
    return ConfigDict({'MULTI_CLASSES_NMS': multi, 'NMS_TYPE': nms_type, 'NMS_THRESH': thresh,
                       'NMS_PRE_MAXSIZE': pre, 'NMS_POST_MAXSIZE': post})


BOXES = torch.tensor([[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],    # 0
                      [10.3, 0.1, 0.0, 4.0, 2.0, 1.5, 0.1],    # 1 overlaps 0
                      [30.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.0],    # 2 alone
                      [30.0, -9.0, 0.0, 4.0, 2.0, 1.5, 0.0]])  # 3 alone, low score


def test_class_agnostic_nms_threshold_and_order():
    scores = torch.tensor([0.8, 0.9, 0.5, 0.05])
    sel, sc = pp.class_agnostic_nms(scores, BOXES, _nms_cfg(), score_thresh=0.1)
    assert sel.tolist() == [1, 2]          # 0 suppressed by the higher-scoring 1; 3 under the threshold
    assert sc.tolist() == pytest.approx([0.9, 0.5])
    sel, _ = pp.class_agnostic_nms(scores, BOXES, _nms_cfg(post=1), score_thresh=0.1)
    assert sel.tolist() == [1]
    sel, _ = pp.class_agnostic_nms(scores, BOXES, _nms_cfg(pre=1), score_thresh=None)
    assert sel.tolist() == [1]
    sel, _ = pp.class_agnostic_nms(torch.zeros(4), BOXES, _nms_cfg(), score_thresh=0.1)
    assert sel.numel() == 0
    with pytest.raises(KeyError, match='NMS_TYPE'):
        pp.class_agnostic_nms(scores, BOXES, _nms_cfg(nms_type='bogus'), score_thresh=0.1)


def test_multi_class_nms_keeps_overlaps_of_different_classes():
    cls_scores = torch.tensor([[0.8, 0.0], [0.0, 0.9], [0.6, 0.0], [0.7, 0.05]])
    scores, labels, boxes, idx = pp.multi_classes_nms(cls_scores, BOXES, _nms_cfg(multi=True), score_thresh=0.1)
    assert idx.tolist() == [0, 3, 2, 1]
    assert labels.tolist() == [0, 0, 0, 1]
    assert scores.tolist() == pytest.approx([0.8, 0.7, 0.6, 0.9])
    torch.testing.assert_close(boxes, BOXES[[0, 3, 2, 1]])


def test_load_data_to_device_converts_arrays():
    batch = {'voxels': np.zeros((2, 5, 4), np.float32), 'voxel_coords': np.zeros((2, 4), np.int32),
             'frame_id': np.array(['000001']), 'image_shape': np.array([[375, 1242]]), 'batch_size': 1,
             'gt_names': np.array(['Car'], dtype=object)}
    load_data_to_gpu(batch, device='cpu')
    assert batch['voxels'].dtype == torch.float32 and batch['voxel_coords'].dtype == torch.float32
    assert batch['image_shape'].dtype == torch.int32
    assert isinstance(batch['frame_id'], np.ndarray) and isinstance(batch['gt_names'], np.ndarray)
