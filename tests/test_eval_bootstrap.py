"""Paired bootstrap of KITTI AP over evaluation frames (pcdet_ext.evaluation.bootstrap and
tools/bench_ap_bootstrap.py)."""
import pickle

import numpy as np
import pytest

from pcdet_ext.evaluation.bootstrap import class_aps, paired_bootstrap, summarize
from pcdet_ext.evaluation.kitti import empty_annotation, get_label_anno

from _tools_helpers import load_tool


@pytest.fixture(scope='module')
def frames(tmp_path_factory):
    from pcdet_ext.datasets.synthetic import generate_dataset
    root = tmp_path_factory.mktemp('bootstrap') / 'data'
    generate_dataset(root, num_frames=6, seed=3, workers=1, progress=False, write_images=False)
    ids = [f'{i:06d}' for i in range(6)] * 8   # repeated: KITTI's R40 AP reaches 100 only above 40 objects
    gt = [{**get_label_anno(root / 'training' / 'label_2' / f'{f}.txt'), 'frame_id': f} for f in ids]
    return root, ids, gt


def _perfect(anno):
    # distinct scores: KITTI's recall thresholds come from the scores, one value would give one threshold
    n = len(anno['name'])
    return {**{k: np.asarray(v).copy() for k, v in anno.items() if k != 'frame_id'},
            'score': 0.99 - 0.01 * np.arange(n) - 0.001 * int(anno['frame_id']), 'frame_id': anno['frame_id']}


def _empty(anno):
    return {**empty_annotation(), 'frame_id': anno['frame_id']}


def test_perfect_against_empty_and_identical_detectors(frames):
    _, _, gt = frames
    perfect = [_perfect(a) for a in gt]
    empty = [_empty(a) for a in gt]
    assert class_aps(gt, perfect, ['Car'])['Car'] == pytest.approx(100.0)
    res = paired_bootstrap(gt, [perfect, empty, perfect], ['Car'], resamples=8, seed=1)
    assert res['samples'].shape == (8, 3, 2)
    assert res['full'][0]['Car'] == pytest.approx(100.0) and res['full'][1]['Car'] == 0.0
    np.testing.assert_array_equal(res['samples'][:, 0], res['samples'][:, 2])   # paired: same resamples
    s = summarize(res)
    assert s['differences'][1]['Car'] == (0.0, 0.0, 0.0, 0.0)                   # identical: no difference
    diff, lo, hi, up = s['differences'][0]['Car']
    assert diff == pytest.approx(-100.0) and hi <= 0 and up == 0.0


def test_resamples_are_seeded_and_spread_a_mixed_detector(frames):
    _, _, gt = frames
    half = [_perfect(a) if i % 2 else _empty(a) for i, a in enumerate(gt)]     # finds the cars of odd frames
    a = paired_bootstrap(gt, [half], ['Car'], resamples=12, seed=4)
    b = paired_bootstrap(gt, [half], ['Car'], resamples=12, seed=4)
    np.testing.assert_array_equal(a['samples'], b['samples'])
    value, std, lo, hi = summarize(a)['detectors'][0]['Car']
    assert 0 < value < 100 and std > 0 and lo < hi
    np.testing.assert_allclose(a['samples'][:, 0, 1], a['samples'][:, 0, 0])  # one class: mAP = its AP


def test_bad_input_is_refused(frames):
    _, _, gt = frames
    perfect = [_perfect(a) for a in gt]
    with pytest.raises(ValueError, match='resamples must be'):
        paired_bootstrap(gt, [perfect], ['Car'], resamples=0)
    with pytest.raises(ValueError, match="frame 0 is '000001'"):
        paired_bootstrap(gt, [perfect[1:] + perfect[:1]], ['Car'], resamples=2)
    with pytest.raises(ValueError, match='48 frames but dt_annos has 47'):
        paired_bootstrap(gt, [perfect[:-1]], ['Car'], resamples=2)


def test_tool_prints_both_tables_and_refuses_mismatched_results(frames, tmp_path, capsys):
    root, _, gt = frames
    a, b, c = tmp_path / 'a.pkl', tmp_path / 'b.pkl', tmp_path / 'c.pkl'
    pickle.dump([_perfect(x) for x in gt], open(a, 'wb'))
    pickle.dump([_empty(x) for x in gt], open(b, 'wb'))
    pickle.dump([_empty(x) for x in gt[:4]], open(c, 'wb'))
    tool = load_tool('bench_ap_bootstrap')
    gt_dir = str(root / 'training' / 'label_2')
    assert tool.main([str(a), str(b), '--gt_dir', gt_dir, '--names', 'all', 'none', '--classes', 'Car',
                      '--resamples', '4', '--json', str(tmp_path / 'out.json')]) == 0
    out = capsys.readouterr().out
    assert '| all | 100.00 ± 0.00' in out and '| none | -100.00 [-100.00, -100.00] (0.00)' in out
    assert (tmp_path / 'out.json').is_file()
    assert tool.main([str(a), str(c), '--gt_dir', gt_dir, '--resamples', '2']) == 2
    assert 'c.pkl: its frames differ' in capsys.readouterr().err
    assert tool.main([str(tmp_path / 'nope.pkl'), '--gt_dir', gt_dir]) == 2
    assert 'nope.pkl' in capsys.readouterr().err
