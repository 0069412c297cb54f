"""Reading dataset files (velodyne .bin, image size, road planes, split lists, pickles) with clear
and atomic writes for everything create_data produces."""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

# KITTI's image_2 size; used only when a frame has no image (image_2 is optional for
# generated data) so that the FOV filter and 2D-box clipping still have a frame to work in.
DEFAULT_IMAGE_SHAPE = (375, 1242)


class DataFileError(ValueError):
    """A data file is missing, truncated or malformed; the message names the file."""


def read_lidar_bin(path, num_features: int = 4) -> np.ndarray:
    """Read a velodyne .bin of float32 (x, y, z, intensity) rows.

    Wrong-size and empty files raise DataFileError; rows with NaN/inf are dropped with a
    warning that counts them (a few bad returns should not kill a training run)."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataFileError(f'{path}: point cloud file not found')
    row_bytes = 4 * num_features
    size = os.path.getsize(path)
    if size == 0:
        raise DataFileError(f'{path}: point cloud is empty (0 bytes)')
    if size % row_bytes != 0:
        raise DataFileError(f'{path}: size {size} bytes is not a multiple of {row_bytes} '
                            f'({num_features} float32 per point); the file is truncated or '
                            f'not a KITTI velodyne scan')
    points = np.fromfile(path, dtype=np.float32).reshape(-1, num_features)
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        warnings.warn(f'{path}: dropped {bad} of {len(points)} points with NaN/inf values')
        points = points[finite]
        if len(points) == 0:
            raise DataFileError(f'{path}: every point has NaN/inf values')
    return points


def read_image_shape(path) -> Optional[Tuple[int, int]]:
    """(H, W) of an image file from its header, or None when the file does not exist."""
    path = str(path)
    if not os.path.isfile(path):
        return None
    from PIL import Image
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        raise DataFileError(f'{path}: cannot read image header ({e})') from None
    return int(h), int(w)


def read_road_plane(path) -> Optional[np.ndarray]:
    """KITTI planes/*.txt (a, b, c, d in the rect frame), normalised with b < 0; None if absent."""
    path = str(path)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        plane = np.asarray([float(v) for v in lines[3].split()], dtype=np.float64)
        assert plane.size == 4
    except (IndexError, ValueError, AssertionError):
        raise DataFileError(f'{path}: expected the plane "a b c d" on line 4') from None
    if plane[1] > 0:  # the normal must point up, i.e. -y in the camera frame
        plane = -plane
    return plane / np.linalg.norm(plane[:3])


def read_split_file(path) -> List[str]:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(
            f'{path}: split list not found. Place the standard KITTI ImageSets lists '
            f'(train.txt, val.txt, trainval.txt, test.txt) in {path.parent}/')
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return ids


def load_pickle(path, what: str = 'info file'):
    path = str(path)
    if not os.path.isfile(path):
        raise DataFileError(f'{path}: {what} not found; create it with '
                            f'`python tools/create_data.py kitti --data_path <dataset root>`')
    try:
        with open(path, 'rb') as f:
            return pickle.load(f)
    except Exception as e:  # noqa: BLE001 - truncated pickles raise several types
        raise DataFileError(f'{path}: cannot read {what} ({type(e).__name__}: {e})') from None


def atomic_pickle_dump(obj, path) -> None:
    """Write to a temp file in the same folder, then os.replace: never a half-written file."""
    path = str(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=d)
    try:
        with os.fdopen(fd, 'wb') as f:
            pickle.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, path) -> None:
    path = str(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=d)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def replace_dir(tmp_dir, final_dir) -> None:
    """Swap a fully written folder into place (the old one is removed only afterwards)."""
    tmp_dir, final_dir = str(tmp_dir), str(final_dir)
    old = None
    if os.path.exists(final_dir):
        old = final_dir + f'.old-{os.getpid()}'
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
