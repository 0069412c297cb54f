"""Shared helpers for the dataset tests: a KITTI copy of the real frames with ImageSets."""
import shutil
from pathlib import Path

from pcdet_ext.config import ConfigDict, cfg_from_yaml_file

REPO = Path(__file__).resolve().parents[1]
CLASSES = ['Car', 'Pedestrian', 'Cyclist']
TRAIN_IDS = ['000000', '000001', '000002', '000003', '000004', '000005']
VAL_IDS = ['000006', '000007', '000008', '000009', '000076']


def make_kitti_copy(src: Path, dst: Path, with_imagesets: bool = True, train_ids=None, val_ids=None,
                    with_test: bool = True) -> Path:
    """Copy the real frames into dst and write ImageSets made from the ids present
    (optionally only some frames, to keep tests fast)."""
    train_ids = list(train_ids or TRAIN_IDS)
    val_ids = list(val_ids or VAL_IDS)
    keep = set(train_ids + val_ids)
    for part in ('training', 'testing') if with_test else ('training',):
        for sub in (src / part).iterdir():
            (dst / part / sub.name).mkdir(parents=True)
            for f in sub.iterdir():
                if part == 'testing' or f.stem in keep:
                    shutil.copy(f, dst / part / sub.name / f.name)
    if with_imagesets:
        sets = dst / 'ImageSets'
        sets.mkdir()
        splits = [('train', train_ids), ('val', val_ids), ('trainval', train_ids + val_ids)]
        if with_test:
            splits.append(('test', sorted(p.stem for p in (dst / 'testing' / 'velodyne').glob('*.bin'))))
        for name, ids in splits:
            (sets / f'{name}.txt').write_text('\n'.join(ids) + '\n')
    return dst


def kitti_cfg(extra_yaml: str = None, tmp_dir: Path = None) -> ConfigDict:
    """The shipped kitti_dataset.yaml, optionally with extra YAML merged on top (from a file,
    so the config validation knows where every key came from)."""
    base = REPO / 'cfgs/dataset_configs/kitti_dataset.yaml'
    if extra_yaml is None:
        return cfg_from_yaml_file(str(base), ConfigDict())
    f = Path(tmp_dir) / 'extra.yaml'
    f.write_text(f'_BASE_CONFIG_: {base}\n' + extra_yaml)
    return cfg_from_yaml_file(str(f), ConfigDict())
