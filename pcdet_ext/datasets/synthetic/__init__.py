"""The embedded synthetic KITTI-format dataset (DESIGN.md section 3, "Data").

A 64-beam rotating LiDAR simulated by ray casting over street scenes with Car / Pedestrian /
Cyclist, written as real KITTI files with a real KITTI calibration; read back by the same
KITTI loader as real data. See docs/synthetic.md.

    from pcdet_ext.datasets.synthetic import generate_dataset
    generate_dataset('data/synthetic', num_frames=500, seed=0, workers=2)
"""
from .frame import default_lidar, frame_rng, generate_frame
from .labels import IMAGE_SHAPE, KITTI_CALIB, kitti_calibration
from .lidar_model import LidarModel, Primitives, Scan, hdl64e_elevations_deg
from .objects import CLASS_NAMES, SIZE_STATS
from .writer import GENERATOR_VERSION, frame_complete, generate_dataset, split_frames, write_frame

__all__ = ['generate_dataset', 'generate_frame', 'write_frame', 'frame_complete', 'split_frames',
           'frame_rng', 'default_lidar', 'LidarModel', 'Primitives', 'Scan', 'hdl64e_elevations_deg',
           'kitti_calibration', 'KITTI_CALIB', 'IMAGE_SHAPE', 'CLASS_NAMES', 'SIZE_STATS',
           'GENERATOR_VERSION']
