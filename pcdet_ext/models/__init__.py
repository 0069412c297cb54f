"""Detectors and their parts, with OpenPCDet's module names (so checkpoints' state_dict keys match).

build_network(model_cfg, num_class, dataset) builds MODEL.NAME from the detector registry;
load_data_to_gpu / load_data_to_device move a collated batch_dict's numpy arrays to torch.
"""
from collections import namedtuple

import numpy as np
import torch

from .. import registry
# Importing the sub-packages registers every module under its class name.
from . import backbones_2d, backbones_3d, dense_heads, detectors, map_to_bev, vfe  # noqa: F401
from .detectors import Detector3DTemplate, PointPillar, SECONDNet  # noqa: F401

# Keys that stay as they are (metadata, calibration objects, strings).
_KEEP_KEYS = {'frame_id', 'metadata', 'calib', 'db_flag', 'image_paths', 'ori_shape', 'img_process_infos'}
_INT_KEYS = {'image_shape'}


def build_network(model_cfg, num_class, dataset):
    try:
        cls = registry.get('detector', model_cfg.NAME)
    except KeyError as e:
        raise KeyError(f'MODEL.NAME: {e.args[0]}') from None
    return cls(model_cfg=model_cfg, num_class=num_class, dataset=dataset)


def load_data_to_device(batch_dict, device=None):
    """In place: numpy arrays -> float tensors on device (CUDA when available by default), as OpenPCDet's
    load_data_to_gpu (voxel_coords travel as float; modules cast them back to int)."""
    if device is None:
        device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    for key, val in batch_dict.items():
        if key == 'camera_imgs' and isinstance(val, torch.Tensor):
            batch_dict[key] = val.to(device)
        if not isinstance(val, np.ndarray) or key in _KEEP_KEYS:
            continue
        if val.dtype.kind in 'OUS':  # object / string arrays (names) stay numpy
            continue
        if key in _INT_KEYS:
            batch_dict[key] = torch.from_numpy(val).int().to(device)
        else:
            batch_dict[key] = torch.from_numpy(val).float().to(device)
    return batch_dict


def load_data_to_gpu(batch_dict):
    return load_data_to_device(batch_dict)


def model_fn_decorator():
    ModelReturn = namedtuple('ModelReturn', ['loss', 'tb_dict', 'disp_dict'])

    def model_func(model, batch_dict):
        load_data_to_device(batch_dict, device=next(model.parameters()).device)
        ret_dict, tb_dict, disp_dict = model(batch_dict)
        loss = ret_dict['loss'].mean()
        (model.module if hasattr(model, 'module') else model).update_global_step()
        return ModelReturn(loss, tb_dict, disp_dict)

    return model_func


__all__ = ['build_network', 'load_data_to_gpu', 'load_data_to_device', 'model_fn_decorator',
           'Detector3DTemplate', 'SECONDNet', 'PointPillar']
