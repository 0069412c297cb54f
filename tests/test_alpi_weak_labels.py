"""ALPI weak labels: 2D-only readers (the 3D columns are never read) and size priors."""
import logging
import random

import numpy as np
import pytest

from pcdet_ext.alpi.size_priors import DEFAULT_SIZE_PRIORS, SizePriors
from pcdet_ext.alpi.weak_labels import (read_detections_file, read_image_shape, read_kitti_weak_labels,
                                        read_weak_label_dir)

CAR = 'Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59'
PED = 'Pedestrian 0.00 2 0.21 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01'


def _records(labels):
    return [(l.frame_id, l.obj_index, l.cls, tuple(l.box2d), l.truncation, l.occlusion, l.score)
            for l in labels]


def _scramble_3d(line: str, rng: random.Random, mode: str) -> str:
    t = line.split()
    if mode == 'unknown':  # what users without 3D labels write
        t[3] = '-10'
        t[8:15] = ['-1', '-1', '-1', '-1000', '-1000', '-1000', '-10']
    else:  # garbage, including non-numbers, in alpha and every 3D column
        t[3] = rng.choice(['nan', 'x', '1e400', str(rng.uniform(-9, 9))])
        t[8:15] = [rng.choice(['abc', 'nan', '-inf', str(rng.uniform(-1e3, 1e3))]) for _ in range(7)]
    return ' '.join(t)


def test_real_label_files_ignore_3d_columns(kitti_real, tmp_path):
    """Scrambling alpha and columns 8-14 of real label files changes nothing."""
    label_dir = kitti_real / 'training' / 'label_2'
    rng = random.Random(0)
    total = 0
    for path in sorted(label_dir.glob('*.txt')):
        shape = read_image_shape(str(kitti_real / 'training' / 'image_2' / f'{path.stem}.png'))
        ref, rep = read_kitti_weak_labels(str(path), image_shape=shape)
        assert rep.skipped.get('malformed', 0) == 0
        for mode in ('unknown', 'garbage'):
            lines = [_scramble_3d(l, rng, mode) for l in path.read_text().splitlines() if l.strip()]
            p2 = tmp_path / f'{mode}_{path.name}'
            p2.write_text('\n'.join(lines) + '\n')
            got, _ = read_kitti_weak_labels(str(p2), frame_id=path.stem, image_shape=shape)
            assert _records(got) == _records(ref), (path.name, mode)
        total += len(ref)
    assert total == 21 + 10 + 3  # Car, Pedestrian, Cyclist objects of the 11 frames (PROVENANCE.md)


def test_fields_and_other_classes(tmp_path):
    p = tmp_path / '000042.txt'
    p.write_text('\n'.join([CAR, 'Van 0.00 0 0 10 10 50 50 1 1 1 1 1 1 1',
                            'DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10',
                            PED]) + '\n')
    labels, rep = read_kitti_weak_labels(str(p))
    assert [l.cls for l in labels] == ['Car', 'Pedestrian']
    assert [l.obj_index for l in labels] == [0, 3]  # the line's position, stable under skips
    car = labels[0]
    assert car.frame_id == '000042' and car.score == 1.0 and car.occlusion == 0
    np.testing.assert_allclose(car.box2d, [587.01, 173.33, 614.12, 200.12])
    assert labels[1].occlusion == 2
    assert rep.kept == 2 and rep.skipped == {'other_class': 2} and rep.messages == []


def test_bad_lines_skipped_counted_and_named(tmp_path, caplog):
    p = tmp_path / '000001.txt'
    p.write_text('\n'.join([
        CAR,
        'Car 0.00 0 -1 100 50 90 80 1 1 1 1 1 1 1',          # 2: x2 < x1 (degenerate)
        'Car 0.00 0 -1 1300 50 1400 80 1 1 1 1 1 1 1',       # 3: right of the 1242 px image
        'Bus 0.00 0 -1 10 10 50 50 1 1 1 1 1 1 1',           # 4: unknown class
        'Car 0.00 zero -1 10 10 50 50 1 1 1 1 1 1 1',        # 5: malformed occlusion
        'Car 0.00 0 -1 10 10',                               # 6: too few columns
        'Car 0.00 0 -1 10 10 nan 50 1 1 1 1 1 1 1',          # 7: NaN box
        'Car 0.30 1 -1 -20 100 60 150 1 1 1 1 1 1 1',        # 8: partly outside: clipped, kept
    ]) + '\n')
    with caplog.at_level(logging.WARNING, logger='pcdet_ext.alpi'):
        labels, rep = read_kitti_weak_labels(str(p), image_shape=(375, 1242))
    assert len(labels) == 2 and rep.kept == 2
    np.testing.assert_allclose(labels[1].box2d, [0, 100, 60, 150])
    assert rep.skipped == {'degenerate_box': 1, 'outside_image': 1, 'unknown_class': 1, 'malformed': 3}
    for lineno in (2, 3, 4, 5, 6, 7):
        assert any(f'{p}:{lineno}:' in m for m in rep.messages), lineno
    assert "'Bus'" in caplog.text


def test_missing_file_and_missing_prior(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        read_kitti_weak_labels(str(tmp_path / 'nope.txt'))
    p = tmp_path / 'a.txt'
    p.write_text('Van 0.00 0 0 10 10 50 50 1 1 1 1 1 1 1\n')
    labels, rep = read_kitti_weak_labels(str(p), class_names=['Car', 'Van'])
    assert labels == [] and rep.skipped == {'unknown_class': 1}
    assert 'no size prior' in rep.messages[0] and 'SIZE_PRIORS' in rep.messages[0]


def test_kitti_format_detections_with_score(tmp_path):
    p = tmp_path / '000003.txt'
    p.write_text(CAR + ' 0.87\n' + PED + ' 0.12\n' + CAR + '\n')
    labels, rep = read_kitti_weak_labels(str(p), min_score=0.2)
    assert [(l.cls, l.score) for l in labels] == [('Car', pytest.approx(0.87)), ('Car', 1.0)]
    assert rep.skipped == {'low_score': 1}
    labels, rep = read_kitti_weak_labels(str(p), require_score=True)
    assert len(labels) == 2 and rep.skipped == {'malformed': 1} and f'{p}:3' in rep.messages[0]


def test_detections_file(tmp_path):
    p = tmp_path / 'dets.txt'
    p.write_text('\n'.join([
        '# frame class x1 y1 x2 y2 score',
        '000001 Car 100 120 180 170 0.9',
        '1 Pedestrian 300 100 330 190 0.6',                   # id normalised to 000001
        '000002 Cyclist 10 20 40 90 0.7   # trailing comment',
        '000002 Car 10 20 40',                               # 5: malformed (5 columns)
        '000002 Car 10 20 forty 90 0.5',                     # 6: malformed number
        '000002 Truck 10 20 40 90 0.5',                      # known, unselected: quiet
        '000003 Car 2000 20 2100 90 0.5',                    # 8: outside the image
        '',
    ]))
    dets, rep = read_detections_file(str(p), image_shapes={'000001': (375, 1242), '000002': (375, 1242),
                                                           '000003': (375, 1242)})
    assert sorted(dets) == ['000001', '000002']
    assert [(l.cls, l.obj_index) for l in dets['000001']] == [('Car', 0), ('Pedestrian', 1)]
    cyc = dets['000002'][0]
    assert cyc.score == pytest.approx(0.7) and cyc.truncation == -1 and cyc.occlusion == -1
    assert rep.kept == 3
    assert rep.skipped == {'malformed': 2, 'other_class': 1, 'outside_image': 1}
    assert any(f'{p}:5:' in m for m in rep.messages) and any(f'{p}:8:' in m for m in rep.messages)


def test_label_dir_reader(kitti_real):
    labels, rep = read_weak_label_dir(str(kitti_real / 'training' / 'label_2'), ['000000', '000076'],
                                      image_dir=str(kitti_real / 'training' / 'image_2'))
    assert [l.cls for l in labels['000000']] == ['Pedestrian']
    assert len(labels['000076']) == 9 and rep.kept == 10


def test_size_priors_defaults_override_and_errors():
    pri = SizePriors()
    assert pri['Car'].mean == (3.89, 1.62, 1.53) and pri['Pedestrian'].std == (0.23, 0.14, 0.11)
    assert pri['Cyclist'] == DEFAULT_SIZE_PRIORS['Cyclist']
    pri = SizePriors({'Car': {'MEAN': [4.0, 1.7, 1.5], 'STD': [0.4, 0.1, 0.1]},
                      'Van': [[5.0, 1.9, 2.2], [0.5, 0.2, 0.25]]})
    assert pri['Car'].mean == (4.0, 1.7, 1.5) and 'Van' in pri and 'Pedestrian' in pri
    mean, std = pri.tensors(['Van', 'Car'])
    assert mean.shape == (2, 3) and float(mean[0, 0]) == 5.0 and float(std[1, 0]) == pytest.approx(0.4)
    assert SizePriors({'Van': [[5, 2, 2], [1, 1, 1]]}, use_defaults=False).names() == ['Van']
    with pytest.raises(ValueError, match=r'SIZE_PRIORS.Car.STD.*> 0'):
        SizePriors({'Car': {'MEAN': [4, 1.7, 1.5], 'STD': [0.4, 0, 0.1]}})
    with pytest.raises(ValueError, match=r'SIZE_PRIORS.Car: unknown keys \[.MEEN.\]'):
        SizePriors({'Car': {'MEEN': [4, 1.7, 1.5], 'STD': [0.4, 0.1, 0.1]}})
    with pytest.raises(ValueError, match=r'SIZE_PRIORS.Car.MEAN: expected 3 numbers'):
        SizePriors({'Car': {'MEAN': [4, 1.7], 'STD': [0.4, 0.1, 0.1]}})
    with pytest.raises(ValueError, match=r"no size prior for classes \['Tram'\]"):
        SizePriors().require(['Car', 'Tram'])
    with pytest.raises(KeyError, match='Tram'):
        SizePriors()['Tram']
