"""Moving a collated batch_dict to the device, and the (model, batch) -> loss adapter."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import torch

# keys that stay on the host as they are (strings, calibration objects, per-frame metadata)
HOST_KEYS = ('frame_id', 'metadata', 'calib', 'calib_info', 'gt_names', 'db_flag', 'image_path')


def load_data_to_gpu(batch_dict: dict, device='cuda') -> dict:
    """In place, OpenPCDet semantics: numpy arrays -> float tensors on `device`, except host-only
    keys; `image_shape` -> int; `images` (B, H, W, C) -> float (B, C, H, W). Tensors are moved."""
    device = torch.device(device)
    for key, val in batch_dict.items():
        if key in HOST_KEYS:
            continue
        if isinstance(val, torch.Tensor):
            batch_dict[key] = val.to(device, non_blocking=True)
            continue
        if not isinstance(val, np.ndarray) or val.dtype == object or val.dtype.kind in 'USO':
            continue
        if key == 'images':
            t = torch.from_numpy(np.ascontiguousarray(val)).float()
            if t.dim() == 4 and t.shape[-1] in (1, 3, 4):
                t = t.permute(0, 3, 1, 2)
            batch_dict[key] = t.contiguous().to(device)
        elif key == 'image_shape':
            batch_dict[key] = torch.from_numpy(val).int().to(device)
        else:
            batch_dict[key] = torch.from_numpy(val).float().to(device)
    return batch_dict


ModelReturn = namedtuple('ModelReturn', ['loss', 'tb_dict', 'disp_dict'])


def model_fn_decorator(device='cpu'):
    """Returns model_func(model, batch_dict) -> (loss, tb_dict, disp_dict), as OpenPCDet's."""
    def model_func(model, batch_dict):
        load_data_to_gpu(batch_dict, device)
        ret_dict, tb_dict, disp_dict = model(batch_dict)
        loss = ret_dict['loss'].mean()
        inner = model.module if hasattr(model, 'module') else model
        if hasattr(inner, 'update_global_step'):
            inner.update_global_step()
        return ModelReturn(loss, tb_dict, disp_dict)
    return model_func
