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


def _labelled_pool(root, classes_per_frame):
    """A pool whose label files hold exactly the given classes per frame (calib from the generator)."""
    ids = sorted(classes_per_frame)
    generate_dataset(root, num_frames=len(ids), seed=1, workers=1, progress=False, write_images=False)
    for i, fid in enumerate(ids):
        lines = [f'{c} 0.00 0 0.0 {100 + 60 * j} 150 {150 + 60 * j} 200 1.6 0.8 1.0 {j - 2.0} 1.6 {10.0 + j} 0.0\n'
                 for j, c in enumerate(classes_per_frame[fid])]
        (root / 'training' / 'label_2' / f'{fid}.txt').write_text(''.join(lines))
    return ids


def test_initial_selection_covers_every_class_reading_only_what_it_annotates(tmp_path):
    """min_per_class: the draw goes on in the same random order until each class has a box, and
    stops at once; the plain draw is its prefix; only annotated frames are opened."""
    frames = {f'{i:06d}': ['Car', 'Car', 'Car'] for i in range(12)}
    frames['000007'] = ['Car', 'Pedestrian']
    frames['000010'] = ['Cyclist']
    ids = _labelled_pool(tmp_path, frames)
    grew = 0
    for seed in range(6):
        plain = ActivePool(ids, LabelOracle(tmp_path, CLASSES)).initial_selection(4, seed=seed)
        oracle = LabelOracle(tmp_path, CLASSES)
        pool = ActivePool(ids, oracle)
        ann = pool.initial_selection(4, seed=seed, min_per_class=1, max_extra_boxes=100)
        assert ann.frame_ids[:plain.num_frames] == plain.frame_ids
        assert oracle.opened == ann.frame_ids                      # nothing read beyond the draw
        assert all(n >= 1 for n in ann.boxes_per_class.values()) and ann.uncovered == []
        assert ann.extra_boxes == ann.num_boxes - plain.num_boxes
        # it stops at the first frame that completes the cover: without it a class is missing
        if ann.num_frames > plain.num_frames:
            grew += 1
            before = [c for f in ann.frame_ids[:-1] for c in frames[f]]
            assert set(CLASSES) - set(before), 'drew a frame after every class was covered'
        assert pool.report()['labelled_boxes'] == ann.num_boxes
    assert grew >= 3, 'the seeds did not exercise the cover'


def test_initial_cover_is_capped_and_reports_the_missing_class(tmp_path):
    frames = {f'{i:06d}': ['Car', 'Car'] for i in range(10)}
    frames['000004'] = ['Pedestrian']                              # no cyclist anywhere
    ids = _labelled_pool(tmp_path, frames)
    ann = ActivePool(ids, LabelOracle(tmp_path, CLASSES)).initial_selection(2, seed=0, min_per_class=1,
                                                                           max_extra_boxes=5)
    assert ann.uncovered == ['Cyclist']
    assert 5 <= ann.extra_boxes < 5 + 2                            # stops at the first frame past the cap
    full = ActivePool(ids, LabelOracle(tmp_path, CLASSES)).initial_selection(2, seed=0, min_per_class=1,
                                                                            max_extra_boxes=100)
    assert full.num_frames == len(ids) and full.uncovered == ['Cyclist']   # pool exhausted, no error
    with pytest.raises(ValueError, match='min_per_class must be an integer >= 0'):
        ActivePool(ids, LabelOracle(tmp_path, CLASSES)).initial_selection(2, seed=0, min_per_class=-1)
