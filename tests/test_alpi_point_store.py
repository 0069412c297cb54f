"""ALPI point store: the 'disk' store gives the same items as the in-memory one (training with
proxies and pastes, and labelling), and ArrayStore round-trips arrays, through fork and pickle."""
import os
import pickle

import numpy as np
import pytest

from pcdet_ext.alpi.dataset import ALPIFrustumDataset
from pcdet_ext.config import ConfigDict
from pcdet_ext.utils.array_store import ArrayStore

from _synthetic_helpers import synthetic_root

CLASSES = ['Car', 'Pedestrian', 'Cyclist']


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory, 'alpi_store', num_frames=3, seed=5)


def _cfg(root, mode, **kw):
    cfg = {'DATASET': 'ALPIFrustumDataset', 'DATA_PATH': str(root), 'DATA_SPLIT': {'train': 'train', 'test': 'train'},
           'FRUSTUM': {'NUM_POINTS': 128}, 'PROXY': {'RATIO': 150}, 'PROGRESS': False,
           'DEPTH_HINT': {'MODE': 'lidar'}, 'POINT_STORE': {'MODE': mode}}
    cfg.update(kw)
    return ConfigDict(cfg)


def _assert_same_items(a, b):
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]), err_msg=f'item {i} key {k}')


@pytest.mark.parametrize('training', [True, False])
def test_disk_store_gives_identical_items(synth_root, training):
    mem = ALPIFrustumDataset(_cfg(synth_root, 'memory'), CLASSES, training=training)
    disk = ALPIFrustumDataset(_cfg(synth_root, 'disk'), CLASSES, training=training)
    assert mem.store.mode == 'memory' and disk.store.mode == 'disk'
    assert disk.store.nbytes > mem.store.nbytes  # disk mode also parks the frustums
    kinds = {k for k, _ in disk.items}
    assert kinds == ({'real', 'proxy'} if training else {'real'})
    # disk mode holds no point array of a sample or candidate in memory
    held = [s.points for s in disk.samples] + [inj.sample.points for inj in disk.injected]
    assert all(isinstance(p, int) for p in held) and all(isinstance(c, int) for c in disk.candidates.values())
    for epoch in (0, 1):  # training jitter depends on the epoch: both stores re-cut the same points
        mem.set_epoch(epoch)
        disk.set_epoch(epoch)
        _assert_same_items(mem, disk)


def test_auto_mode_switches_on_frame_count(synth_root):
    assert ALPIFrustumDataset(_cfg(synth_root, 'auto'), CLASSES, training=False).store.mode == 'memory'
    cfg = _cfg(synth_root, 'auto', POINT_STORE={'MODE': 'auto', 'AUTO_FRAMES': 1})
    assert ALPIFrustumDataset(cfg, CLASSES, training=False).store.mode == 'disk'


def test_bad_point_store_config_names_the_key(synth_root):
    with pytest.raises(ValueError, match='POINT_STORE'):
        ALPIFrustumDataset(_cfg(synth_root, 'ram'), CLASSES, training=False)


@pytest.mark.parametrize('mode', ['memory', 'disk'])
def test_array_store_round_trip_fork_and_pickle(tmp_path, mode):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(int(n), 4)).astype(np.float32) for n in rng.integers(0, 50, 20)]
    arrays.append(np.arange(7, dtype=np.int64))
    store = ArrayStore(mode, str(tmp_path))
    refs = [store.put(a) for a in arrays]
    assert os.listdir(tmp_path) == []  # the disk file is unlinked at once: nothing is left behind
    for r, a in zip(refs, arrays):
        got = store.get(r)
        assert got.dtype == a.dtype and got.shape == a.shape
        np.testing.assert_array_equal(got, a)
    big = max(range(len(arrays) - 1), key=lambda i: arrays[i].size)
    before = arrays[big].copy()
    arrays[big][:] = 99  # the store holds copies
    np.testing.assert_array_equal(store.get(refs[big]), before)
    # a forked reader (DataLoader worker) reads the same bytes through the inherited descriptor
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = all(np.array_equal(store.get(ref), store.get(ref)) for ref in refs) and \
            np.array_equal(store.get(refs[-1]), np.arange(7))
        os.write(w, b'1' if ok else b'0')
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b'1'
    clone = pickle.loads(pickle.dumps(store))
    for ref in refs:
        np.testing.assert_array_equal(clone.get(ref), store.get(ref))
