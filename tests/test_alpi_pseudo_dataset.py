"""Pseudo-label training dataset: label_2 from ALPI's export for the train split, originals
elsewhere, links to the source data, infos built on it, atomic failure."""
import os
from pathlib import Path

import numpy as np
import pytest

from pcdet_ext.alpi.pseudo_dataset import build_pseudo_label_dataset
from pcdet_ext.datasets.data_io import DataFileError, load_pickle
from pcdet_ext.datasets.kitti.kitti_infos import create_kitti_infos
from pcdet_ext.datasets.kitti.kitti_label_io import read_label_file

UNKNOWN = 'Car 0.00 0 -10.00 100.00 150.00 160.00 200.00 -1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00 0.0000'


def _ids(root, split):
    return (Path(root) / 'ImageSets' / f'{split}.txt').read_text().split()


@pytest.fixture(scope='module')
def src(tmp_path_factory):
    from pcdet_ext.datasets.synthetic import generate_dataset
    root = tmp_path_factory.mktemp('pseudo_src') / 'synthetic'
    generate_dataset(str(root), 3, seed=1, val_fraction=0.34, progress=False)
    return root


@pytest.fixture(scope='module')
def labels(src, tmp_path_factory):
    """Fake ALPI export: each train frame's GT lines with a score 0.9, the first frame's last
    box with a low score 0.1, plus one unknown-3D line per frame."""
    d = tmp_path_factory.mktemp('alpi_out') / 'label_2'
    d.mkdir()
    expect = {}
    for k, fid in enumerate(_ids(src, 'train')):
        gt = (src / 'training' / 'label_2' / f'{fid}.txt').read_text().splitlines()
        assert gt, 'the synthetic frame should have objects'
        scores = [0.9] * len(gt)
        if k == 0:
            scores[-1] = 0.1
        lines = [f'{g} {s:.4f}' for g, s in zip(gt, scores)] + [UNKNOWN]
        (d / f'{fid}.txt').write_text('\n'.join(lines) + '\n')
        expect[fid] = (gt, scores)
    return d, expect


@pytest.fixture(scope='module')
def built(src, labels, tmp_path_factory):
    out = tmp_path_factory.mktemp('pseudo') / 'synthetic_pseudo'
    logs = []
    counts = build_pseudo_label_dataset(src, labels[0], out, splits=('train',), min_score=0.3,
                                        log=logs.append)
    create_kitti_infos(out, workers=1, progress=False, log=logs.append)
    return out, counts, logs


def test_train_labels_are_pseudo_with_dontcare(src, labels, built):
    out, counts, logs = built
    _, expect = labels
    n_kept = 0
    for fid, (gt_lines, scores) in expect.items():
        ref = read_label_file(src / 'training' / 'label_2' / f'{fid}.txt')
        got = read_label_file(out / 'training' / 'label_2' / f'{fid}.txt')
        keep = np.array(scores) >= 0.3
        n_kept += int(keep.sum())
        assert list(got['name']) == list(ref['name'][keep]) + ['DontCare'] * (len(gt_lines) + 1 - keep.sum())
        k = int(keep.sum())
        for key in ('bbox', 'dimensions', 'location', 'rotation_y'):
            np.testing.assert_allclose(got[key][:k], ref[key][keep], atol=1e-2)
        np.testing.assert_allclose(got['score'][:k], 0.9)
        dc = got['name'] == 'DontCare'
        np.testing.assert_allclose(got['location'][dc], -1000)  # KITTI's unknown 3D
        np.testing.assert_allclose(got['dimensions'][dc], -1)
        # the DontCare lines keep their 2D box: the low-score object's and the unknown one's
        want_2d = [ref['bbox'][~keep]] + [np.array([[100, 150, 160, 200]])]
        np.testing.assert_allclose(got['bbox'][dc], np.concatenate(want_2d), atol=1e-2)
    assert counts['frames'] == {'pseudo': len(expect), 'original': len(_ids(src, 'val'))}
    assert sum(counts['kept'].values()) == n_kept
    assert counts['dontcare'] == {'unknown_3d': len(expect), 'low_score': 1, 'input': 0}
    assert any('pseudo-label dataset' in m for m in logs)


def test_val_labels_are_originals_and_links_resolve(src, built):
    out, _, _ = built
    for fid in _ids(src, 'val'):
        assert ((out / 'training' / 'label_2' / f'{fid}.txt').read_bytes()
                == (src / 'training' / 'label_2' / f'{fid}.txt').read_bytes())
    for d in ('velodyne', 'calib', 'image_2', 'planes'):
        link = out / 'training' / d
        assert link.is_symlink() and os.path.isabs(os.readlink(link))
        assert link.resolve() == (src / 'training' / d).resolve()
    assert not (out / 'training' / 'label_2').is_symlink()
    assert sorted(os.listdir(out / 'ImageSets')) == sorted(os.listdir(src / 'ImageSets'))
    assert not [p for p in out.parent.iterdir() if p.name.startswith('.')]  # no temp dir left


def test_infos_hold_pseudo_boxes(src, labels, built):
    out, counts, _ = built
    _, expect = labels
    infos = {i['point_cloud']['lidar_idx']: i for i in load_pickle(out / 'kitti_infos_train.pkl')}
    assert set(infos) == set(expect)
    for fid, (_, scores) in expect.items():
        a = infos[fid]['annos']
        kept = int((np.array(scores) >= 0.3).sum())
        assert a['gt_boxes_lidar'].shape == (kept, 7)
        np.testing.assert_allclose(a['score'][:kept], 0.9)
    db = load_pickle(out / 'kitti_dbinfos_train.pkl')
    assert 'DontCare' not in db
    assert sum(len(v) for v in db.values()) == sum(counts['kept'].values())
    val = load_pickle(out / 'kitti_infos_val.pkl')
    for info in val:
        ref = read_label_file(src / 'training' / 'label_2' / f'{info["point_cloud"]["lidar_idx"]}.txt')
        assert list(info['annos']['name']) == list(ref['name'])


def test_missing_pseudo_file_fails_cleanly(src, labels, tmp_path):
    partial = tmp_path / 'partial'
    partial.mkdir()
    train = _ids(src, 'train')
    (partial / f'{train[0]}.txt').write_text((labels[0] / f'{train[0]}.txt').read_text())
    out = tmp_path / 'ds'
    with pytest.raises(DataFileError, match=str(partial / f'{train[1]}.txt')):
        build_pseudo_label_dataset(src, partial, out, log=lambda m: None)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ['partial']  # the temp build dir is gone too


def test_existing_out_refused_without_overwrite(src, labels, tmp_path):
    out = tmp_path / 'ds'
    out.mkdir()
    (out / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='overwrite'):
        build_pseudo_label_dataset(src, labels[0], out, log=lambda m: None)
    assert (out / 'keep.txt').is_file()
    build_pseudo_label_dataset(src, labels[0], out, overwrite=True, log=lambda m: None)
    assert not (out / 'keep.txt').exists() and (out / 'training' / 'label_2').is_dir()
    with pytest.raises(ValueError, match='must not be or contain'):
        build_pseudo_label_dataset(src, labels[0], src, overwrite=True, log=lambda m: None)


def test_cli_pseudo(src, labels, tmp_path, capsys):
    import tools.create_data as cd
    out = tmp_path / 'ds'
    out.mkdir()
    assert cd.main(['pseudo', '--data_path', str(src), '--labels', str(labels[0]), '--out', str(out),
                    '--no_progress']) == 2
    assert 'create_data.py pseudo: error:' in capsys.readouterr().err
    bad = tmp_path / 'bad'
    bad.mkdir()
    for fid in _ids(src, 'train'):
        (bad / f'{fid}.txt').write_text('Car 0 0 0 1 2 3 4 1 1 1 1 1 1 0\n')  # no score column
    assert cd.main(['pseudo', '--data_path', str(src), '--labels', str(bad), '--out',
                    str(tmp_path / 'ds2'), '--no_progress']) == 2
    assert 'no score column' in capsys.readouterr().err
    assert not (tmp_path / 'ds2').exists()
    assert cd.main(['pseudo', '--data_path', str(src), '--labels', str(labels[0]), '--out', str(out),
                    '--overwrite', '--min_score', '0.3', '--workers', '1', '--no_progress']) == 0
    assert (out / 'kitti_infos_train.pkl').is_file() and (out / 'gt_database').is_dir()


def test_training_dataset_reads_pseudo_boxes(built):
    """The runtime's KittiDataset (train mode, gt sampling on) trains on the pseudo boxes only."""
    from pcdet_ext.config import ConfigDict, cfg_from_yaml_file
    from pcdet_ext.datasets.kitti.kitti_dataset import KittiDataset
    out, counts, _ = built
    cfg = cfg_from_yaml_file(str(Path(__file__).resolve().parents[1] / 'cfgs/dataset_configs/kitti_dataset.yaml'),
                             ConfigDict())
    ds = KittiDataset(cfg, ['Car', 'Pedestrian', 'Cyclist'], training=True, root_path=out)
    item = ds[0]
    assert len(item['gt_boxes']) > 0 and np.abs(item['gt_boxes'][:, :3]).max() < 200  # no -1000s
