from .kitti_dataset import KittiDataset
from ..data_io import DataFileError
from .kitti_label_io import KittiLabelError, read_label_file, write_label_file

__all__ = ['KittiDataset', 'DataFileError', 'KittiLabelError', 'read_label_file', 'write_label_file']
