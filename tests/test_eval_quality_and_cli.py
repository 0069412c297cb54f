"""Pseudo-label quality metrics, their PNG, and tools/eval_kitti.py on label folders."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcdet_ext.evaluation.pseudo_label_quality import (plot_quality_histograms,
                                                       pseudo_label_quality)

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO.parent / 'shared/data/kitti_real/training/label_2'


def anno(rows, score=False):
    """rows: (name, x, z, l, h, w, ry)."""
    a = {'name': np.array([r[0] for r in rows], dtype='<U16'),
         'truncated': np.zeros(len(rows)), 'occluded': np.zeros(len(rows)),
         'alpha': np.zeros(len(rows)), 'bbox': np.tile([100.0, 100.0, 200.0, 180.0], (len(rows), 1)),
         'dimensions': np.array([r[3:6] for r in rows], dtype=float).reshape(-1, 3),
         'location': np.array([[r[1], 1.5, r[2]] for r in rows], dtype=float).reshape(-1, 3),
         'rotation_y': np.array([r[6] for r in rows], dtype=float)}
    if score:
        a['score'] = np.ones(len(rows))
    return a


def test_quality_metrics_by_hand():
    """Car 0: found exactly (IoU 1). Car 1: found 1 m off along its length (l = 4, w = 2):
    overlap 3 x 2 over 8 + 8 - 6 -> IoU 3/5 (BEV and 3D), centre error 1 m. Car 2: missed.
    A far detection and a 'Car' on the Pedestrian match no Car. Recall@0.5 = 2/3, @0.7 = 1/3."""
    gt = [anno([('Car', 0, 20, 4, 1.5, 2, 0), ('Car', 10, 30, 4, 1.5, 2, 0),
                ('Car', -10, 40, 4, 1.5, 2, 0), ('Pedestrian', 3, 10, 0.8, 1.7, 0.6, 0)])]
    dt = [anno([('Car', 0, 20, 4, 1.5, 2, 0), ('Car', 11, 30, 4, 1.5, 2, 0),
                ('Car', 50, 60, 4, 1.5, 2, 0), ('Car', 3, 10, 0.8, 1.7, 0.6, 0.1)], score=True)]
    s = pseudo_label_quality(gt, dt, ['Car', 'Pedestrian'])
    car = s['Car']
    assert (car['n_gt'], car['n_dt'], car['n_matched']) == (3, 4, 2)
    per = car['per_object']
    assert sorted(zip(per['gt_index'], per['dt_index'])) == [(0, 0), (1, 1)]
    iou = dict(zip(per['gt_index'], per['iou_3d']))
    iou_bev = dict(zip(per['gt_index'], per['iou_bev']))
    assert iou[0] == pytest.approx(1.0, abs=1e-9) and iou_bev[0] == pytest.approx(1.0, abs=1e-9)
    assert iou[1] == pytest.approx(3 / 5, abs=1e-9) and iou_bev[1] == pytest.approx(3 / 5, abs=1e-9)
    err = dict(zip(per['gt_index'], per['centre_error']))
    assert err[0] == pytest.approx(0.0) and err[1] == pytest.approx(1.0)
    assert car['recall_3d@0.5'] == pytest.approx(2 / 3)
    assert car['recall_3d@0.7'] == pytest.approx(1 / 3)
    assert car['precision_3d@0.5'] == pytest.approx(2 / 4)
    ped = s['Pedestrian']
    assert (ped['n_gt'], ped['n_dt'], ped['n_matched'], ped['recall_3d@0.5']) == (1, 0, 0, 0.0)


def test_quality_heading_and_size_errors():
    gt = [anno([('Car', 0, 20, 4, 1.5, 2, 3.1)])]
    dt = [anno([('Car', 0, 20, 4.4, 1.5, 1.8, -3.1)], score=True)]
    per = pseudo_label_quality(gt, dt, ['Car'])['Car']['per_object']
    assert per['heading_error'][0] == pytest.approx(2 * np.pi - 6.2)   # wraps across +-pi
    np.testing.assert_allclose(per['size_error'][0], [0.4, 0.0, 0.2], atol=1e-12)


def test_histogram_png(tmp_path):
    rng = np.random.default_rng(0)
    rows = [('Car', float(x), 20.0, 4, 1.5, 2, 0.0) for x in range(0, 60, 6)]
    gt = [anno(rows)]
    jit = [(n, x + rng.normal(0, 0.3), z, l, h, w, ry + 0.1) for n, x, z, l, h, w, ry in rows]
    stats = pseudo_label_quality(gt, [anno(jit, score=True)], ['Car', 'Cyclist'])
    out = plot_quality_histograms(stats, tmp_path / 'q' / 'hist.png')
    data = out.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000


def _write_preds(src: Path, dst: Path, drop_class=None):
    dst.mkdir()
    for f in sorted(src.glob('*.txt')):
        lines = [ln for ln in f.read_text().splitlines() if ln.split()[0] not in ('DontCare', drop_class)]
        (dst / f.name).write_text(''.join(f'{ln} 0.9\n' for ln in lines))


def test_cli_prints_the_official_table(tmp_path):
    if not LABELS.is_dir():
        pytest.skip(f'real KITTI labels not found at {LABELS}')
    _write_preds(LABELS, tmp_path / 'pred')
    split = tmp_path / 'val.txt'
    split.write_text('000000\n000001\n000002\n000003\n000076\n')
    cmd = [sys.executable, str(REPO / 'tools/eval_kitti.py'), '--gt_dir', str(LABELS),
           '--pred_dir', str(tmp_path / 'pred'), '--split_file', str(split), '--classes', 'Car',
           '--quality', '--quality_png', str(tmp_path / 'q.png'), '--json', str(tmp_path / 'r.json')]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '5 frames' in out.stdout
    assert 'Car AP_R40@0.70, 0.70, 0.70:' in out.stdout and '3d   AP:' in out.stdout
    assert 'Per-object quality' in out.stdout and (tmp_path / 'q.png').is_file()
    assert '"Car_3d/moderate_R40"' in (tmp_path / 'r.json').read_text()

    (tmp_path / 'pred' / '000001.txt').unlink()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and '000001.txt' in out.stderr and '--allow_missing' in out.stderr
