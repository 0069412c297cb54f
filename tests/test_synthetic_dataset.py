"""Synthetic dataset writer: determinism, independence of frames, resume, splits, speed."""
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from pcdet_ext.datasets.synthetic import (frame_rng, generate_dataset, generate_frame, split_frames,
                                          write_frame)
from pcdet_ext.geometry import Calibration

N = 3


def _digest(root: Path) -> dict:
    """{relative path: sha1} of every file under training/ and ImageSets/."""
    out = {}
    for p in sorted(root.rglob('*')):
        if p.is_file() and p.name != 'synthetic_meta.json':
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn_ref')
    summary = generate_dataset(root, N, seed=0, val_fraction=0.34, progress=False)
    return root, summary


def test_layout_and_summary(ref):
    root, summary = ref
    tr = root / 'training'
    for i in range(N):
        fid = f'{i:06d}'
        for sub, ext in (('velodyne', 'bin'), ('calib', 'txt'), ('label_2', 'txt'), ('image_2', 'png'),
                         ('planes', 'txt')):
            assert (tr / sub / f'{fid}.{ext}').is_file(), (sub, fid)
        pts = np.fromfile(tr / 'velodyne' / f'{fid}.bin', dtype=np.float32).reshape(-1, 4)
        assert 60_000 < len(pts) < 140_000
        assert np.isfinite(pts).all() and pts[:, 3].min() >= 0 and pts[:, 3].max() < 1
        calib = Calibration(str(tr / 'calib' / f'{fid}.txt'))  # real KITTI values, parsed back
        assert calib.P2[0, 0] == pytest.approx(721.5377)
        for line in (tr / 'label_2' / f'{fid}.txt').read_text().splitlines():
            cols = line.split()
            assert len(cols) == 15 and cols[0] in ('Car', 'Pedestrian', 'Cyclist')
            assert 0 <= float(cols[1]) <= 1 and cols[2] in '0123'
    assert summary['written'] == N and summary['skipped'] == 0
    assert summary['splits'] == {'train': 2, 'val': 1, 'trainval': 3, 'test': 0}
    assert summary['points_per_frame'] > 60_000
    assert not list(root.rglob('*.tmp*'))


def test_imagesets(ref):
    root, _ = ref
    read = lambda n: (root / 'ImageSets' / f'{n}.txt').read_text().split()
    train, val = set(read('train')), set(read('val'))
    assert train and val and not train & val
    assert train | val == set(read('trainval')) == {f'{i:06d}' for i in range(N)}
    assert read('test') == []


def test_split_exact_and_stable():
    tr, va = split_frames(100, 0, 0.25)
    assert len(va) == 25 and len(tr) == 75 and not set(tr) & set(va)
    assert split_frames(100, 0, 0.25) == (tr, va)
    assert split_frames(100, 1, 0.25)[1] != va


def test_same_seed_same_bytes_other_seed_differs(ref, tmp_path):
    root, _ = ref
    again = tmp_path / 'again'
    generate_dataset(again, N, seed=0, val_fraction=0.34, progress=False)
    assert _digest(again) == _digest(root)
    other = tmp_path / 'other'
    write_frame(other, 0, seed=1, write_images=False)
    a = (root / 'training' / 'velodyne' / '000000.bin').read_bytes()
    b = (other / 'training' / 'velodyne' / '000000.bin').read_bytes()
    assert a != b
    assert (root / 'training/label_2/000000.txt').read_text() != (other / 'training/label_2/000000.txt').read_text()


def test_frames_are_independent():
    """Frame 2 does not depend on frames 0 and 1 having been drawn first."""
    alone = generate_frame(0, 2)
    _ = generate_frame(0, 0)
    via_rng = generate_frame(frame_rng(0, 2), 2)
    assert np.array_equal(alone['points'], via_rng['points'])
    assert alone['labels_text'] == via_rng['labels_text']
    assert not np.array_equal(alone['points'][:100], generate_frame(0, 1)['points'][:100])


def test_resume_after_partial_generation(ref, tmp_path):
    root, _ = ref
    part = tmp_path / 'part'
    generate_dataset(part, N, seed=0, val_fraction=0.34, progress=False)
    # a killed run: frame 1 lost its label (written last) and left a temporary behind
    (part / 'training/label_2/000001.txt').unlink()
    (part / 'training/velodyne/000001.bin.tmp999').write_bytes(b'junk')
    (part / 'training/velodyne/000002.bin').unlink()
    summary = generate_dataset(part, N, seed=0, val_fraction=0.34, progress=False)
    assert summary['written'] == 2 and summary['skipped'] == 1
    assert _digest(part) == _digest(root)


def test_resume_refuses_other_seed(ref):
    root, _ = ref
    with pytest.raises(ValueError, match='seed'):
        generate_dataset(root, N, seed=5, progress=False)


@pytest.mark.parametrize('kwargs, msg', [(dict(num_frames=0), 'num_frames'),
                                         (dict(num_frames=2, val_fraction=1.5), 'val_fraction'),
                                         (dict(num_frames=2, workers=0), 'workers'),
                                         (dict(num_frames=2, seed=-1), 'seed')])
def test_bad_arguments(tmp_path, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        generate_dataset(tmp_path / 'x', progress=False, **kwargs)


def test_parallel_workers_match_serial(ref, tmp_path):
    root, _ = ref
    par = tmp_path / 'par'
    generate_dataset(par, N, seed=0, val_fraction=0.34, workers=2, progress=False)
    assert _digest(par) == _digest(root)


def test_speed_two_frames_per_second(tmp_path):
    """>= 2 frames/s including writing (CPU time of this process, so a busy machine shared
    with other jobs does not make the check flaky)."""
    generate_frame(0, 0)  # warm caches (sensor rays)
    t0 = time.process_time()
    summary = generate_dataset(tmp_path / 'speed', 4, seed=3, progress=False)
    cpu = time.process_time() - t0
    assert summary['written'] == 4
    assert 4 / cpu >= 2.0, f'{4 / cpu:.2f} frames/s of CPU time'


def test_command_line(tmp_path, capsys):
    from pcdet_ext.datasets.synthetic.__main__ import main
    assert main(['--out', str(tmp_path / 'cli'), '--frames', '1', '--seed', '2', '--no_images']) == 0
    assert '"written": 1' in capsys.readouterr().out
    assert (tmp_path / 'cli/training/label_2/000000.txt').is_file()
    assert not (tmp_path / 'cli/training/image_2').exists()
    assert main(['--out', str(tmp_path / 'cli'), '--frames', '1', '--seed', '3']) == 2
    assert 'seed' in capsys.readouterr().err


def test_road_plane_file_matches_ground_returns(ref):
    root, _ = ref
    lines = (root / 'training/planes/000000.txt').read_text().splitlines()
    assert lines[:3] == ['# Matrix', 'WIDTH 4', 'HEIGHT 1']
    plane = np.array([float(v) for v in lines[3].split()])
    assert plane[1] < -0.99  # normal points up (-y in the camera frame)
    f = generate_frame(0, 0)
    ground = f['points'][f['point_prim'] == -2, :3]
    rect = f['calib'].lidar_to_rect(ground)
    assert np.abs(rect @ plane[:3] + plane[3]).mean() < 0.01
