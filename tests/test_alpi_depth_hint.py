"""The depth hint of real objects (objectness target from 2D evidence + LiDAR, no 3D labels):
the LiDAR surface hint on hand-made depths, its config checks, and on a small synthetic set its
error against the 3D ground truth (read here, in the test, only to measure)."""
import numpy as np
import pytest

from pcdet_ext.alpi.dataset import ALPIFrustumDataset, lidar_surface_depth
from pcdet_ext.config import ConfigDict

from _synthetic_helpers import synthetic_root

CAR_L, CAR_W = 3.89, 1.62
MEAN_EXTENT = (2 / np.pi) * (CAR_L + CAR_W)


def test_surface_hint_finds_the_object_not_occluders_or_background():
    rng = np.random.default_rng(0)
    surface = 20.0 + rng.uniform(0, 2.0, 200)      # the car's visible faces
    occluder = 14.0 + rng.uniform(0, 0.3, 30)       # a pole well in front: outside the window
    background = 45.0 + rng.uniform(0, 5.0, 300)    # a wall behind: outside the window
    ground = rng.uniform(20.0, 30.0, 40)           # sparse ground behind the car's contact
    z = np.concatenate([surface, occluder, background, ground])
    hint = lidar_surface_depth(z, height_hint=19.0, length=CAR_L, width=CAR_W, quantile=10, extent=0.5)
    front = np.percentile(surface, 10)
    assert abs(hint - (front + 0.5 * MEAN_EXTENT)) < 0.3
    # too few points in the window: the height hint is returned unchanged
    assert lidar_surface_depth(background, 19.0, CAR_L, CAR_W) == 19.0
    assert lidar_surface_depth(np.zeros(0), 7.5, CAR_L, CAR_W) == 7.5


def test_surface_hint_prefers_the_denser_cluster():
    rng = np.random.default_rng(1)
    sparse_front = 18.0 + rng.uniform(0, 0.5, 10)
    dense_obj = 22.0 + rng.uniform(0, 2.0, 150)
    hint = lidar_surface_depth(np.concatenate([sparse_front, dense_obj]), 20.0, CAR_L, CAR_W, extent=0.0)
    assert 22.0 <= hint < 22.5


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory, 'alpi_hint', num_frames=6, seed=3)


def _dataset(root, **hint):
    cfg = ConfigDict({'DATASET': 'ALPIFrustumDataset', 'DATA_PATH': str(root),
                      'DATA_SPLIT': {'train': 'train', 'test': 'train'}, 'FRUSTUM': {'NUM_POINTS': 512},
                      'PROGRESS': False, 'DEPTH_HINT': hint})
    return ALPIFrustumDataset(cfg, ['Car', 'Pedestrian', 'Cyclist'], training=False)


def test_bad_depth_hint_config_is_rejected(synth_root):
    with pytest.raises(ValueError, match='DEPTH_HINT: unknown keys'):
        _dataset(synth_root, MODE='lidar', QUANTIL=10)
    with pytest.raises(ValueError, match="MODE must be 'height' or 'lidar'"):
        _dataset(synth_root, MODE='stereo')


def test_lidar_hint_beats_the_height_hint_on_synthetic_cars(synth_root):
    ds = _dataset(synth_root, MODE='lidar')
    err_h, err_l = [], []
    for s in ds.samples:
        if s.cls != 'Car':
            continue
        f = (synth_root / 'training' / 'label_2' / f'{s.frame_id}.txt').read_text().splitlines()[s.obj_index].split()
        h, w, l, x, y, z, ry = map(float, f[8:15])
        true_z = s.from_camera_boxes(np.array([[x, y, z, l, h, w, ry]]))[0, 2]
        err_h.append(ds.height_depth_hint(s) - true_z)
        err_l.append(ds.depth_hint(s) - true_z)
    assert len(err_l) >= 10
    err_h, err_l = np.abs(err_h), np.abs(err_l)
    # measured on 200 frames: median |error| 2.47 m (height) vs 0.26 m (lidar)
    assert np.median(err_l) < 0.6 < np.median(err_h)
    assert _dataset(synth_root).depth_hint(ds.samples[0]) == ds.height_depth_hint(ds.samples[0])
