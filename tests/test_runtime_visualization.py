"""BEV and image_2 PNGs on a real KITTI frame."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcdet_ext.geometry import Calibration, boxes3d_kitti_camera_to_lidar
from pcdet_ext.utils.visualization import GT_COLOR, PRED_COLOR, draw_bev, draw_image_boxes, project_boxes_to_image

KITTI = Path(__file__).resolve().parents[2] / 'shared/data/kitti_real'


def _frame(idx='000000'):
    if not (KITTI / 'training' / 'velodyne' / f'{idx}.bin').is_file():
        pytest.skip(f'real KITTI frames not found at {KITTI}')
    t = KITTI / 'training'
    pts = np.fromfile(t / 'velodyne' / f'{idx}.bin', dtype=np.float32).reshape(-1, 4)
    calib = Calibration(str(t / 'calib' / f'{idx}.txt'))
    rows = [ln.split() for ln in (t / 'label_2' / f'{idx}.txt').read_text().splitlines()]
    rows = [r for r in rows if r[0] != 'DontCare']
    cam = np.array([[float(r[11]), float(r[12]), float(r[13]), float(r[10]), float(r[8]), float(r[9]),
                     float(r[14])] for r in rows])  # x y z l h w ry
    box2d = np.array([[float(v) for v in r[4:8]] for r in rows])
    img = np.asarray(Image.open(t / 'image_2' / f'{idx}.png').convert('RGB'))
    return pts, calib, boxes3d_kitti_camera_to_lidar(cam, calib), box2d, img


def _has_color(arr, hex_color, tol=40):
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(arr[..., :3].astype(int) - rgb).max(-1) < tol)


def test_bev_and_image_pngs(tmp_path):
    pts, calib, gt, box2d, img = _frame()
    pred = gt.copy()
    pred[:, 0] += 0.5
    bev = draw_bev(pts, tmp_path / 'bev.png', pred_boxes=pred, pred_scores=np.full(len(pred), 0.9),
                   pred_labels=np.ones(len(pred), int), gt_boxes=gt, class_names=['Car'],
                   pc_range=[0, -40, -3, 70.4, 40, 1], title='000000')
    arr = np.asarray(Image.open(bev))
    assert _has_color(arr, GT_COLOR).sum() > 50 and _has_color(arr, PRED_COLOR).sum() > 50

    out = draw_image_boxes(img, calib, tmp_path / 'img.png', pred_boxes=pred, gt_boxes=gt)
    arr = np.asarray(Image.open(out).convert('RGB'))
    assert abs(arr.shape[1] - img.shape[1]) <= 2
    # projected ground-truth edges are drawn where the label's 2D box is
    uv, keep = project_boxes_to_image(gt, calib)
    assert len(keep) == len(gt)
    enclosing = np.concatenate([uv.min(1), uv.max(1)], axis=1)
    i = int(np.argmax((box2d[:, 2] - box2d[:, 0]) * (box2d[:, 3] - box2d[:, 1])))
    assert np.allclose(enclosing[i], box2d[i], atol=25)
    assert not list(tmp_path.glob('.*tmp*'))


def test_boxes_behind_camera_are_not_projected():
    _, calib, gt, _, _ = _frame()
    behind = gt.copy()
    behind[:, 0] = -10.0
    uv, keep = project_boxes_to_image(behind, calib)
    assert len(keep) == 0 and uv.shape == (0, 8, 2)
