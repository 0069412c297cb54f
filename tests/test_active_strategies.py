"""Query strategies on hand-made summaries: reproducible, budget-respecting, and each has the
property it claims."""
import numpy as np
import pytest

from _active_helpers import hand_summary
from pcdet_ext.active import FrameSummary, build_strategy, strategy_names
from pcdet_ext.active.strategies import CAL, cut_at_budget, gradient_embedding, merge_model_summaries

ALL = ['random', 'entropy', 'mc_dropout', 'coreset', 'badge', 'crb', 'cal']


def _with_passes(s: FrameSummary, spread: float, k: int = 4, seed: int = 0) -> FrameSummary:
    rng = np.random.default_rng(seed)
    s.mc_passes = [{'boxes': s.boxes.copy(), 'labels': s.labels.copy(),
                    'scores': np.clip(s.scores + rng.normal(0, spread, s.num_boxes), 0, 1)} for _ in range(k)]
    return s


def _pool(n=24, seed=0):
    """Frames with 1-5 boxes, random scores, classes and features (and MC passes)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        k = int(rng.integers(1, 6))
        s = hand_summary(f'{i:06d}', rng.uniform(0.1, 1.0, k), labels=rng.integers(1, 4, k),
                         feat=rng.normal(size=4))
        s.box_features = s.box_features + rng.normal(0, 0.3, s.box_features.shape).astype(np.float32)
        s.box_num_points = rng.integers(5, 300, k)
        out[s.frame_id] = _with_passes(s, spread=rng.uniform(0, 0.3), seed=i)
    return out


def test_registry_names_and_unknown_strategy():
    assert {'Random', 'Entropy', 'MCDropout', 'Coreset', 'BADGE', 'CRB', 'CAL'} <= set(strategy_names())
    with pytest.raises(ValueError, match='unknown query strategy'):
        build_strategy('entropyy')
    with pytest.raises(ValueError, match='unknown option'):
        build_strategy('coreset', reserve_factr=2)


@pytest.mark.parametrize('name', ALL)
def test_reproducible_and_budget_respecting(name):
    pool = _pool()
    a = build_strategy(name).select(pool, None, 12, np.random.default_rng(5))
    b = build_strategy(name).select(pool, None, 12, np.random.default_rng(5))
    assert a.to_dict() == b.to_dict()
    assert sorted(a.ranked) == sorted(pool)
    exp = [a.expected_boxes[f] for f in a.frame_ids]
    assert sum(exp) >= 12 and sum(exp[:-1]) < 12  # the cut is the shortest prefix reaching the budget
    assert a.expected_boxes[a.frame_ids[0]] == pytest.approx(float(pool[a.frame_ids[0]].scores.sum()))


@pytest.mark.parametrize('name', ALL)
def test_bad_input_is_a_clear_error(name):
    s = build_strategy(name)
    with pytest.raises(ValueError, match='empty'):
        s.select({}, None, 10, 0)
    with pytest.raises(ValueError, match='budget'):
        s.select(_pool(4), None, 0, 0)


def test_entropy_prefers_half_scores():
    pool = {'sure': hand_summary('sure', [0.99] * 4), 'unsure': hand_summary('unsure', [0.5] * 4)}
    sel = build_strategy('entropy').select(pool, None, 2, 0)
    assert sel.frame_ids == ['unsure']
    assert sel.scores['unsure'] > sel.scores['sure']


def test_mc_dropout_prefers_unstable_frames():
    pool = {'stable': _with_passes(hand_summary('stable', [0.6] * 3), 0.0),
            'shaky': _with_passes(hand_summary('shaky', [0.6] * 3), 0.3)}
    sel = build_strategy('mc_dropout').select(pool, None, 1, 0)
    assert sel.frame_ids[0] == 'shaky' and sel.scores['stable'] == pytest.approx(0.0)
    with pytest.raises(ValueError, match='stochastic passes'):
        build_strategy('mc_dropout').select({'x': hand_summary('x', [0.5])}, None, 1, 0)


def test_coreset_covers_far_apart_features():
    # three tight clusters; the labelled set already covers cluster A
    centres = {'A': np.array([0.0, 0, 0, 0]), 'B': np.array([10.0, 0, 0, 0]), 'C': np.array([0.0, 10, 0, 0])}
    rng = np.random.default_rng(0)
    pool, labelled = {}, {}
    for c, mu in centres.items():
        for j in range(4):
            f = f'{c}{j}'
            pool[f] = hand_summary(f, [1.0], feat=mu + rng.normal(0, 0.1, 4))
    labelled['L'] = hand_summary('L', [1.0], feat=centres['A'])
    sel = build_strategy('coreset').select(pool, labelled, 2, 0)
    assert sorted(f[0] for f in sel.frame_ids) == ['B', 'C']


def test_badge_embedding_and_spread():
    p = np.array([[0.7, 0.2, 0.1]])
    f = np.array([[1.0, 2.0]])
    g = gradient_embedding(p, f).reshape(3, 2)
    np.testing.assert_allclose(g, [[-0.3, -0.6], [0.2, 0.4], [0.1, 0.2]])
    # two identical frames and one different: BADGE does not pick both duplicates first
    pool = {'a': hand_summary('a', [0.6, 0.6], feat=[1, 0, 0, 0]), 'a2': hand_summary('a2', [0.6, 0.6], feat=[1, 0, 0, 0]),
            'b': hand_summary('b', [0.6, 0.6], feat=[0, 1, 0, 0])}
    sel = build_strategy('badge').select(pool, None, 2, 0)
    assert set(sel.frame_ids[:2]) in ({'a', 'b'}, {'a2', 'b'})


def test_crb_prefers_class_diverse_frames():
    pool = {}
    for i in range(6):
        pool[f'mono{i}'] = hand_summary(f'mono{i}', [0.8] * 3, labels=[1, 1, 1], feat=np.eye(4)[i % 4])
        pool[f'mix{i}'] = hand_summary(f'mix{i}', [0.8] * 3, labels=[1, 2, 3], feat=np.eye(4)[i % 4])
    sel = build_strategy('crb', k1=1.0, k2=1.0).select(pool, None, 4, 0)
    assert all(f.startswith('mix') for f in sel.frame_ids)
    assert sel.info['stage1'] >= len(sel.frame_ids)


def test_cal_respects_class_quotas():
    # car frames are more uncertain (0.5) than pedestrian frames (0.625); entropy would take
    # only cars, CAL (quota 10 + 10 for budget 20 over two classes) takes half of each
    pool = {}
    for i in range(10):
        pool[f'car{i}'] = hand_summary(f'car{i}', [0.5] * 5, labels=[1] * 5, feat=np.eye(4)[i % 4], num_class=2)
        pool[f'ped{i}'] = hand_summary(f'ped{i}', [0.625] * 4, labels=[2] * 4, feat=np.eye(4)[i % 4], num_class=2)
    ent = build_strategy('entropy').select(pool, None, 20, 0)
    assert all(f.startswith('car') for f in ent.frame_ids)
    sel = build_strategy('cal', class_names=['Car', 'Pedestrian'], diversity_thresh=0.0).select(pool, None, 20, 0)
    per_class = np.sum([pool[f].expected_per_class(2) for f in sel.frame_ids], axis=0)
    assert np.all(per_class <= np.array(sel.info['quotas']) + 1e-6)
    # a quota is never exceeded by more than one frame's boxes, even when the budget is odd
    odd = build_strategy('cal', class_names=['Car', 'Pedestrian'], diversity_thresh=0.0).select(pool, None, 17, 0)
    odd_pc = np.sum([pool[f].expected_per_class(2) for f in odd.frame_ids], axis=0)
    assert np.all(odd_pc < np.array(odd.info['quotas']) + 2.5 + 1e-6)
    assert per_class.sum() >= 20
    assert sum(f.startswith('car') for f in sel.frame_ids) == 4
    # custom shares move the quotas
    sel2 = build_strategy('cal', class_names=['Car', 'Pedestrian'], class_shares={'Car': 0.5, 'Pedestrian': 0.5},
                          diversity_thresh=0.0).select(pool, None, 20, 0)
    assert sel2.frame_ids == sel.frame_ids


def _car_world(n=8):
    """Every frame has cars. 'cars{i}': 4 cars (0.5); 'mixed{i}': 2 cars + 2 pedestrians (0.6, less
    uncertain, so entropy ranks every car-only frame first)."""
    pool = {}
    for i in range(n):
        pool[f'cars{i}'] = hand_summary(f'cars{i}', [0.5] * 4, labels=[1] * 4, feat=np.eye(4)[i % 4], num_class=2)
        pool[f'mixed{i}'] = hand_summary(f'mixed{i}', [0.6] * 4, labels=[1, 1, 2, 2], feat=np.eye(4)[i % 4],
                                         num_class=2)
    return pool


def test_cal_balance_fills_what_the_labelled_set_lacks():
    """Quotas from the labelled counts: a labelled set of 30 cars and no pedestrian, budget 12,
    targets 21 per class, so every quota goes to pedestrians and CAL takes mixed frames (although
    less uncertain); quotas from the budget alone (6 + 6) take car-only frames first."""
    pool = _car_world()
    names = ['Car', 'Pedestrian']
    by_labels = CAL(class_names=names, diversity_thresh=0.0).select(pool, None, 12, 0, {'Car': 30, 'Pedestrian': 0})
    np.testing.assert_allclose(by_labels.info['quotas'], [0.0, 12.0])
    assert by_labels.info['quota_base'] == 'labelled'
    assert by_labels.frame_ids and all(f.startswith('mixed') for f in by_labels.frame_ids)
    by_budget = CAL(class_names=names, diversity_thresh=0.0).select(pool, None, 12, 0)
    np.testing.assert_allclose(by_budget.info['quotas'], [6.0, 6.0])
    assert by_budget.info['quota_base'] == 'budget' and by_budget.frame_ids[0].startswith('cars')
    # balance 'budget' ignores the counts; a balanced labelled set gives the budget's own quotas
    same = CAL(class_names=names, diversity_thresh=0.0, balance='budget').select(pool, None, 12, 0,
                                                                                  {'Car': 30, 'Pedestrian': 0})
    assert same.frame_ids == by_budget.frame_ids
    even = CAL(class_names=names, diversity_thresh=0.0).select(pool, None, 12, 0, {'Car': 5, 'Pedestrian': 5})
    np.testing.assert_allclose(even.info['quotas'], [6.0, 6.0])
    # the quotas add up to the budget whatever the gaps
    skew, base = CAL(class_names=['Car', 'Pedestrian', 'Cyclist'], diversity_thresh=0.0)._quotas(
        3, 10, {'Car': 40, 'Pedestrian': 1, 'Cyclist': 0})
    assert base == 'labelled'
    assert skew.sum() == pytest.approx(10) and skew[0] == 0 and skew[2] > skew[1] > 0


def test_cal_balance_takes_mixed_frames_once_the_car_quota_is_met():
    """Quotas 6 + 6 (budget 12). After three car-only frames meet the car quota, the more
    uncertain car-only frames are refused and frames half of whose expected boxes fit the open
    pedestrian quota are accepted, in the same first pass (a rule refusing any frame that holds a
    class at its quota would refuse every frame here: all of them have cars)."""
    pool = _car_world()
    sel = CAL(class_names=['Car', 'Pedestrian'], uncertainty_quantile=0.0, diversity_thresh=0.0).select(pool, None, 12, 0)
    assert sel.frame_ids == ['cars0', 'cars1', 'cars2', 'mixed0', 'mixed1', 'mixed2']
    assert len(sel.info['passes']) == 1 and sel.info['passes'][0]['balance_thresh'] == 0.5
    np.testing.assert_allclose(sel.info['expected_per_class'], [6 + 3 * 1.2, 3 * 1.2])
    # with the balance off, uncertainty alone: every car-only frame first
    off = CAL(class_names=['Car', 'Pedestrian'], uncertainty_quantile=0.0, diversity_thresh=0.0,
              balance_thresh=0.0).select(pool, None, 12, 0)
    assert all(f.startswith('cars') for f in off.frame_ids)


def test_cal_refuses_bad_options_when_built():
    for bad in ({'diversity_relax': 1.0}, {'balance_relax': 1.5}, {'uncertainty_step': 0.0}, {'balance': 'labels'}):
        with pytest.raises(ValueError, match='CAL: '):
            build_strategy('cal', class_names=['Car', 'Pedestrian'], **bad)


def test_cal_merges_two_models_and_reads_disagreement_as_uncertainty():
    a = {'agree': hand_summary('agree', [0.95, 0.95]), 'disagree': hand_summary('disagree', [0.95, 0.95])}
    b = {'agree': hand_summary('agree', [0.95, 0.95]), 'disagree': hand_summary('disagree', [0.95], x0=30.0)}
    merged = merge_model_summaries(a, b)
    np.testing.assert_allclose(merged['agree'].scores, [0.95, 0.95], atol=1e-6)
    assert merged['disagree'].num_boxes == 3  # nothing matched: every box kept at half score
    np.testing.assert_allclose(sorted(merged['disagree'].scores), [0.475] * 3, atol=1e-6)
    sel = CAL(diversity_thresh=0.0).select((a, b), None, 1, 0)
    assert sel.frame_ids[0] == 'disagree'
    with pytest.raises(ValueError, match='different frames'):
        merge_model_summaries(a, {'agree': b['agree']})


def test_cal_diversity_skips_frames_like_the_labelled_ones():
    pool = {'same': hand_summary('same', [0.5] * 2, feat=[1, 0, 0, 0]),
            'new': hand_summary('new', [0.55] * 2, feat=[0, 1, 0, 0])}
    labelled = {'L': hand_summary('L', [0.9], feat=[1, 0, 0, 0])}
    sel = CAL(uncertainty_quantile=0.0).select(pool, labelled, 1, 0)
    assert sel.frame_ids == ['new']
    sel_nodiv = CAL(uncertainty_quantile=0.0, diversity_thresh=0.0).select(pool, labelled, 1, 0)
    assert sel_nodiv.frame_ids == ['same']


def test_cut_and_reserve():
    exp = {'a': 3.0, 'b': 3.0, 'c': 3.0}
    assert cut_at_budget(['a', 'b', 'c'], exp, 5) == 2
    assert cut_at_budget(['a', 'b', 'c'], exp, 100) == 3
    sel = build_strategy('entropy').select({f: hand_summary(f, [0.5] * 4) for f in 'abc'}, None, 2, 0)
    assert len(sel.frame_ids) == 1 and len(sel.reserve) == 2
