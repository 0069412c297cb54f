"""Write synthetic frames as a KITTI dataset: streamed frame by frame, every file atomic
(tmp + os.replace), resumable (complete frames are skipped), parallel across processes.

Layout under out_dir:
  training/{velodyne/*.bin, calib/*.txt, label_2/*.txt, planes/*.txt, image_2/*.png}
  ImageSets/{train,val,trainval,test}.txt   (test.txt is empty: every frame has labels)
  synthetic_meta.json                        (seed and generator version, checked on resume)
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List

import numpy as np

from .frame import generate_frame
from .labels import IMAGE_SHAPE
from .render import render_depth_image

# Bump when a change alters the bytes a (seed, frame) produces; resume refuses to mix versions.
GENERATOR_VERSION = 1
META_FILE = 'synthetic_meta.json'
_SUBDIRS = ('velodyne', 'calib', 'label_2', 'planes', 'image_2')
_THREAD_VARS = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')


def frame_id(idx: int) -> str:
    return f'{idx:06d}'


def _frame_paths(root: Path, idx: int, write_images: bool) -> Dict[str, Path]:
    fid = frame_id(idx)
    tr = root / 'training'
    paths = {'velodyne': tr / 'velodyne' / f'{fid}.bin', 'calib': tr / 'calib' / f'{fid}.txt',
             'planes': tr / 'planes' / f'{fid}.txt', 'label_2': tr / 'label_2' / f'{fid}.txt'}
    if write_images:
        paths['image_2'] = tr / 'image_2' / f'{fid}.png'
    return paths


def _tmp(path: Path) -> Path:
    return path.with_name(f'{path.name}.tmp{os.getpid()}')


def _atomic_write(path: Path, data) -> None:
    tmp = _tmp(path)
    with open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)
    os.replace(tmp, path)


def _road_plane_text(ground: np.ndarray, calib) -> str:
    """KITTI planes/*.txt: the ground plane a*x + b*y + c*z + d = 0 in the rect camera frame."""
    g0, gx, gy = ground
    xy = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = calib.lidar_to_rect(np.column_stack([xy, g0 + gx * xy[:, 0] + gy * xy[:, 1]]))
    n = np.cross(pts[1] - pts[0], pts[2] - pts[0])
    n /= np.linalg.norm(n)
    if n[1] > 0:  # KITTI convention: the normal points up, i.e. -y in the camera frame
        n = -n
    d = -float(n @ pts[0])
    return f'# Matrix\nWIDTH 4\nHEIGHT 1\n{n[0]:.6e} {n[1]:.6e} {n[2]:.6e} {d:.6e}\n'


def write_frame(root, idx: int, seed: int, write_images: bool = True) -> dict:
    """Generate frame idx of dataset `seed` and write its files; returns small statistics."""
    root = Path(root)
    frame = generate_frame(seed, idx)
    paths = _frame_paths(root, idx, write_images)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    calib = frame['calib']
    tmp_calib = _tmp(paths['calib'])
    calib.write(str(tmp_calib))
    os.replace(tmp_calib, paths['calib'])
    _atomic_write(paths['planes'], _road_plane_text(frame['scene'].ground.as_array(), calib))
    if write_images:
        from PIL import Image
        img = render_depth_image(frame['points'], calib, IMAGE_SHAPE)
        tmp_img = _tmp(paths['image_2'])
        Image.fromarray(img).save(tmp_img, format='PNG', compress_level=1)
        os.replace(tmp_img, paths['image_2'])
    _atomic_write(paths['velodyne'], np.ascontiguousarray(frame['points'], dtype=np.float32).tobytes())
    _atomic_write(paths['label_2'], frame['labels_text'])  # last: its presence marks a full frame
    return {'points': int(len(frame['points']))}


def frame_complete(root, idx: int, write_images: bool = True) -> bool:
    return all(p.is_file() for p in _frame_paths(Path(root), idx, write_images).values())


def split_frames(num_frames: int, seed: int, val_fraction: float):
    """(train ids, val ids): exactly round(N * val_fraction) val frames (at least one of each
    when N >= 2 and 0 < val_fraction), picked by a per-frame key so growing the dataset keeps
    most earlier assignments."""
    n_val = int(round(num_frames * val_fraction))
    if num_frames >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), num_frames - 1)
    keys = np.array([np.random.default_rng([int(seed), i, 7]).random() for i in range(num_frames)])
    val = np.sort(np.argsort(keys, kind='stable')[:n_val])
    train = np.setdiff1d(np.arange(num_frames), val)
    return train.tolist(), val.tolist()


def _check_meta(root: Path, meta: dict) -> None:
    path = root / META_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f'{path}: unreadable metadata ({e}); delete it or use another out_dir') from None
        for key in ('generator_version', 'seed', 'write_images'):
            if old.get(key) != meta[key]:
                raise ValueError(f'{path}: existing dataset has {key}={old.get(key)!r}, this run asks '
                                 f'for {meta[key]!r}; refusing to mix frames (use another out_dir)')
    _atomic_write(path, json.dumps(meta, indent=1, sort_keys=True) + '\n')


def _worker_init():
    import torch  # small geometry helpers use torch: keep each worker on one thread
    torch.set_num_threads(1)


def _write_one(args):
    root, idx, seed, write_images = args
    return idx, write_frame(root, idx, seed, write_images)


def _clean_tmp(root: Path) -> None:
    """Remove temporaries left by a killed run (never complete files)."""
    for sub in _SUBDIRS:
        for p in (root / 'training' / sub).glob('*.tmp*'):
            p.unlink(missing_ok=True)


def _label_counts(root: Path, ids: List[int]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for i in ids:
        with open(root / 'training' / 'label_2' / f'{frame_id(i)}.txt') as f:
            for line in f:
                if line.strip():
                    name = line.split(' ', 1)[0]
                    counts[name] = counts.get(name, 0) + 1
    return counts


def generate_dataset(out_dir, num_frames: int, seed: int = 0, val_fraction: float = 0.25,
                     workers: int = 1, progress: bool = True, write_images: bool = True) -> dict:
    """Generate (or finish) a synthetic KITTI-format dataset of num_frames frames.

    Frames already complete on disk are skipped, so a killed run resumes where it stopped,
    and the same (seed, frame) always gives the same bytes. Returns a summary dict
    (frames written / skipped, seconds, frames_per_s, points_per_frame, labelled objects
    per class, split sizes)."""
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f'generate_dataset: num_frames must be a positive integer, got {num_frames!r}')
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'generate_dataset: seed must be an integer >= 0, got {seed!r}')
    if not 0 <= val_fraction < 1:
        raise ValueError(f'generate_dataset: val_fraction must be in [0, 1), got {val_fraction!r}')
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f'generate_dataset: workers must be an integer >= 1, got {workers!r}')
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f'generate_dataset: out_dir {root} exists and is not a directory')
    for sub in _SUBDIRS:
        if sub != 'image_2' or write_images:
            (root / 'training' / sub).mkdir(parents=True, exist_ok=True)
    (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
    _check_meta(root, {'generator_version': GENERATOR_VERSION, 'seed': int(seed),
                       'write_images': bool(write_images), 'num_frames': int(num_frames),
                       'val_fraction': float(val_fraction)})
    _clean_tmp(root)

    todo = [i for i in range(num_frames) if not frame_complete(root, i, write_images)]
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc=f'synthetic frames -> {root}', disable=not progress, unit='frame')
    t0 = time.perf_counter()
    points = []
    jobs = [(str(root), i, int(seed), bool(write_images)) for i in todo]
    if workers == 1 or len(todo) <= 1:
        for job in jobs:
            points.append(_write_one(job)[1]['points'])
            bar.update(1)
    else:
        import multiprocessing as mp
        # One BLAS/OpenMP thread per worker: the workers already fill the cores, and
        # oversubscribed OpenBLAS threads make small matmuls ~20x slower.
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        os.environ.update({k: '1' for k in _THREAD_VARS})
        try:
            # spawn: the parent may hold torch thread pools that forking would copy in a bad state
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=mp.get_context('spawn'),
                                     initializer=_worker_init) as pool:
                for _, stats in pool.map(_write_one, jobs, chunksize=2):
                    points.append(stats['points'])
                    bar.update(1)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    seconds = time.perf_counter() - t0
    bar.close()

    train, val = split_frames(num_frames, seed, val_fraction)
    sets = {'train': train, 'val': val, 'trainval': list(range(num_frames)), 'test': []}
    for name, ids in sets.items():
        _atomic_write(root / 'ImageSets' / f'{name}.txt', ''.join(frame_id(i) + '\n' for i in ids))
    return {'out_dir': str(root), 'num_frames': int(num_frames), 'seed': int(seed),
            'written': len(todo), 'skipped': int(num_frames - len(todo)), 'seconds': round(seconds, 3),
            'frames_per_s': round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
            'points_per_frame': round(float(np.mean(points)), 1) if points else None,
            'labelled_objects': _label_counts(root, list(range(num_frames))),
            'splits': {k: len(v) for k, v in sets.items()}}
