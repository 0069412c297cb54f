"""Shared fixtures: paths to the real KITTI frames in ../shared (skip clearly when absent)."""
import os
import sys

# Small matrices everywhere: multi-threaded BLAS only adds contention on 2-core machines.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
KITTI_REAL = SHARED / 'data' / 'kitti_real'

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault('MPLBACKEND', 'Agg')


@pytest.fixture(scope='session')
def kitti_real():
    """Root of the real KITTI frames (training/{velodyne,calib,label_2,image_2})."""
    if not (KITTI_REAL / 'training' / 'label_2').is_dir():
        pytest.skip(f'real KITTI frames not found at {KITTI_REAL} (they live in ../shared, outside the repo)')
    return KITTI_REAL


@pytest.fixture(scope='module')
def one_torch_thread():
    """One intra-op torch thread for a module, restored afterwards.

    Tiny CPU models gain nothing from a second OpenMP thread, and on a busy 2-core machine the
    threads wait on each other (index_add_-heavy sparse convs 10-100x slower). The ALPI pipeline
    also sets one thread itself (ALPI.TORCH_THREADS); this gives the rest of the suite its
    threads back. Modules opt in with `pytestmark = pytest.mark.usefixtures('one_torch_thread')`.
    """
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
