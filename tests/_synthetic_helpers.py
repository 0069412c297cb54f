"""A tiny embedded synthetic KITTI-layout dataset for module fixtures (every frame in train)."""
from pathlib import Path

from pcdet_ext.datasets.synthetic import generate_dataset


def synthetic_root(tmp_path_factory, name: str, num_frames: int, seed: int) -> Path:
    root = tmp_path_factory.mktemp(name) / 'synthetic'
    generate_dataset(str(root), num_frames=num_frames, seed=seed, workers=1, progress=False, val_fraction=0.0)
    return root
