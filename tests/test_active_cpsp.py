"""CPSP: seeded k-means thresholds, banks, bank refresh, pseudo-scenes without overlaps, and the
CPSPDataset."""
import numpy as np
import pytest

from _active_helpers import CLASSES, fake_pool_summaries, hand_summary, tiny_data_cfg
from pcdet_ext.active import (ActivePool, CPSPDataset, LabelOracle, build_banks, class_thresholds,
                              compose_scene, kmeans_1d, merge_candidates, refresh_pseudo_bank)
from pcdet_ext.active.cpsp import cut_threshold, frame_points, rotate_about_sensor
from pcdet_ext.active.summaries import FrameSummary
from pcdet_ext.datasets.augmentor.object_paste import remove_points_in_boxes
from pcdet_ext.datasets.synthetic import generate_dataset
from pcdet_ext.ops.iou3d_nms import boxes_iou_bev

IDS = [f'{i:06d}' for i in range(8)]
OBJ = {'Car': 12, 'Pedestrian': 6, 'Cyclist': 6}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('al_cpsp')
    generate_dataset(root, num_frames=len(IDS), seed=5, workers=1, progress=False, write_images=False)
    oracle = LabelOracle(root, CLASSES)
    pool = ActivePool(IDS, oracle)
    pool.initial_selection(15, seed=0)
    summaries = fake_pool_summaries(root, pool.unlabelled)
    banks = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0)
    return root, pool, summaries, banks


def test_kmeans_thresholds_deterministic_and_separating():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.1, 0.3, 50), rng.uniform(0.8, 0.95, 20)])
    lo, hi = kmeans_1d(scores, seed=3)
    assert lo < 0.3 < 0.8 < hi
    assert kmeans_1d(scores, seed=3) == kmeans_1d(scores, seed=3)
    assert kmeans_1d([0.5, 0.5], seed=0) is None
    summ = {'a': hand_summary('a', scores[:35], labels=np.ones(35, int)),
            'b': hand_summary('b', scores[35:], labels=np.ones(35, int))}
    t1 = class_thresholds(summ, CLASSES, seed=0)
    assert t1 == class_thresholds(summ, CLASSES, seed=0)
    assert 0.3 < t1['Car'] < 0.8 and t1['Pedestrian'] == 0.5  # no pedestrian scores: default


def test_banks_split_labelled_and_pseudo(setup):
    root, pool, summaries, banks = setup
    kinds = {o.kind for o in banks.objects}
    assert 'gt' in kinds and {o.frame_id for o in banks.objects if o.kind == 'gt'} <= set(pool.labelled)
    assert {o.frame_id for o in banks.objects if o.kind == 'pseudo'} <= set(pool.unlabelled)
    for o in banks.objects:
        thr = banks.thresholds[o.name]
        assert o.kind == 'gt' or o.score >= thr
    for o in banks.negatives:
        assert banks.low_thresh <= o.score < banks.thresholds[o.name]
    assert len(banks.backgrounds) == len(IDS)


def test_pseudo_scenes_have_no_overlaps_and_are_seeded(setup):
    root, _, _, banks = setup
    placed = 0
    for seed in range(4):
        s = compose_scene(banks, root, np.random.default_rng(seed), OBJ, negatives_per_scene=4)
        b = s['gt_boxes']
        placed += len(b)
        if len(b) > 1:
            iou = np.asarray(boxes_iou_bev(b, b))
            np.fill_diagonal(iou, 0)
            assert iou.max() == 0
        again = compose_scene(banks, root, np.random.default_rng(seed), OBJ, negatives_per_scene=4)
        np.testing.assert_array_equal(again['points'], s['points'])
        np.testing.assert_array_equal(again['gt_boxes'], b)
    assert placed > 8


def test_rotation_about_the_sensor_keeps_range_view_and_points():
    rng = np.random.default_rng(0)
    box = np.array([12.0, 5.0, -1.0, 4.0, 1.7, 1.5, 0.3])
    pts = np.c_[rng.uniform(-1.5, 1.5, (50, 3)), rng.uniform(0, 1, 50)].astype(np.float32)
    for angle in (0.4, -0.25, np.pi):
        p2, b2 = rotate_about_sensor(pts, box, angle)
        assert np.hypot(*b2[:2]) == pytest.approx(np.hypot(*box[:2]))
        azimuth = np.arctan2(b2[1], b2[0]) - np.arctan2(box[1], box[0])
        assert np.cos(azimuth - angle) == pytest.approx(1.0)
        # heading relative to the viewing ray unchanged: the sensor sees the same side
        assert np.cos((b2[6] - np.arctan2(b2[1], b2[0])) - (box[6] - np.arctan2(box[1], box[0]))) == pytest.approx(1.0)
        assert -np.pi <= b2[6] < np.pi
        np.testing.assert_allclose(np.linalg.norm(p2[:, :2], axis=1), np.linalg.norm(pts[:, :2], axis=1), rtol=1e-5)
        np.testing.assert_array_equal(p2[:, 2:], pts[:, 2:])
        # points in the object's own frame do not move
        def local(p, b):
            c, s = np.cos(-b[6]), np.sin(-b[6])
            return p[:, :2].astype(np.float64) @ np.array([[c, -s], [s, c]]).T
        np.testing.assert_allclose(local(p2, b2), local(pts, box), atol=1e-5)
    before = pts.copy()
    rotate_about_sensor(pts, box, 0.4)
    np.testing.assert_array_equal(pts, before)  # the bank object is not changed in place


def test_rotated_pseudo_scenes_move_objects_without_overlaps(setup):
    from pcdet_ext.ops.roiaware_pool3d import points_in_boxes_mask
    root, _, _, banks = setup
    recorded = {tuple(np.round(o.box[:2], 4)) for o in banks.objects}
    moved = checked = 0
    for seed in range(4):
        plain = compose_scene(banks, root, np.random.default_rng(seed), OBJ, negatives_per_scene=0)
        assert {tuple(np.round(b[:2], 4)) for b in plain['gt_boxes']} <= recorded
        s = compose_scene(banks, root, np.random.default_rng(seed), OBJ, negatives_per_scene=2, object_rotation=0.5)
        again = compose_scene(banks, root, np.random.default_rng(seed), OBJ, negatives_per_scene=2, object_rotation=0.5)
        np.testing.assert_array_equal(again['points'], s['points'])
        b = s['gt_boxes']
        moved += sum(tuple(np.round(x[:2], 4)) not in recorded for x in b)
        if len(b) > 1:
            iou = np.asarray(boxes_iou_bev(b, b))
            np.fill_diagonal(iou, 0)
            assert iou.max() == 0
        # each labelled box holds its object's points (at least the bank's minimum of 5)
        inside = np.asarray(points_in_boxes_mask(np.ascontiguousarray(s['points'][:, :3]), b)).sum(axis=1)
        assert (inside >= 5).all()
        checked += len(b)
    assert checked > 8 and moved == checked


def test_ground_alignment_puts_boxes_on_local_ground(setup):
    root, _, _, banks = setup
    from pcdet_ext.ops.roiaware_pool3d import points_in_boxes
    s = compose_scene(banks, root, np.random.default_rng(0), OBJ, negatives_per_scene=0)
    pts, boxes = s['points'], s['gt_boxes']
    outside = pts[np.asarray(points_in_boxes(pts[:, :3], boxes)) < 0]
    checked = 0
    for b in boxes:
        near = np.hypot(outside[:, 0] - b[0], outside[:, 1] - b[1]) <= np.hypot(b[3], b[4]) / 2 + 1.0
        if near.sum() < 20:
            continue
        ground = np.percentile(outside[near, 2], 2)
        assert abs((b[2] - b[5] / 2) - ground) < 0.3
        checked += 1
    assert checked >= 3


def test_refresh_keeps_the_higher_score():
    a = {'f': {'boxes': np.array([[10, 0, -1, 4, 1.6, 1.5, 0]], np.float32), 'scores': np.array([0.9], np.float32),
               'labels': np.array([1])}}
    b = {'f': {'boxes': np.array([[10.1, 0, -1, 4, 1.6, 1.5, 0], [20, 5, -1, 4, 1.6, 1.5, 0]], np.float32),
               'scores': np.array([0.6, 0.4], np.float32), 'labels': np.array([1, 1])}}
    m = merge_candidates(a, b)
    np.testing.assert_allclose(sorted(m['f']['scores']), [0.4, 0.9])
    b['f']['scores'][0] = 0.95
    m = merge_candidates(a, b)
    np.testing.assert_allclose(sorted(m['f']['scores']), [0.4, 0.95])
    np.testing.assert_allclose(m['f']['boxes'][np.argmax(m['f']['scores'])][0], 10.1, atol=1e-5)


def test_refresh_pseudo_bank_keeps_labelled_part(setup):
    root, pool, summaries, banks = setup
    new = {f: s for f, s in fake_pool_summaries(root, pool.unlabelled).items()}
    for s in new.values():
        s.scores = np.minimum(s.scores * 1.1, 1.0).astype(np.float32)
    fresh = refresh_pseudo_bank(banks, root, new, seed=0)
    assert [o.box.tolist() for o in fresh.objects if o.kind == 'gt'] == \
        [o.box.tolist() for o in banks.objects if o.kind == 'gt']
    for f, c in fresh.candidates.items():
        assert c['scores'].max() >= banks.candidates[f]['scores'].max() - 1e-6


def test_cpsp_dataset(setup, tmp_path):
    root, _, _, banks = setup
    bank_file = tmp_path / 'banks.pkl'
    banks.save(bank_file)
    extra = ('DATASET: CPSPDataset\n'
             'DATA_AUGMENTOR:\n    DISABLE_AUG_LIST: []\n    AUG_CONFIG_LIST:\n'
             "        - NAME: random_world_flip\n          ALONG_AXIS_LIST: ['x']\n"
             f'CPSP:\n    BANK_FILE: {bank_file}\n    NUM_SCENES: 4\n'
             '    OBJECTS_PER_SCENE: {Car: 8, Pedestrian: 4, Cyclist: 4}\n'
             '    NEGATIVES_PER_SCENE: 2\n    LABELLED_FRAME_SHARE: 0.25\n    SEED: 3\n')
    cfg = tiny_data_cfg(tmp_path, root, extra)
    from pcdet_ext.datasets import build_dataset
    from pcdet_ext.config import find_unused_keys
    ds = build_dataset(cfg, CLASSES, training=False)
    assert isinstance(ds, CPSPDataset) and len(ds) == 4
    assert [p for p, _ in find_unused_keys(cfg)] == []
    item = ds[1]
    assert item['voxels'].shape[0] > 0 and item['gt_boxes'].shape[1] == 8
    np.testing.assert_array_equal(ds[1]['voxels'], item['voxels'])
    epoch0 = [(ds.scene(i)['frame_id'], len(ds.scene(i)['points'])) for i in range(4)]
    ds.set_epoch(1)
    assert [(ds.scene(i)['frame_id'], len(ds.scene(i)['points'])) for i in range(4)] != epoch0
    rot = build_dataset(tiny_data_cfg(tmp_path, root, extra + '    OBJECT_ROTATION: 0.3\n'), CLASSES, training=False)
    assert rot.object_rotation == 0.3 and len(rot[1]['gt_boxes']) > 0
    for bad_rot in ('-0.1', '4.0', 'True', 'abc'):
        with pytest.raises(ValueError, match='OBJECT_ROTATION'):
            CPSPDataset(tiny_data_cfg(tmp_path, root, extra + f'    OBJECT_ROTATION: {bad_rot}\n'), CLASSES)
    bad = tiny_data_cfg(tmp_path, root, extra.replace('random_world_flip', 'gt_sampling'))
    with pytest.raises(ValueError, match='gt_sampling'):
        CPSPDataset(bad, CLASSES, training=True)


def test_high_threshold_floor_leaves_doubtful_boxes_out(setup):
    """Above the floor: pseudo objects; below the 2-means boundary: negatives; in between: neither,
    but still cut out of the background."""
    root, pool, summaries, _ = setup
    oracle = LabelOracle(root, CLASSES, labelled=pool.labelled)
    plain = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0)
    floored = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0, min_high_thresh=0.99)
    assert floored.boundaries == plain.boundaries == plain.thresholds
    assert all(t == max(0.99, floored.boundaries[c]) for c, t in floored.thresholds.items())
    assert not [o for o in floored.objects if o.kind == 'pseudo']
    assert [o for o in plain.objects if o.kind == 'pseudo'], 'the fixture should have pseudo objects'
    assert [(o.frame_id, o.box.tolist()) for o in floored.negatives] == \
        [(o.frame_id, o.box.tolist()) for o in plain.negatives]
    for o in floored.negatives:
        assert o.score < floored.boundaries[o.name]
    for a, b in zip(plain.backgrounds, floored.backgrounds):
        np.testing.assert_array_equal(a['remove_boxes'], b['remove_boxes'])
    with pytest.raises(ValueError, match='min_high_thresh'):
        build_banks(root, oracle, pool.labelled, summaries, CLASSES, min_high_thresh=1.5)


def test_candidates_per_frame_are_capped_through_refreshes(setup):
    root, pool, summaries, _ = setup
    oracle = LabelOracle(root, CLASSES, labelled=pool.labelled)
    banks = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0, max_candidates=3)
    for f, c in banks.candidates.items():
        full = summaries[f].scores[summaries[f].scores >= banks.low_thresh]
        assert len(c['scores']) == min(3, len(full))
        np.testing.assert_allclose(sorted(c['scores']), sorted(full)[-len(c['scores']):] if len(full) else [])
    # A refresh from a model that fires 12 low-score boxes per frame, none matching the old ones.
    noisy = {f: hand_summary(f, np.linspace(0.15, 0.3, 12), x0=30.0) for f in pool.unlabelled}
    for _ in range(3):
        banks = refresh_pseudo_bank(banks, root, noisy, seed=0)
        assert banks.max_candidates == 3
        assert max(len(c['scores']) for c in banks.candidates.values()) <= 3
        assert max(len(b['remove_boxes']) for b in banks.backgrounds if b['source'] == 'pseudo') <= 3


def test_boxes_over_empty_space_do_not_evict_real_candidates(setup):
    """A refresh model firing high-score boxes where there are no points: those boxes never become
    candidates, so under the cap the earlier real candidates stay."""
    root, pool, summaries, _ = setup
    oracle = LabelOracle(root, CLASSES, labelled=pool.labelled)
    banks = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0, max_candidates=3)
    junk = {}
    for f in pool.unlabelled:
        s = hand_summary(f, np.full(8, 0.95), x0=60.0)     # 60 m ahead, outside the scans' points
        s.box_num_points = np.zeros(8, dtype=np.int64)
        junk[f] = s
    fresh = refresh_pseudo_bank(banks, root, junk, seed=0)
    for f, c in banks.candidates.items():
        np.testing.assert_array_equal(fresh.candidates[f]['boxes'], c['boxes'])
    assert [o.box.tolist() for o in fresh.objects] == [o.box.tolist() for o in banks.objects]


def test_negative_cap_keeps_only_low_scores_as_negatives(setup):
    """NEGATIVE_MAX_THRESH: negatives are the boundary's negatives scoring below the cap; the boxes
    above it are still cut out of the backgrounds, and the pseudo objects do not change."""
    root, pool, summaries, _ = setup
    oracle = LabelOracle(root, CLASSES, labelled=pool.labelled)
    plain = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0)
    cap = float(np.median([o.score for o in plain.negatives]))
    capped = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0, negative_max_thresh=cap)
    assert capped.negative_max_thresh == cap and capped.boundaries == plain.boundaries
    assert [(o.frame_id, o.box.tolist(), o.kind) for o in capped.objects] == \
        [(o.frame_id, o.box.tolist(), o.kind) for o in plain.objects]
    below = [(o.frame_id, o.box.tolist()) for o in plain.negatives if o.score < cap]
    assert 0 < len(below) < len(plain.negatives)
    assert [(o.frame_id, o.box.tolist()) for o in capped.negatives] == below
    for a, b in zip(plain.backgrounds, capped.backgrounds):
        np.testing.assert_array_equal(a['remove_boxes'], b['remove_boxes'])
    # a cap above every boundary changes nothing
    loose = build_banks(root, oracle, pool.labelled, summaries, CLASSES, seed=0, negative_max_thresh=1.0)
    assert len(loose.negatives) == len(plain.negatives)
    assert refresh_pseudo_bank(capped, root, summaries, seed=0).negative_max_thresh == cap
    for bad in (-0.1, 1.5, True, '0.2'):
        with pytest.raises(ValueError, match='NEGATIVE_MAX_THRESH must be null'):
            build_banks(root, oracle, pool.labelled, summaries, CLASSES, negative_max_thresh=bad)


def test_background_threshold_cuts_low_boxes_from_backgrounds_only(setup):
    """Boxes between BACKGROUND_THRESH and LOW_THRESH are cut out of the pseudo backgrounds (with the
    margin in length and width) and are neither objects nor negatives."""
    root, pool, summaries, _ = setup
    oracle = LabelOracle(root, CLASSES, labelled=pool.labelled)
    low = {f: FrameSummary(f, s.boxes, s.scores * np.where(np.arange(s.num_boxes) % 2, 0.1, 1.0), s.labels,
                           s.cls_probs, s.box_features, s.frame_feature, s.box_num_points)
           for f, s in summaries.items()}  # every second box scored 10x lower
    plain = build_banks(root, oracle, pool.labelled, low, CLASSES, seed=0)
    wide = build_banks(root, oracle, pool.labelled, low, CLASSES, seed=0, background_thresh=0.0,
                       background_margin=0.6)
    assert cut_threshold(plain) == 0.1 and cut_threshold(wide) == 0.0
    assert wide.boundaries == plain.boundaries
    assert [(o.frame_id, o.box.tolist(), o.kind) for o in wide.objects] == \
        [(o.frame_id, o.box.tolist(), o.kind) for o in plain.objects]
    assert [(o.frame_id, o.box.tolist()) for o in wide.negatives] == \
        [(o.frame_id, o.box.tolist()) for o in plain.negatives]
    assert all(o.score >= 0.1 for o in wide.negatives)
    extra = 0
    for a, b in zip(plain.backgrounds, wide.backgrounds):
        if a['source'] != 'pseudo':
            np.testing.assert_array_equal(a['remove_boxes'], b['remove_boxes'])  # labelled: unchanged
            continue
        s = low[b['frame_id']]
        k = (s.scores >= 0.0) & (s.box_num_points >= 5)
        assert len(b['remove_boxes']) == k.sum() and len(a['remove_boxes']) == ((s.scores >= 0.1) & k).sum()
        np.testing.assert_allclose(b['remove_boxes'][:, 3:6], s.boxes[k, 3:6] + [0.6, 0.6, 0.2], atol=1e-5)
        extra += len(b['remove_boxes']) - len(a['remove_boxes'])
        pts = frame_points(root, b['frame_id'])
        assert len(remove_points_in_boxes(pts, b['remove_boxes'])) <= \
            len(remove_points_in_boxes(pts, a['remove_boxes']) if len(a['remove_boxes']) else pts)
    assert extra > 0, 'the fixture should have boxes below LOW_THRESH'
    kept = refresh_pseudo_bank(wide, root, low, seed=0)
    assert (kept.background_thresh, kept.background_margin) == (0.0, 0.6)
    for bad in ({'background_thresh': 1.5}, {'background_thresh': True}, {'background_margin': -0.1}):
        with pytest.raises(ValueError, match='BACKGROUND_'):
            build_banks(root, oracle, pool.labelled, low, CLASSES, **bad)

