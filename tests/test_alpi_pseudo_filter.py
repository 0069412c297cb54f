"""ALPI pseudo-label filter: score, 2D re-projection IoU with the label box, depth range."""
import numpy as np
import pytest

from pcdet_ext.alpi.pseudo_label_filter import PseudoLabelFilter, paired_iou_2d
from pcdet_ext.geometry import Calibration, boxes3d_kitti_camera_to_lidar, boxes3d_lidar_to_imageboxes

CALIB = Calibration({
    'P2': [707.0493, 0, 604.0814, 45.75831, 0, 707.0493, 180.5066, -0.3454157, 0, 0, 1, 0.004981016],
    'R0_rect': [0.9999128, 0.01009263, -0.008511932, -0.01012729, 0.9999406, -0.004037671,
                0.008470675, 0.004123522, 0.9999556],
    'Tr_velo_to_cam': [0.006927964, -0.9999722, -0.002757829, -0.02457729, -0.001162982, 0.002749836,
                       -0.9999955, -0.06127237, 0.9999753, 0.006931141, -0.001143899, -0.3321029]})
SHAPE = (375, 1242)


def _cars(*placements):
    """LiDAR boxes of cars with bottom centres at camera (x, 1.65, z)."""
    cam = np.array([[x, 1.65, z, 3.9, 1.55, 1.6, 0.4] for x, z in placements])
    return boxes3d_kitti_camera_to_lidar(cam, CALIB)


def test_each_criterion():
    truth = _cars((2, 15), (-4, 25), (1, 12), (3, 30), (0, 90))
    labels = boxes3d_lidar_to_imageboxes(truth, CALIB, SHAPE)
    pseudo = truth.copy()
    pseudo[2, 1] += 2.5  # 2.5 m sideways: the projection misses the label box
    behind = _cars((0, -10))
    pseudo = np.concatenate([pseudo, behind])
    labels = np.concatenate([labels, labels[:1]])
    scores = np.array([0.9, 0.3, 0.8, 0.7, 0.95, 0.9])
    keep, counts = PseudoLabelFilter({'SCORE_THRESH': 0.5, 'IOU_2D_THRESH': 0.7, 'DEPTH_RANGE': [1, 80]})(
        pseudo, scores, labels, CALIB, image_shape=SHAPE)
    assert keep.tolist() == [True, False, False, True, False, False]
    assert counts == {'total': 6, 'kept': 2, 'low_score': 1, 'low_iou_2d': 1, 'depth_out_of_range': 2}


def test_per_class_thresholds_and_clipping():
    truth = _cars((-6, 8), (1, 20))  # the first one is cut by the left image border
    labels = boxes3d_lidar_to_imageboxes(truth, CALIB, SHAPE)
    assert labels[0, 0] == 0
    f = PseudoLabelFilter({'SCORE_THRESH': {'Car': 0.6, 'Pedestrian': 0.2}, 'IOU_2D_THRESH': 0.9})
    keep, counts = f(truth, [0.5, 0.5], labels, CALIB, classes=['Pedestrian', 'Car'], image_shape=SHAPE)
    assert keep.tolist() == [True, False] and counts['low_score'] == 1
    # without the image size the projection of the truncated box is not clipped: low IoU
    keep, counts = f(truth, [0.5, 0.5], labels, CALIB, classes=['Pedestrian', 'Car'])
    assert keep.tolist() == [False, False] and counts['low_iou_2d'] == 1
    with pytest.raises(ValueError, match='pass classes='):
        f(truth, [0.5, 0.5], labels, CALIB)
    with pytest.raises(ValueError, match=r"no threshold for classes \['Cyclist'\]"):
        f(truth, [0.5, 0.5], labels, CALIB, classes=['Cyclist', 'Car'])


def test_bad_input_and_empty():
    f = PseudoLabelFilter()
    keep, counts = f(np.zeros((0, 7)), [], np.zeros((0, 4)), CALIB)
    assert keep.shape == (0,) and counts['total'] == 0
    with pytest.raises(ValueError, match='2 boxes but 1 scores'):
        f(_cars((0, 10), (1, 20)), [0.9], np.zeros((2, 4)), CALIB)
    bad = _cars((0, 10))
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match='boxes_lidar: box 0 contains NaN'):
        f(bad, [0.9], np.zeros((1, 4)), CALIB)
    with pytest.raises(ValueError, match='DEPTH_RANGE'):
        PseudoLabelFilter({'DEPTH_RANGE': [50, 10]})
    with pytest.raises(ValueError, match='SCORE_THRESH must be a number'):
        PseudoLabelFilter({'SCORE_THRESH': 'high'})


def test_paired_iou_2d():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], dtype=float)
    np.testing.assert_allclose(paired_iou_2d(a, b), [1, 1 / 3, 0, 0])
