"""Bad input gets a clear error naming the file and the problem; nothing half-written."""
import pickle

import numpy as np
import pytest

from pcdet_ext.config import check_unused_keys
from pcdet_ext.datasets.data_io import DataFileError, read_lidar_bin
from pcdet_ext.datasets.kitti import KittiDataset, KittiLabelError, read_label_file
from pcdet_ext.geometry import CalibrationError

from _datasets_helpers import CLASSES, kitti_cfg, make_kitti_copy


def test_lidar_bin_errors(tmp_path):
    f = tmp_path / 'a.bin'
    np.arange(40, dtype=np.float32).tofile(f)
    f.write_bytes(f.read_bytes()[:-3])  # truncated mid-float
    with pytest.raises(DataFileError, match=r'a\.bin.*not a multiple of 16'):
        read_lidar_bin(f)
    f.write_bytes(b'')
    with pytest.raises(DataFileError, match=r'a\.bin.*empty'):
        read_lidar_bin(f)
    with pytest.raises(DataFileError, match='not found'):
        read_lidar_bin(tmp_path / 'missing.bin')
    pts = np.ones((10, 4), dtype=np.float32)
    pts[2, 0] = np.nan
    pts[7, 3] = np.inf
    pts.tofile(f)
    with pytest.warns(UserWarning, match=r'a\.bin: dropped 2 of 10 points'):
        out = read_lidar_bin(f)
    assert out.shape == (8, 4) and np.isfinite(out).all()


def test_label_errors(tmp_path):
    f = tmp_path / '000001.txt'
    f.write_text('Car 0.00 0 -1.5 100 100 200 200 1.5 1.6 3.9 1.0 1.5 20.0 0.1\n'
                 'Car 0.00 0 -1.5 100 100 200 200 1.5 1.6 3.9 1.0 1.5\n')
    with pytest.raises(KittiLabelError, match=r'000001\.txt:2: expected 15 or 16 fields'):
        read_label_file(f)
    f.write_text('Car 0.00 0 -1.5 100 abc 200 200 1.5 1.6 3.9 1.0 1.5 20.0 0.1\n')
    with pytest.raises(KittiLabelError, match=r'000001\.txt:1: non-numeric'):
        read_label_file(f)
    f.write_text('DontCare -1 -1 -10 0 0 10 10 -1 -1 -1 -1000 -1000 -1000 -10\n'
                 'Car 0.00 0 -1.5 100 100 200 200 1.5 1.6 3.9 1.0 1.5 20.0 0.1\n')
    a = read_label_file(f)
    assert list(a['name']) == ['Car', 'DontCare']  # DontCare moved last
    assert np.allclose(a['dimensions'][0], [3.9, 1.5, 1.6])  # (l, h, w)
    assert a['difficulty'][0] == 0


@pytest.fixture()
def kitti_copy(tmp_path, kitti_real):
    return make_kitti_copy(kitti_real, tmp_path / 'kitti', train_ids=['000002', '000003'],
                           val_ids=['000006', '000007'], with_test=False)


def _run(root, capsys):
    from tools.create_data import main
    rc = main(['kitti', '--data_path', str(root), '--workers', '1', '--no_progress'])
    return rc, capsys.readouterr().err


def _outputs(root):
    return sorted(p.name for p in root.iterdir() if p.name not in ('training', 'testing', 'ImageSets'))


def test_create_data_missing_imagesets(tmp_path, kitti_real, capsys):
    root = make_kitti_copy(kitti_real, tmp_path / 'k', with_imagesets=False)
    rc, err = _run(root, capsys)
    assert rc == 2 and 'ImageSets' in err and 'Place the standard KITTI ImageSets lists' in err
    assert _outputs(root) == []


def test_create_data_failures_leave_nothing_half_written(kitti_copy, capsys):
    root = kitti_copy
    velo = root / 'training/velodyne/000003.bin'
    good = velo.read_bytes()
    velo.write_bytes(good[:-5])
    rc, err = _run(root, capsys)
    assert rc == 2 and '000003.bin' in err and 'multiple of 16' in err
    assert _outputs(root) == []  # no infos, no gt_database, no temp files
    velo.write_bytes(good)
    assert _run(root, capsys)[0] == 0
    before = {n: (root / n).stat().st_mtime_ns for n in _outputs(root)}
    (root / 'training/calib/000007.txt').unlink()
    rc, err = _run(root, capsys)
    assert rc == 2 and '000007.txt' in err and 'not found' in err
    # the previous complete outputs are untouched and still load
    assert {n: (root / n).stat().st_mtime_ns for n in _outputs(root)} == before
    with open(root / 'kitti_infos_train.pkl', 'rb') as f:
        assert len(pickle.load(f)) == 2
    (root / 'training/label_2/000002.txt').write_text('Car 0 0\n')
    rc, err = _run(root, capsys)
    assert rc == 2 and '000002.txt:1' in err


def test_dataset_config_errors(kitti_copy, capsys):
    root = kitti_copy
    cfg = kitti_cfg()
    with pytest.raises(DataFileError, match=r'kitti_infos_val\.pkl: KITTI info file not found.*create_data'):
        KittiDataset(cfg, CLASSES, training=False, root_path=root)
    assert _run(root, capsys)[0] == 0
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['car'\]"):
        KittiDataset(kitti_cfg(), ['car', 'Pedestrian'], training=False, root_path=root)
    # typos in a config file (top level and nested) are reported after building the dataset
    cfg = kitti_cfg('FOV_POINT_ONLY: True\nPOINT_FEATURE_ENCODING: {used_feature_lists: [x]}\n',
                    root.parent)
    KittiDataset(cfg, CLASSES, training=True, root_path=root)
    with pytest.raises(ValueError) as exc:
        check_unused_keys(cfg)
    msg = str(exc.value)
    assert 'FOV_POINT_ONLY (set in' in msg and 'POINT_FEATURE_ENCODING.used_feature_lists' in msg
    assert 'extra.yaml' in msg
    # a clean config leaves no unread key after building the train and test datasets
    cfg = kitti_cfg()
    KittiDataset(cfg, CLASSES, training=True, root_path=root)
    check_unused_keys(cfg)
    cfg = kitti_cfg()
    cfg.DATA_PROCESSOR[2].VOXEL_SIZE = [0.05, 0.05]
    with pytest.raises(ValueError, match='VOXEL_SIZE must be 3 positive numbers'):
        KittiDataset(cfg, CLASSES, training=False, root_path=root)
    cfg = kitti_cfg()
    cfg.DATA_AUGMENTOR.AUG_CONFIG_LIST[0].SAMPLE_GROUPS = ['Car15']
    with pytest.raises(ValueError, match='SAMPLE_GROUPS entry .Car15. must look like'):
        KittiDataset(cfg, CLASSES, training=True, root_path=root)
    # missing calib at load time names the file
    (root / 'training/calib/000006.txt').unlink()
    ds = KittiDataset(kitti_cfg(), CLASSES, training=False, root_path=root)
    with pytest.raises(CalibrationError, match=r'000006\.txt: calibration file not found'):
        ds[0]
