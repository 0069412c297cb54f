"""tools/bench_cpsp_bank.py: precision and recall of a hand-made pseudo bank on a synthetic frame."""
import numpy as np
import pytest

from pcdet_ext.active.cpsp import BankObject, CPSPBanks
from pcdet_ext.active.pool import LabelOracle

from _tools_helpers import load_tool


def _tool():
    return load_tool('bench_cpsp_bank')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    from pcdet_ext.datasets.synthetic import generate_dataset
    r = tmp_path_factory.mktemp('bank_quality') / 'data'
    generate_dataset(r, num_frames=3, seed=5, workers=1, progress=False, write_images=False)
    return r


def _obj(box, name, fid):
    return BankObject(points=np.zeros((0, 4), np.float32), box=np.asarray(box, np.float64), name=name,
                      score=0.9, frame_id=fid, kind='pseudo')


def test_bank_quality_counts_right_wrong_and_duplicate_objects(root, tmp_path, capsys):
    fid = '000000'
    gt = LabelOracle(root, ['Car'], labelled=[fid]).read(fid)
    cars = gt['gt_boxes_lidar'][gt['gt_names_lidar'] == 'Car']
    assert len(cars) >= 2, 'the synthetic frame needs two cars for this test'
    far = cars[0].copy()
    far[:2] += 30.0                                     # nothing there
    shifted = cars[0].copy()
    shifted[0] += 0.5 * shifted[3]                      # BEV IoU 1/3 < 0.5
    nudged = cars[1].copy()
    nudged[:2] += 0.2 * nudged[3] * np.array([np.cos(nudged[6]), np.sin(nudged[6])])  # along its length:
    #                                                   BEV IoU 0.8 / 1.2 = 2/3, right but not tight
    objs = [_obj(cars[0], 'Car', fid), _obj(cars[0], 'Car', fid),   # right, twice: one labelled box
            _obj(nudged, 'Car', fid), _obj(far, 'Car', fid), _obj(shifted, 'Car', fid),
            _obj(cars[1], 'Pedestrian', fid)]                       # right place, wrong class
    banks = CPSPBanks(class_names=['Car', 'Pedestrian'], objects=objs, candidates={fid: {}})
    tool = _tool()
    q = tool.bank_quality(banks, root, ['Car', 'Pedestrian'])
    assert q['Car']['objects'] == 5 and q['Car']['precision'] == pytest.approx(3 / 5)
    assert q['Car']['labelled'] == len(cars) and q['Car']['recall'] == pytest.approx(2 / len(cars))
    assert q['Car']['mean_iou'] == pytest.approx((1 + 1 + 2 / 3) / 3, abs=1e-4)
    assert q['Car']['tight'] == pytest.approx(2 / 3)
    assert q['Pedestrian']['objects'] == 1 and q['Pedestrian']['precision'] == 0.0
    assert np.isnan(q['Pedestrian']['mean_iou'])

    f = tmp_path / 'banks.pkl'
    banks.save(f)
    assert tool.main([str(f), '--data_path', str(root), '--classes', 'Car']) == 0
    out = capsys.readouterr().out
    assert f'| {f} | 5 / 0.60 / ' in out and ' / 0.889 / 0.67 |' in out
    assert tool.main([str(tmp_path / 'missing.pkl'), '--data_path', str(root)]) == 2
    assert 'missing.pkl' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                # no KITTI thresholds: refused before any work
        tool.main([str(f), '--data_path', str(root), '--classes', 'Tram'])
    assert e.value.code == 2 and "['Tram']" in capsys.readouterr().err


def test_right_and_tight_overlaps_are_kittis():
    tool = _tool()
    assert [tool.match_iou(c) for c in ('Car', 'Pedestrian', 'Cyclist')] == [0.5, 0.25, 0.25]
    assert [tool.tight_iou(c) for c in ('Car', 'Pedestrian', 'Cyclist')] == [0.7, 0.5, 0.5]


def test_background_leftovers_count_objects_not_cut_out(root):
    from pcdet_ext.active.cpsp import cut_objects, frame_points
    from pcdet_ext.geometry import enlarge_box3d
    fid = '000000'
    gt = LabelOracle(root, ['Car', 'Pedestrian'], labelled=[fid]).read(fid)
    names, boxes = gt['gt_names_lidar'], gt['gt_boxes_lidar'].astype(np.float64)
    pts = cut_objects(frame_points(root, fid), boxes)
    seen = {c: sum(n == c and len(p) >= 5 for n, p in zip(names, pts)) for c in ('Car', 'Pedestrian')}
    car = next(i for i, (n, p) in enumerate(zip(names, pts)) if n == 'Car' and len(p) >= 5)
    assert seen['Car'] >= 2, 'the synthetic frame needs two cars with points for this test'
    tool = _tool()

    def left(remove):
        banks = CPSPBanks(class_names=['Car', 'Pedestrian'], backgrounds=[
            {'frame_id': fid, 'source': 'pseudo', 'remove_boxes': remove},
            {'frame_id': '000001', 'source': 'labelled', 'remove_boxes': np.zeros((0, 7))}])  # not counted
        return tool.background_leftovers(banks, root, ['Car', 'Pedestrian'])

    nothing_cut = left(np.zeros((0, 7)))
    assert nothing_cut == {c: {'left': seen[c], 'objects': seen[c]} for c in seen}
    one_cut = left(enlarge_box3d(boxes[car:car + 1], (0.2, 0.2, 0.2)))
    assert one_cut['Car'] == {'left': seen['Car'] - 1, 'objects': seen['Car']}
    assert one_cut['Pedestrian'] == nothing_cut['Pedestrian']
    assert left(enlarge_box3d(boxes, (0.2, 0.2, 0.2)))['Car']['left'] == 0


def test_negative_truth_counts_negatives_on_labelled_objects_by_band(root, tmp_path, capsys):
    fid = '000000'
    gt = LabelOracle(root, ['Car'], labelled=[fid]).read(fid)
    car = gt['gt_boxes_lidar'][gt['gt_names_lidar'] == 'Car'][0]
    far = car.copy()
    far[:2] += 30.0

    def neg(box, name, score):
        o = _obj(box, name, fid)
        o.kind, o.score = 'negative', score
        return o
    negatives = [neg(car, 'Car', 0.12), neg(far, 'Car', 0.35), neg(car, 'Car', 0.05),  # 0.05: under every band
                 neg(car, 'Pedestrian', 0.2)]    # on a car: on an object whatever the class it was scored as
    banks = CPSPBanks(class_names=['Car', 'Pedestrian'], negatives=negatives, candidates={fid: {}})
    tool = _tool()
    by = tool.negative_truth(banks, root, ['Car', 'Pedestrian'], bands=(0.1, 0.15, 0.3, 1.0))
    assert by['Car'] == [(0.1, 0.15, 1, 1), (0.15, 0.3, 0, 0), (0.3, 1.0, 1, 0)]
    assert by['Pedestrian'] == [(0.1, 0.15, 0, 0), (0.15, 0.3, 1, 1), (0.3, 1.0, 0, 0)]
    f = tmp_path / 'negatives.pkl'
    banks.save(f)
    assert tool.main([str(f), '--data_path', str(root), '--classes', 'Car', 'Pedestrian']) == 0
    assert f'| {f} | Pedestrian | 0 / 0 | 0 / 0 | 1 / 1 | 0 / 0 | 0 / 0 |' in capsys.readouterr().out
