"""KITTI protocol on hand-built scenes whose APs are worked out by hand in each test."""
import numpy as np
import pytest

from pcdet_ext.evaluation.kitti import get_official_eval_result
from pcdet_ext.evaluation.kitti.overlaps import compute_overlaps, pack_frames

KEYS = ('image', 'bev', '3d')


def obj(name='Car', x=0.0, z=20.0, ry=0.0, v0=150.0, height=50.0, trunc=0.0, occ=0, u0=None,
        dims=(3.9, 1.5, 1.6), score=None):
    """One object: camera box at (x, 1.6, z), image box of the given height (px)."""
    u0 = 100.0 + 40.0 * x if u0 is None else u0
    o = {'name': name, 'truncated': trunc, 'occluded': occ, 'alpha': ry - np.arctan2(x, z),
         'bbox': [u0, v0, u0 + 60.0, v0 + height], 'dimensions': list(dims),
         'location': [x, 1.6, z], 'rotation_y': ry}
    if score is not None:
        o['score'] = score
    return o


def frame(objs, det=False):
    keys = ('name', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions', 'location',
            'rotation_y') + (('score',) if det else ())
    out = {}
    for k in keys:
        vals = [o[k] for o in objs]
        if k == 'name':
            out[k] = np.array(vals, dtype='<U16')
        elif k in ('bbox', 'dimensions', 'location'):
            out[k] = np.array(vals, dtype=np.float64).reshape(-1, 4 if k == 'bbox' else 3)
        else:
            out[k] = np.array(vals, dtype=np.float64)
    return out


def as_det(o, score, **changes):
    d = dict(o, score=score)
    d.update(changes)
    return d


def perfect(n, name='Car', **kw):
    """n frames, one object each, detected exactly (identical boxes), scores descending."""
    gts = [frame([obj(name, x=float(i % 7), **kw)]) for i in range(n)]
    dts = [frame([as_det(obj(name, x=float(i % 7), **kw), 1.0 - i / (2 * n))], det=True)
           for i in range(n)]
    return gts, dts


def evaluate(gts, dts, cls='Car'):
    return get_official_eval_result(gts, dts, [cls])[1]


def check_all(res, cls, value, diffs=('easy', 'moderate', 'hard'), keys=KEYS, suffixes=('', '_R40')):
    for k in keys:
        for d in diffs:
            for s in suffixes:
                assert res[f'{cls}_{k}/{d}{s}'] == pytest.approx(value, abs=1e-9), f'{cls}_{k}/{d}{s}'


def test_identical_boxes_have_iou_exactly_one():
    gts, dts = perfect(3)
    ov = compute_overlaps(pack_frames(gts, dts))
    for m in (0, 1, 2):
        assert ov[m].min() >= 1 - 1e-12 and ov[m].max() <= 1 + 1e-12


@pytest.mark.parametrize('cls', ['Car', 'Pedestrian', 'Cyclist'])
def test_perfect_detections_score_100(cls):
    gts, dts = perfect(50, cls)
    res = evaluate(gts, dts, cls)
    check_all(res, cls, 100.0)
    check_all(res, cls, 100.0, keys=('aos',))


def test_no_detections_score_0_and_no_aos():
    gts, _ = perfect(50)
    dts = [frame([], det=True) for _ in gts]
    text, res = get_official_eval_result(gts, dts, ['Car'])
    check_all(res, 'Car', 0.0)
    assert 'Car_aos/moderate_R40' not in res and 'aos' not in text


def test_all_false_positives_score_0():
    gts, _ = perfect(50)
    dts = [frame([as_det(obj(x=30.0 + i % 3, u0=900.0), 0.9)], det=True) for i in range(50)]
    check_all(evaluate(gts, dts), 'Car', 0.0)


def test_known_precision_recall_curve():
    """40 cars; by descending score the detections go T F F T T T, the other 36 cars missed.

    Precision after each TP: 1/1, 2/4, 3/5, 4/6. Interpolated (max to the right):
    1, 2/3, 2/3, 2/3, then 0 for the 37 unreached samples (one TP per 1/40 of recall).
    R40 = (2/3 * 3) / 40 = 5 %; R11 uses samples 0, 4, 8, ...: only sample 0 -> 1/11.
    """
    gts = [frame([obj(x=float(i % 5))]) for i in range(40)]
    dts = [frame([], det=True) for _ in range(40)]
    scores = {0: 0.95, 1: 0.6, 2: 0.5, 3: 0.4}           # frames with a TP -> its score
    for i, s in scores.items():
        dts[i] = frame([as_det(obj(x=float(i % 5)), s)], det=True)
    for i, s in ((10, 0.9), (11, 0.8)):                  # the two FPs, far from any car
        dts[i] = frame([as_det(obj(x=-20.0, z=50.0, u0=1000.0), s)], det=True)
    res = evaluate(gts, dts)
    check_all(res, 'Car', 5.0, suffixes=('_R40',))
    check_all(res, 'Car', 100.0 / 11, suffixes=('',))


def test_fewer_than_40_objects_cap_perfect_detections():
    """12 cars, all detected: one threshold per TP -> samples 0..11 have precision 1:
    R40 = 11/40 = 27.5, R11 = samples 0, 4, 8 -> 3/11. Exactly 40 cars still give 39/40."""
    res = evaluate(*perfect(12))
    check_all(res, 'Car', 27.5, suffixes=('_R40',))
    check_all(res, 'Car', 300.0 / 11, suffixes=('',))
    check_all(evaluate(*perfect(40)), 'Car', 97.5, suffixes=('_R40',))


def test_difficulty_filtering():
    """50 easy cars detected, plus 50 hard-only cars (occluded 2) never detected.

    easy / moderate: the occluded cars are ignored -> 100. hard: 100 cars, 50 found at
    precision 1 -> samples for recall 0 .. 0.5 (21 of the 41) are 1: R40 = 20/40 = 50,
    R11 = samples 0, 4, ..., 20 -> 6/11.
    """
    gts, dts = perfect(50)
    for i in range(50):
        gts[i] = frame([obj(x=float(i % 7)), obj(x=-8.0, z=30.0, occ=2, u0=700.0)])
    res = evaluate(gts, dts)
    check_all(res, 'Car', 100.0, diffs=('easy', 'moderate'))
    check_all(res, 'Car', 50.0, diffs=('hard',), suffixes=('_R40',))
    check_all(res, 'Car', 600.0 / 11, diffs=('hard',), suffixes=('',))


def test_low_ground_truth_and_low_detections_are_ignored():
    """Cars 30 px high: not easy (<= 40 px), so easy has no objects (AP 0) and their
    detections (< 40 px) are ignored there; moderate and hard are 100. A top-scored FP
    20 px high is below every difficulty's minimum and never counts."""
    gts, dts = perfect(50, height=30.0)
    dts[0] = frame([dts[0] and as_det(obj(x=0.0, height=30.0), 0.5),
                    as_det(obj(x=-20.0, z=50.0, u0=1000.0, height=20.0), 0.99)], det=True)
    res = evaluate(gts, dts)
    check_all(res, 'Car', 0.0, diffs=('easy',))
    check_all(res, 'Car', 100.0, diffs=('moderate', 'hard'))


def _with_top_fp(cls, fp_bbox, gt_extra, dims=(3.9, 1.5, 1.6)):
    gts, dts = perfect(50, cls, dims=dims)
    gts[0] = frame([obj(cls, x=0.0, dims=dims)] + gt_extra)
    fp = as_det(obj(cls, x=-20.0, z=50.0, dims=dims), 1.5, bbox=fp_bbox)
    dts[0] = frame([as_det(obj(cls, x=0.0, dims=dims), 0.9999), fp], det=True)
    return evaluate(gts, dts, cls)


def dontcare(bbox):
    return obj('DontCare', x=-1000.0, z=-1000.0, ry=-10.0, dims=(-1, -1, -1)) | {
        'bbox': bbox, 'alpha': -10.0}


def test_dontcare_suppresses_image_false_positives_only():
    """50 cars found + one FP scored above all of them: precision k/(k+1) at the k-th
    threshold, interpolated to 50/51 everywhere: AP = 100 * 50/51 (R11 and R40).
    Inside a DontCare region the image-box FP is not counted (AP 100); BEV / 3D have no
    DontCare extent, so they stay at 50/51."""
    fp_box = [900.0, 100.0, 960.0, 150.0]
    res_plain = _with_top_fp('Car', fp_box, [])
    check_all(res_plain, 'Car', 100.0 * 50 / 51, diffs=('moderate',))
    res_dc = _with_top_fp('Car', fp_box, [dontcare([880.0, 90.0, 980.0, 170.0])])
    check_all(res_dc, 'Car', 100.0, diffs=('moderate',), keys=('image',))
    check_all(res_dc, 'Car', 100.0 * 50 / 51, diffs=('moderate',), keys=('bev', '3d'))


def test_dontcare_overlap_uses_the_class_threshold():
    """The FP box lies 0.6 of its own area inside the DontCare box: above Pedestrian's 0.5
    image threshold (suppressed) but below Car's 0.7 (still a false positive)."""
    fp_box = [900.0, 100.0, 960.0, 150.0]
    dc = [dontcare([924.0, 0.0, 1100.0, 300.0])]          # covers x 924..960: 36/60 = 0.6
    ped = (0.8, 1.75, 0.6)
    check_all(_with_top_fp('Pedestrian', fp_box, dc, ped), 'Pedestrian', 100.0,
              diffs=('moderate',), keys=('image',))
    check_all(_with_top_fp('Car', fp_box, dc), 'Car', 100.0 * 50 / 51,
              diffs=('moderate',), keys=('image',))


@pytest.mark.parametrize('cls,neighbour', [('Car', 'Van'), ('Pedestrian', 'Person_sitting')])
def test_neighbour_classes_are_ignored(cls, neighbour):
    """50 objects found, plus 10 top-scored detections of cls on ground truth labelled as the
    neighbour class: ignored (AP 100). On 'Truck' / 'Misc' ground truth the same detections
    are 10 FPs above all TPs: precision k/(k+10), interpolated to 50/60 -> AP 83.33."""
    dims = (0.8, 1.75, 0.6) if cls == 'Pedestrian' else (3.9, 1.5, 1.6)

    def run(other):
        gts, dts = perfect(50, cls, dims=dims)
        for i in range(10):
            g = obj(cls, x=float(i % 7), dims=dims)
            n = obj(other, x=-10.0, z=40.0, u0=800.0, dims=dims)
            gts[i] = frame([g, n])
            dts[i] = frame([as_det(g, 0.99 - i / 1000), as_det(n, 2.0 - i / 1000, name=cls)],
                           det=True)
        return evaluate(gts, dts, cls)

    check_all(run(neighbour), cls, 100.0, diffs=('moderate',))
    check_all(run('Misc'), cls, 100.0 * 50 / 60, diffs=('moderate',))


@pytest.mark.parametrize('offset,turn_box,expected',
                         [(0.0, True, 100.0), (np.pi, True, 0.0), (-np.pi, False, 0.0),
                          (np.pi / 2, False, 50.0)])
def test_aos_with_flipped_headings(offset, turn_box, expected):
    """Turning every detection by pi leaves the boxes (so bbox / BEV / 3D AP 100) but its
    orientation similarity (1 + cos(delta alpha)) / 2 is 0; an alpha off by pi/2 gives 1/2."""
    gts, dts = perfect(50)
    for d in dts:
        if turn_box:
            d['rotation_y'] = d['rotation_y'] + offset
        d['alpha'] = d['alpha'] + offset
    res = evaluate(gts, dts)
    check_all(res, 'Car', 100.0, diffs=('moderate',))
    check_all(res, 'Car', expected, diffs=('moderate',), keys=('aos',))


def test_result_string_format():
    text, res = get_official_eval_result(*perfect(50), ['Car'])
    lines = text.splitlines()
    assert lines[0] == 'Car AP@0.70, 0.70, 0.70:'
    assert lines[1] == 'bbox AP:100.0000, 100.0000, 100.0000'
    assert lines[4] == 'aos  AP:100.00, 100.00, 100.00'
    assert lines[5] == 'Car AP_R40@0.70, 0.70, 0.70:'
    assert 'Car AP@0.70, 0.50, 0.50:' in lines
    assert len(lines) == 20
    for k in ('3d', 'bev', 'image', 'aos'):
        for d in ('easy', 'moderate', 'hard'):
            assert f'Car_{k}/{d}_R40' in res and f'Car_{k}/{d}' in res


def test_bad_input_names_the_frame():
    gts, dts = perfect(3)
    with pytest.raises(ValueError, match='3 frames but dt_annos has 2'):
        get_official_eval_result(gts, dts[:2], ['Car'])
    bad = [dict(d) for d in dts]
    del bad[1]['score']
    with pytest.raises(ValueError, match=r"dt_annos frame 1.*missing key.*score"):
        get_official_eval_result(gts, bad, ['Car'])
    bad = [dict(d) for d in dts]
    bad[2]['score'] = np.array([np.nan])
    with pytest.raises(ValueError, match=r"dt_annos frame 2.*'score' of object 0 is NaN"):
        get_official_eval_result(gts, bad, ['Car'])
    bad = [dict(g) for g in gts]
    bad[0]['bbox'] = np.zeros((1, 3))
    with pytest.raises(ValueError, match=r"gt_annos frame 0.*'bbox' has shape"):
        get_official_eval_result(bad, dts, ['Car'])
    with pytest.raises(ValueError, match='unknown class'):
        get_official_eval_result(gts, dts, ['Tram'])


def test_batched_overlaps_match_per_frame_op_calls(monkeypatch):
    """The chunked, frame-shifted overlap computation equals plain per-frame op calls
    (BEV IoU, and 3D IoU via the op's LiDAR-frame boxes_iou3d), many chunks forced."""
    from pcdet_ext.evaluation.kitti import overlaps as ov_mod
    from pcdet_ext.ops.iou3d_nms import boxes_iou3d, boxes_iou_bev
    monkeypatch.setattr(ov_mod, '_CHUNK_ELEMENTS', 16)
    rng = np.random.default_rng(1)
    gts, dts = [], []
    for f in range(30):
        n, m = rng.integers(0, 6), rng.integers(0, 8)
        g = [obj(x=rng.uniform(-5, 5), z=rng.uniform(5, 15), ry=rng.uniform(-3, 3)) for _ in range(n)]
        d = [as_det(obj(x=rng.uniform(-5, 5), z=rng.uniform(5, 15), ry=rng.uniform(-3, 3)), 0.5)
             for _ in range(m)]
        for o in d:
            o['location'] = [o['location'][0], rng.uniform(1.0, 2.5), o['location'][2]]
        gts.append(frame(g))
        dts.append(frame(d, det=True))
    pack = pack_frames(gts, dts)
    ov = compute_overlaps(pack)

    def lidar_like(a):   # camera (x, y bottom, z, l h w, ry) -> up-axis box for boxes_iou3d
        loc, dim = a['location'], a['dimensions']
        return np.stack([loc[:, 0], loc[:, 2], -(loc[:, 1] - dim[:, 1] / 2), dim[:, 0], dim[:, 2],
                         dim[:, 1], -a['rotation_y']], 1)

    n_pos = 0
    for f, (g, d) in enumerate(zip(gts, dts)):
        blk = slice(pack.pair_off[f], pack.pair_off[f + 1])
        shape = (len(d['name']), len(g['name']))
        if not shape[0] or not shape[1]:
            continue
        bev = np.asarray(boxes_iou_bev(ov_mod.camera_boxes_to_bev(d['location'], d['dimensions'], d['rotation_y']),
                                       ov_mod.camera_boxes_to_bev(g['location'], g['dimensions'], g['rotation_y'])))
        np.testing.assert_allclose(ov[1][blk].reshape(shape), bev, atol=1e-9)
        np.testing.assert_allclose(ov[2][blk].reshape(shape),
                                   np.asarray(boxes_iou3d(lidar_like(d), lidar_like(g))), atol=1e-9)
        n_pos += int((bev > 0).sum())
    assert n_pos > 20
