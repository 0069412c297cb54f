"""A KITTI-layout folder whose training labels of some splits are ALPI's exported pseudo-labels,
so any detector of the runtime trains on them through the ordinary KittiDataset.

Point clouds, calibrations, images, planes and testing/ are symlinks to the source; label_2 is a
real folder: frames of the chosen splits get their pseudo-label file, every other frame (val,
kept for evaluation) a copy of its original label. Pseudo lines keep their score column (16
fields, which read_label_file accepts). Lines with KITTI's unknown 3D values (objects ALPI could
not label) or a score under min_score become DontCare with unknown 3D values and their 2D box:
training and the gt database skip DontCare, and KITTI evaluation ignores detections on them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List

import numpy as np

from ..datasets.data_io import DataFileError, read_split_file, replace_dir
from ..datasets.kitti.kitti_label_io import KittiLabelError, format_label_lines, parse_label_lines
from .export import set_unknown_3d

LINKED_DIRS = ('velodyne', 'calib', 'image_2', 'planes')
REQUIRED_DIRS = ('velodyne', 'calib')


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _to_dontcare(anno: Dict[str, np.ndarray]) -> None:
    anno['name'] = np.array(['DontCare'])
    set_unknown_3d(anno, 0)


def convert_pseudo_lines(lines: List[str], source: str, min_score: float, counts: dict) -> List[str]:
    """Pseudo-label lines -> training label lines, in the input order (line i still matches the
    weak-label file's object i). Updates counts['kept'][cls] and counts['dontcare'][reason]."""
    parse_label_lines(lines, source=source)  # validates the whole file, with line numbers
    out = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 16:
            raise KittiLabelError(f'{source}:{lineno}: pseudo-label line has no score column '
                                  f'(expected 16 fields as tools/alpi_label.py writes)')
        anno = parse_label_lines([line], source=source)
        name = str(anno['name'][0])
        unknown = (anno['dimensions'][0] <= 0).any() or (anno['location'][0] <= -999).any()
        if name == 'DontCare':
            counts['dontcare']['input'] += 1
            _to_dontcare(anno)
        elif unknown:
            counts['dontcare']['unknown_3d'] += 1
            _to_dontcare(anno)
        elif anno['score'][0] < min_score:
            counts['dontcare']['low_score'] += 1
            _to_dontcare(anno)
        else:
            counts['kept'][name] = counts['kept'].get(name, 0) + 1
        out.extend(format_label_lines(anno, with_score=True))
    return out


def _split_ids(root: Path, splits: Iterable[str]) -> List[str]:
    ids: Dict[str, None] = {}  # ordered union
    for s in splits:
        ids.update(dict.fromkeys(read_split_file(root / 'ImageSets' / f'{s}.txt')))
    return list(ids)


def _check_args(src: Path, labels: Path, out: Path, splits, min_score, overwrite) -> None:
    if not (src / 'training').is_dir():
        raise DataFileError(f'{src / "training"}: folder not found (src_root must be a KITTI-layout '
                            f'folder: training/{{velodyne,calib,label_2}}, ImageSets/)')
    for d in REQUIRED_DIRS:
        if not (src / 'training' / d).is_dir():
            raise DataFileError(f'{src / "training" / d}: folder not found')
    if not labels.is_dir():
        raise DataFileError(f'{labels}: pseudo-label folder not found (tools/alpi_label.py '
                            f'writes <out>/label_2)')
    if not splits or 'test' in splits:
        raise ValueError(f'splits must be non-empty training splits (train, val, trainval), '
                         f'got {list(splits)}')
    if not np.isfinite(min_score):
        raise ValueError(f'min_score must be a finite number, got {min_score!r}')
    if _is_within(src, out.resolve()) or _is_within(labels, out.resolve()):
        raise ValueError(f'{out}: out_root must not be or contain the source dataset or the '
                         f'pseudo-label folder (it is replaced as a whole)')
    if os.path.lexists(out) and not overwrite:
        raise FileExistsError(f'{out}: already exists; pass overwrite=True (--overwrite) to '
                              f'replace it')


def build_pseudo_label_dataset(src_root, labels_dir, out_root, splits=('train',),
                               min_score: float = 0.0, overwrite: bool = False, log=print) -> dict:
    """Build out_root (see the module docstring); nothing is left behind on error.

    Returns {'out_root', 'frames': {'pseudo', 'original'}, 'kept': {class: boxes},
    'dontcare': {'unknown_3d', 'low_score', 'input'}}."""
    src, labels = Path(src_root).resolve(), Path(labels_dir).resolve()
    out = Path(os.path.abspath(out_root))  # not resolved: a link named out_root is replaced, not its target
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    _check_args(src, labels, out, splits, min_score, overwrite)
    pseudo_ids = _split_ids(src, splits)
    counts = {'out_root': str(out), 'frames': {'pseudo': 0, 'original': 0}, 'kept': {},
              'dontcare': {'unknown_3d': 0, 'low_score': 0, 'input': 0}}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would stay on the final folder
        (tmp / 'training').mkdir()
        for d in LINKED_DIRS:
            if (src / 'training' / d).is_dir():
                os.symlink((src / 'training' / d).resolve(), tmp / 'training' / d)
        if (src / 'testing').is_dir():
            os.symlink((src / 'testing').resolve(), tmp / 'testing')
        shutil.copytree(src / 'ImageSets', tmp / 'ImageSets')
        label_out = tmp / 'training' / 'label_2'
        label_out.mkdir()
        for fid in pseudo_ids:
            path = labels / f'{fid}.txt'
            if not path.is_file():
                raise DataFileError(f'{path}: pseudo-label file not found for frame {fid} of '
                                    f'split(s) {"+".join(splits)}')
            lines = convert_pseudo_lines(path.read_text().splitlines(), str(path), min_score, counts)
            (label_out / path.name).write_text(''.join(line + '\n' for line in lines))
            counts['frames']['pseudo'] += 1
        src_labels = src / 'training' / 'label_2'
        pseudo_set = set(pseudo_ids)
        if src_labels.is_dir():
            for p in sorted(src_labels.glob('*.txt')):
                if p.stem not in pseudo_set:
                    shutil.copyfile(p, label_out / p.name)
                    counts['frames']['original'] += 1
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    val_file = src / 'ImageSets' / 'val.txt'
    if 'val' not in splits and val_file.is_file() and pseudo_set & set(read_split_file(val_file)):
        log(f'note: some val frames got pseudo-labels (splits {list(splits)}); evaluation on val '
            f'will be against them, not the original labels')
    ignored = sum(1 for p in labels.glob('*.txt') if p.stem not in pseudo_set)
    dc = counts['dontcare']
    log(f'pseudo-label dataset {out}: {counts["frames"]["pseudo"]} frames with pseudo-labels '
        f'({"+".join(splits)}), {counts["frames"]["original"]} with their original labels; kept '
        f'{counts["kept"]}; DontCare: {dc["unknown_3d"]} unknown 3D, {dc["low_score"]} score < '
        f'{min_score:g}' + (f', {dc["input"]} already DontCare' if dc['input'] else '')
        + (f'; ignored {ignored} pseudo-label files of other frames' if ignored else ''))
    return counts
