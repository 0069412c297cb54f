"""Config loading (OpenPCDet semantics) and the unused-key (typo) check."""
import copy
import textwrap
from pathlib import Path

import pytest

from pcdet_ext.config import (ConfigDict, ConfigError, cfg_from_list, cfg_from_yaml_file, check_unused_keys,
                              exp_group_path, find_unused_keys, mark_read, register_informational_key, to_plain)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path):
    """tmp/cfgs/dataset_configs/ds.yaml + tmp/cfgs/kitti_models/model.yaml (OpenPCDet layout)."""
    _write(tmp_path / 'cfgs/dataset_configs/ds.yaml', """
        DATASET: KittiDataset
        DATA_PATH: data/kitti
        POINT_CLOUD_RANGE: [0, -40, -3, 70.4, 40, 1]
        DATA_SPLIT: {train: train, test: val}
        DATA_PROCESSOR:
            - NAME: mask_points_and_boxes_outside_range
              REMOVE_OUTSIDE_BOXES: True
            - NAME: transform_points_to_voxels
              VOXEL_SIZE: [0.05, 0.05, 0.1]
        """)
    model = _write(tmp_path / 'cfgs/kitti_models/model.yaml', """
        CLASS_NAMES: ['Car', 'Pedestrian']
        DATA_CONFIG:
            _BASE_CONFIG_: cfgs/dataset_configs/ds.yaml
            POINT_CLOUD_RANGE: [0, -39.68, -3, 69.12, 39.68, 1]
        MODEL:
            NAME: SECONDNet
            DENSE_HEAD:
                NAME: AnchorHeadSingle
                NUM_DIR_BINS: 2
                USE_DIRECTION_CLASSIFIER: True
                DIR_OFFSET: 0.78539
        OPTIMIZATION:
            LR: 0.003
            NUM_EPOCHS: 80
        """)
    return tmp_path, model


def test_base_config_merge_and_override(tree):
    _, model = tree
    cfg = cfg_from_yaml_file(model, ConfigDict())
    assert cfg.DATA_CONFIG.DATASET == 'KittiDataset'                     # from the base
    assert cfg.DATA_CONFIG.POINT_CLOUD_RANGE == [0, -39.68, -3, 69.12, 39.68, 1]  # overridden whole
    assert cfg.DATA_CONFIG.DATA_PROCESSOR[1].VOXEL_SIZE == [0.05, 0.05, 0.1]    # list of dicts wrapped
    assert cfg['MODEL']['DENSE_HEAD'].get('NUM_DIR_BINS') == 2 and 'NAME' in cfg.MODEL
    assert cfg.MODEL.get('ROI_HEAD', 'none') == 'none'
    with pytest.raises(AttributeError):
        cfg.MODEL.NOPE
    assert to_plain(cfg)['OPTIMIZATION'] == {'LR': 0.003, 'NUM_EPOCHS': 80}


def test_base_config_relative_to_including_file(tmp_path):
    _write(tmp_path / 'a/base.yaml', 'X: 1\nY: {Z: 2}\n')
    f = _write(tmp_path / 'a/child.yaml', '_BASE_CONFIG_: base.yaml\nY: {W: 3}\n')
    cfg = cfg_from_yaml_file(f, ConfigDict())
    assert cfg.X == 1 and cfg.Y.Z == 2 and cfg.Y.W == 3


def test_missing_base_and_bad_yaml_name_the_file(tmp_path):
    f = _write(tmp_path / 'm.yaml', 'A:\n  _BASE_CONFIG_: cfgs/nowhere.yaml\n')
    with pytest.raises(ConfigError, match=r"nowhere\.yaml.*m\.yaml"):
        cfg_from_yaml_file(f, ConfigDict())
    bad = _write(tmp_path / 'bad.yaml', 'A: [1, 2\n')
    with pytest.raises(ConfigError, match='bad.yaml is not valid YAML'):
        cfg_from_yaml_file(bad, ConfigDict())
    with pytest.raises(ConfigError, match='no such file'):
        cfg_from_yaml_file(tmp_path / 'absent.yaml', ConfigDict())


def test_cfg_from_list_types(tree):
    _, model = tree
    cfg = cfg_from_yaml_file(model, ConfigDict())
    cfg_from_list(['OPTIMIZATION.LR', '0.01', 'OPTIMIZATION.NUM_EPOCHS', '2',
                   'DATA_CONFIG.POINT_CLOUD_RANGE', '[0, -10, -3, 10, 10, 1]',
                   'MODEL.DENSE_HEAD.USE_DIRECTION_CLASSIFIER', 'False',
                   'MODEL.DENSE_HEAD.NAME', 'AnchorHeadMulti',
                   'CLASS_NAMES', 'Car,Cyclist',
                   'DATA_CONFIG.DATA_SPLIT', 'test:test'], cfg)
    assert cfg.OPTIMIZATION.LR == 0.01 and cfg.OPTIMIZATION.NUM_EPOCHS == 2
    assert isinstance(cfg.OPTIMIZATION.NUM_EPOCHS, int)
    assert cfg.DATA_CONFIG.POINT_CLOUD_RANGE == [0, -10, -3, 10, 10, 1]
    assert cfg.MODEL.DENSE_HEAD.USE_DIRECTION_CLASSIFIER is False
    assert cfg.MODEL.DENSE_HEAD.NAME == 'AnchorHeadMulti'
    assert cfg.CLASS_NAMES == ['Car', 'Cyclist']
    assert cfg.DATA_CONFIG.DATA_SPLIT == {'train': 'train', 'test': 'test'}
    cfg_from_list(['OPTIMIZATION.NUM_EPOCHS', '3'], cfg)  # int stays int
    assert cfg.OPTIMIZATION.NUM_EPOCHS == 3


def test_cfg_from_list_errors(tree):
    _, model = tree
    cfg = cfg_from_yaml_file(model, ConfigDict())
    with pytest.raises(ConfigError, match=r"OPTIMIZATION\.LRR.*does not exist"):
        cfg_from_list(['OPTIMIZATION.LRR', '0.1'], cfg)
    with pytest.raises(ConfigError, match='has type float'):
        cfg_from_list(['OPTIMIZATION.NUM_EPOCHS', '2.5'], cfg)
    with pytest.raises(ConfigError, match='odd number'):
        cfg_from_list(['OPTIMIZATION.LR'], cfg)
    with pytest.raises(ConfigError, match='not a bool'):
        cfg_from_list(['MODEL.DENSE_HEAD.USE_DIRECTION_CLASSIFIER', 'maybe'], cfg)


def _read_everything_but(cfg, skip):
    """Simulate modules that read all their keys except the ones in `skip` (dotted)."""
    def walk(node, prefix):
        if isinstance(node, ConfigDict):
            for k in list(node.keys()):
                path = f'{prefix}.{k}' if prefix else k
                if path in skip:
                    continue
                walk(node[k], path)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f'{prefix}[{i}]')
    walk(cfg, '')


def test_unused_key_is_reported_with_its_file(tree, monkeypatch):
    import pcdet_ext.config as config_mod
    monkeypatch.setattr(config_mod, "_INFORMATIONAL", list(config_mod._INFORMATIONAL))
    _, model = tree
    cfg = cfg_from_yaml_file(model, ConfigDict())
    cfg_from_list(['OPTIMIZATION.LR', '0.5'], cfg)
    _read_everything_but(cfg, {'MODEL.DENSE_HEAD.NUM_DIR_BINS', 'DATA_CONFIG.DATA_PROCESSOR[1].VOXEL_SIZE',
                               'OPTIMIZATION.LR'})
    with pytest.raises(ValueError) as e:
        check_unused_keys(cfg)
    msg = str(e.value)
    assert 'MODEL.DENSE_HEAD.NUM_DIR_BINS (set in ' in msg and 'model.yaml) is not read by any module: typo?' in msg
    assert 'DATA_CONFIG.DATA_PROCESSOR[1].VOXEL_SIZE (set in ' in msg and 'ds.yaml)' in msg
    assert 'OPTIMIZATION.LR (set in ' in msg and '--set' in msg
    assert 'DIR_OFFSET' not in msg and 'DATASET' not in msg
    assert len(find_unused_keys(cfg)) == 3
    # the allow-list hides a documented key; ignore= hides a section for one call
    register_informational_key('MODEL.DENSE_HEAD.NUM_DIR_BINS')
    assert len(find_unused_keys(cfg, ignore=['OPTIMIZATION'])) == 1
    mark_read(cfg, 'DATA_CONFIG.DATA_PROCESSOR')
    check_unused_keys(cfg, ignore=['OPTIMIZATION'])


def test_untouched_subtree_reported_once_and_code_set_keys_ignored(tree):
    _, model = tree
    cfg = cfg_from_yaml_file(model, ConfigDict())
    cfg.ROOT_DIR = '/x'
    cfg.SOMETHING_FROM_CODE = 1
    _read_everything_but(cfg, {'MODEL'})
    unused = find_unused_keys(cfg)
    assert [p for p, _ in unused] == ['MODEL']


def test_reads_through_copies_and_unpacking_count(tree):
    _, model = tree
    cfg = cfg_from_yaml_file(model, ConfigDict())
    head = copy.deepcopy(cfg.MODEL.DENSE_HEAD)   # a module keeping a private copy
    assert head.NUM_DIR_BINS == 2
    opt = dict(**cfg.OPTIMIZATION)              # a module passing a sub-config as kwargs
    assert opt['LR'] == 0.003
    assert 'DIR_OFFSET' in cfg.MODEL.DENSE_HEAD  # membership alone is not a read
    unused = {p for p, _ in find_unused_keys(cfg)}
    assert 'MODEL.DENSE_HEAD.NUM_DIR_BINS' not in unused
    assert 'OPTIMIZATION' not in unused and 'OPTIMIZATION.LR' not in unused
    assert 'MODEL.DENSE_HEAD.DIR_OFFSET' in unused


def test_exp_group_path():
    assert exp_group_path('cfgs/kitti_models/second.yaml') == 'kitti_models'
    assert exp_group_path('/a/b/cfgs/alpi/sub/x.yaml') == 'alpi/sub'
    assert exp_group_path('/tmp/foo/x.yaml') == 'foo'


def test_repo_configs_load():
    root = Path(__file__).resolve().parents[1] / 'cfgs'
    files = sorted(root.glob('*_models/*.yaml'))
    # the shipped model configs: kitti_models/{second,pointpillar}, synthetic_models/second_cpu
    assert len(files) >= 3, files
    for f in files:
        cfg = cfg_from_yaml_file(f, ConfigDict())
        assert 'MODEL' in cfg and 'DATA_CONFIG' in cfg, f
