"""The KITTI evaluator on the eleven real labelled frames, and the label reader."""
import copy
from pathlib import Path

import numpy as np
import pytest

from pcdet_ext.evaluation.kitti import get_label_annos, get_official_eval_result, parse_label_lines

LABELS = Path(__file__).resolve().parents[2] / 'shared/data/kitti_real/training/label_2'


@pytest.fixture(scope='module')
def real_gt():
    if not LABELS.is_dir():
        pytest.skip(f'real KITTI labels not found at {LABELS}')
    return get_label_annos(LABELS)


def as_detections(gt_annos, rng=None, sigma=0.0):
    """Ground truth (DontCare removed) as detections with distinct scores, optionally
    jittered: centre and size by sigma (m / relative), heading by sigma (rad)."""
    out = []
    for i, a in enumerate(gt_annos):
        keep = a['name'] != 'DontCare'
        d = {k: np.array(v)[keep].copy() for k, v in a.items() if k != 'score'}
        n = len(d['name'])
        if sigma:
            d['location'][:, [0, 2]] += rng.normal(0, sigma, (n, 2))
            d['dimensions'] *= 1 + rng.normal(0, sigma / 4, (n, 3))
            d['rotation_y'] += rng.normal(0, sigma, n)
        d['score'] = 1.0 - (i * 20 + np.arange(n)) / 10000
        out.append(d)
    return out


def test_reader_matches_the_files(real_gt):
    assert len(real_gt) == 11
    names = np.concatenate([a['name'] for a in real_gt])
    assert (names == 'Car').sum() == 21 and (names == 'DontCare').sum() == 26
    first = (LABELS / '000000.txt').read_text().split()
    a = real_gt[0]
    assert a['name'][0] == first[0]
    # label file: h w l; annotation dict: l h w
    h, w, l = map(float, first[8:11])
    assert tuple(a['dimensions'][0]) == (l, h, w)
    assert a['score'][0] == 0.0


def test_perfect_cars_on_eleven_frames_are_capped_at_27_5(real_gt):
    """12 moderate Cars: one score threshold per true positive, so 12 of the 41 recall
    samples are reached: R40 = 11 / 40 = 27.5 even for perfect detections."""
    _, res = get_official_eval_result(real_gt, as_detections(real_gt), ['Car'])
    for k in ('3d', 'bev', 'image', 'aos'):
        assert res[f'Car_{k}/moderate_R40'] == pytest.approx(27.5, abs=1e-9)


def test_perfect_cars_repeated_five_times_score_100(real_gt):
    gt5 = [copy.deepcopy(a) for a in real_gt * 5]
    _, res = get_official_eval_result(gt5, as_detections(gt5), ['Car'])
    for k in ('3d', 'bev', 'image', 'aos'):
        for d in ('moderate', 'hard'):
            assert res[f'Car_{k}/{d}_R40'] == pytest.approx(100.0, abs=1e-9)
            assert res[f'Car_{k}/{d}'] == pytest.approx(100.0, abs=1e-9)


def test_jittered_ground_truth_drops_monotonically(real_gt):
    gt5 = [copy.deepcopy(a) for a in real_gt * 5]
    aps = []
    for sigma in (0.0, 0.05, 0.15, 0.3, 0.6):
        dts = as_detections(gt5, np.random.default_rng(0), sigma)
        _, res = get_official_eval_result(gt5, dts, ['Car'])
        aps.append(res['Car_3d/moderate_R40'])
    assert aps[0] == pytest.approx(100.0)
    assert all(a >= b for a, b in zip(aps, aps[1:])), aps
    assert aps[1] > 50 and aps[-1] < 5, aps


def test_malformed_label_lines_name_file_and_line(tmp_path):
    good = 'Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59'
    with pytest.raises(ValueError, match=r'x\.txt:2: expected 15 columns'):
        parse_label_lines([good, 'Car 0 0 1 2 3'], source='x.txt')
    with pytest.raises(ValueError, match=r"y\.txt:1: column value 'abc' is not a number"):
        parse_label_lines([good.replace('46.70', 'abc')], source='y.txt')
    with pytest.raises(ValueError, match=r'z\.txt:1: NaN'):
        parse_label_lines([good.replace('46.70', 'nan')], source='z.txt')
    (tmp_path / '000003.txt').write_text(good + ' 0.75\n\n')
    (tmp_path / '000004.txt').write_text('')
    annos = get_label_annos(tmp_path, [3, '000004'])
    assert annos[0]['score'][0] == 0.75 and annos[0]['location'][0, 2] == 46.70
    assert len(annos[1]['name']) == 0 and annos[1]['bbox'].shape == (0, 4)
    with pytest.raises(FileNotFoundError, match='000005.txt'):
        get_label_annos(tmp_path, [5])
