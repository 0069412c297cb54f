"""KITTI annotation dicts: reading label files and validating what the evaluator is given.

The dict format is OpenPCDet's (one dict per frame, numpy arrays of equal length):
name (N,) str, truncated (N,), occluded (N,), alpha (N,), bbox (N, 4) x1 y1 x2 y2 in image_2
pixels, dimensions (N, 3) l h w (the label file orders them h w l), location (N, 3) bottom
centre in the rectified camera frame, rotation_y (N,), and score (N,) for detections.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# Columns of a KITTI label line: type, truncated, occluded, alpha, bbox(4), dimensions h w l (3),
# location x y z (3), rotation_y, and an optional score (detections).
_N_LABEL_COLS = 15

REQUIRED_KEYS = ('name', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions', 'location',
                 'rotation_y')
_WIDTHS = {'bbox': 4, 'dimensions': 3, 'location': 3}


def empty_annotation() -> dict:
    """An annotation dict with no objects (the frame of a detector that found nothing)."""
    return {'name': np.zeros((0,), dtype='<U16'), 'truncated': np.zeros((0,)),
            'occluded': np.zeros((0,)), 'alpha': np.zeros((0,)), 'bbox': np.zeros((0, 4)),
            'dimensions': np.zeros((0, 3)), 'location': np.zeros((0, 3)),
            'rotation_y': np.zeros((0,)), 'score': np.zeros((0,))}


def parse_label_lines(lines, source: str = '<labels>') -> dict:
    """Parse KITTI label lines (15 columns, or 16 with a score) into an annotation dict.

    Malformed lines raise ValueError naming source and line number. Without a score column the
    score is 0 (ground truth), as OpenPCDet does.
    """
    names, values, scores = [], [], []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) not in (_N_LABEL_COLS, _N_LABEL_COLS + 1):
            raise ValueError(f'{source}:{lineno}: expected {_N_LABEL_COLS} columns (16 with a '
                             f'score), got {len(cols)}: {line!r}')
        try:
            nums = [float(c) for c in cols[1:]]
        except ValueError:
            bad = next(c for c in cols[1:] if not _is_float(c))
            raise ValueError(f'{source}:{lineno}: column value {bad!r} is not a number: '
                             f'{line!r}') from None
        if not all(math.isfinite(v) for v in nums):
            raise ValueError(f'{source}:{lineno}: NaN or inf value: {line!r}')
        names.append(cols[0])
        values.append(nums[:_N_LABEL_COLS - 1])
        scores.append(nums[_N_LABEL_COLS - 1] if len(nums) == _N_LABEL_COLS else 0.0)
    if not names:
        return empty_annotation()
    v = np.asarray(values, dtype=np.float64)
    return {
        'name': np.asarray(names),
        'truncated': v[:, 0],
        'occluded': v[:, 1].astype(np.int64),
        'alpha': v[:, 2],
        'bbox': v[:, 3:7],
        'dimensions': v[:, 7:10][:, [2, 0, 1]],  # file h w l -> l h w (OpenPCDet order)
        'location': v[:, 10:13],
        'rotation_y': v[:, 13],
        'score': np.asarray(scores, dtype=np.float64),
    }


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_ids(split_file) -> list[str]:
    """Frame ids from an ImageSets-style file (one id a line)."""
    path = Path(split_file)
    if not path.is_file():
        raise FileNotFoundError(f'split file not found: {path}')
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def get_label_anno(label_path) -> dict:
    """One label file -> annotation dict."""
    path = Path(label_path)
    if not path.is_file():
        raise FileNotFoundError(f'label file not found: {path}')
    with open(path) as f:
        return parse_label_lines(f.readlines(), source=str(path))


def get_label_annos(label_dir, ids=None) -> list[dict]:
    """Read label_dir/<id>.txt for each id (ints are zero-padded to 6 digits); all .txt files
    in sorted order when ids is None."""
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise FileNotFoundError(f'label directory not found: {label_dir}')
    if ids is None:
        files = sorted(p for p in label_dir.iterdir() if p.suffix == '.txt')
    else:
        files = [label_dir / (f'{i:06d}.txt' if isinstance(i, (int, np.integer)) else f'{i}.txt')
                 for i in ids]
    return [get_label_anno(p) for p in files]


def _frame_label(i: int, anno: dict) -> str:
    fid = anno.get('frame_id', None)
    return f'frame {i}' + (f' (frame_id {fid})' if fid is not None else '')


def validate_annos(gt_annos, dt_annos) -> None:
    """Check the evaluator's inputs; raise ValueError naming the frame and the problem."""
    if not isinstance(gt_annos, (list, tuple)) or not isinstance(dt_annos, (list, tuple)):
        raise ValueError('gt_annos and dt_annos must be lists of per-frame dicts, got '
                         f'{type(gt_annos).__name__} and {type(dt_annos).__name__}')
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f'gt_annos has {len(gt_annos)} frames but dt_annos has {len(dt_annos)}; '
                         'they must be the same frames in the same order')
    for which, annos in (('gt_annos', gt_annos), ('dt_annos', dt_annos)):
        keys = REQUIRED_KEYS + (('score',) if which == 'dt_annos' else ())
        for i, anno in enumerate(annos):
            if not isinstance(anno, dict):
                raise ValueError(f'{which} frame {i}: expected a dict, got {type(anno).__name__}')
            missing = [k for k in keys if k not in anno]
            if missing:
                raise ValueError(f'{which} {_frame_label(i, anno)}: missing key(s) {missing}')
            n = len(anno['name'])
            for k in keys[1:]:
                arr = anno[k]
                shape = getattr(arr, 'shape', None)
                want = (n, _WIDTHS[k]) if k in _WIDTHS else (n,)
                if shape != want or getattr(arr, 'dtype', np.dtype(object)).kind not in 'fiub':
                    arr = np.asarray(arr)
                    if arr.shape != want and not (n == 0 and arr.size == 0):
                        raise ValueError(f'{which} {_frame_label(i, anno)}: {k!r} has shape '
                                         f'{arr.shape}, expected {want} ({n} objects)')
                    if arr.dtype.kind not in 'fiub':
                        raise ValueError(f'{which} {_frame_label(i, anno)}: {k!r} must be '
                                         f'numeric, got dtype {arr.dtype}')
        # NaN / inf: one vectorised test per key; locate the frame only when it fails.
        counts = np.array([len(a['name']) for a in annos], dtype=np.int64)
        for k in keys[1:]:
            if not len(annos):
                break
            width = _WIDTHS.get(k, 1)
            flat = np.concatenate([np.asarray(a[k], dtype=np.float64).reshape(len(a['name']), width)
                                   for a in annos])
            bad = ~np.isfinite(flat).all(1)
            if bad.any():
                obj = int(np.nonzero(bad)[0][0])
                i = int(np.searchsorted(np.cumsum(counts), obj, side='right'))
                j = obj - int(counts[:i].sum())
                raise ValueError(f'{which} {_frame_label(i, annos[i])}: {k!r} of object {j} is '
                                 'NaN or inf')
