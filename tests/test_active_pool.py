"""Pools, budgets and the label oracle (pcdet_ext.active.pool) on a tiny synthetic pool."""
import pytest

from pcdet_ext.active import ActivePool, LabelOracle, annotate_until_budget, check_budget
from pcdet_ext.datasets.synthetic import generate_dataset

CLASSES = ['Car', 'Pedestrian', 'Cyclist']
IDS = [f'{i:06d}' for i in range(8)]


@pytest.fixture(scope='module')
def pool_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('al_pool')
    generate_dataset(root, num_frames=len(IDS), seed=3, workers=1, progress=False, write_images=False)
    # an extra DontCare and a Van in frame 0: neither counts against the budget
    f = root / 'training' / 'label_2' / '000000.txt'
    f.write_text(f.read_text() + 'DontCare -1 -1 -10 100 150 120 170 -1 -1 -1 -1000 -1000 -1000 -10\n'
                 'Van 0.00 0 0.1 300 170 360 220 2.0 1.9 4.8 5.0 1.7 30.0 0.1\n')
    return root


def _true_counts(root, fid):
    names = [ln.split()[0] for ln in (root / 'training' / 'label_2' / f'{fid}.txt').read_text().splitlines() if ln]
    return sum(n in CLASSES for n in names)


def test_oracle_refuses_unlabelled_and_counts_chosen_classes(pool_root):
    oracle = LabelOracle(pool_root, CLASSES)
    with pytest.raises(PermissionError, match='not labelled'):
        oracle.read('000000')
    assert oracle.opened == []
    counts = oracle.count_boxes(oracle.annotate('000000'))
    assert sum(counts.values()) == _true_counts(pool_root, '000000')  # no DontCare, no Van
    assert oracle.opened == ['000000']


def test_annotation_never_over_by_more_than_one_frame(pool_root):
    for budget in (1, 5, 12, 30):
        oracle = LabelOracle(pool_root, CLASSES)
        ann = annotate_until_budget(IDS, oracle, budget)
        assert ann.num_boxes == sum(_true_counts(pool_root, f) for f in ann.frame_ids)
        assert ann.num_boxes == sum(ann.boxes_per_class.values())
        if ann.num_boxes >= budget:  # the frames before the last did not reach the budget
            assert ann.num_boxes - ann.boxes_per_frame[ann.frame_ids[-1]] < budget
        assert oracle.opened == ann.frame_ids  # frames after the stop are never opened


def test_initial_selection_seeded_and_reported(pool_root):
    reports = []
    for _ in range(2):
        pool = ActivePool(IDS, LabelOracle(pool_root, CLASSES))
        ann = pool.initial_selection(10, seed=7)
        reports.append((ann.frame_ids, pool.report()))
        assert pool.report()['labelled_boxes'] == ann.num_boxes
        assert pool.report()['labelled_frames'] == len(ann.frame_ids)
        assert set(pool.unlabelled) == set(IDS) - set(ann.frame_ids)
    assert reports[0] == reports[1]
    other = ActivePool(IDS, LabelOracle(pool_root, CLASSES)).initial_selection(10, seed=8)
    assert other.frame_ids != reports[0][0] or len(IDS) < 3


def test_pool_lists_round_trip(pool_root, tmp_path):
    pool = ActivePool(IDS, LabelOracle(pool_root, CLASSES), round_index=2)
    pool.initial_selection(6, seed=0)
    pool.write(tmp_path / 'round_2')
    assert (tmp_path / 'round_2' / 'labelled.txt').read_text().split() == pool.labelled
    assert (tmp_path / 'round_2' / 'unlabelled.txt').read_text().split() == pool.unlabelled
    oracle = LabelOracle(pool_root, CLASSES)
    back = ActivePool.load(tmp_path / 'round_2', oracle)
    assert back.report() == pool.report()
    assert set(oracle.opened) == set(pool.labelled)  # reloading re-reads labelled frames only


@pytest.mark.parametrize('budget', [0, -3, 2.5, None, True])
def test_bad_budget_is_a_clear_error(budget, pool_root):
    with pytest.raises(ValueError, match='budget'):
        check_budget(budget)
    oracle = LabelOracle(pool_root, CLASSES)
    with pytest.raises(ValueError, match='budget'):
        ActivePool(IDS, oracle).initial_selection(budget, seed=0)
    assert oracle.opened == []


def test_empty_pool_and_bad_root_are_clear_errors(pool_root, tmp_path):
    with pytest.raises(ValueError, match='empty'):
        ActivePool([], LabelOracle(pool_root, CLASSES))
    with pytest.raises(ValueError, match='not a folder'):
        LabelOracle(tmp_path / 'nope', CLASSES)
    with pytest.raises(ValueError, match='duplicate'):
        ActivePool(['000001', '000001'], LabelOracle(pool_root, CLASSES))
