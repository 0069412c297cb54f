"""Input checks shared by every op: numpy or torch in, same type out, clear ValueErrors.

Compiled kernels trust their inputs, so every public op runs these checks first; a bad
array never reaches C++ (no segfaults, no silently wrong results).
"""
from __future__ import annotations

import numpy as np
import torch

from ..geometry import check_boxes

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensor(x, name: str):
    """-> (tensor, was_numpy). Accepts numpy arrays and torch tensors only."""
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ValueError(f'{name}: object arrays are not supported')
        return torch.from_numpy(np.ascontiguousarray(x)), True
    raise ValueError(f'{name}: expected a numpy array or torch tensor, got {type(x).__name__}')


def back(x: torch.Tensor, was_numpy: bool):
    return x.cpu().numpy() if was_numpy else x


def boxes_arg(boxes, name: str, dims: int = 7):
    """Validate (N, >=dims) finite float boxes; -> (tensor, was_numpy)."""
    t, was_np = as_tensor(boxes, name)
    if t.dtype not in _FLOATS:
        raise ValueError(f'{name}: expected a floating dtype, got {t.dtype}')
    if t.ndim != 2 or t.shape[1] < dims:
        raise ValueError(f'{name}: expected shape (N, {dims}), got {tuple(t.shape)}')
    if t.numel():
        check_boxes(t, name=name, dims=dims)
        neg = (t[:, 3:6] < 0).any(1)
        if bool(neg.any()):
            raise ValueError(f'{name}: box {int(torch.nonzero(neg)[0, 0])} has a negative size (dx, dy, dz)')
    return t, was_np


def _sums_finite(t: torch.Tensor, dims: int) -> bool:
    """Fast screen: NaN/inf make a column sum non-finite (a finite sum proves the column clean;
    overflow of huge finite values only triggers the exact check)."""
    return bool(torch.isfinite(t.sum(0)[:dims]).all())


def points_arg(points, name: str = 'points', dims: int = 3):
    """Validate (N, >=dims) finite float points; -> (tensor, was_numpy)."""
    t, was_np = as_tensor(points, name)
    if t.dtype not in _FLOATS:
        raise ValueError(f'{name}: expected a floating dtype, got {t.dtype}')
    if t.ndim != 2 or t.shape[1] < dims:
        raise ValueError(f'{name}: expected shape (N, >={dims}), got {tuple(t.shape)}')
    if t.numel() and not _sums_finite(t, dims):
        bad = ~torch.isfinite(t[:, :dims]).all(1)     # exact check only when the sum says so
        if bool(bad.any()):
            idx = int(torch.nonzero(bad)[0, 0])
            raise ValueError(f'{name}: point {idx} has NaN or inf coordinates')
    return t, was_np


def scores_arg(scores, n: int, device, name: str = 'scores'):
    t, _ = as_tensor(scores, name)
    if t.dtype not in _FLOATS:
        raise ValueError(f'{name}: expected a floating dtype, got {t.dtype}')
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f'{name}: expected shape ({n},) to match the boxes, got {tuple(t.shape)}')
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f'{name}: contains NaN or inf')
    return t.to(device)


def same_device(a: torch.Tensor, b: torch.Tensor, names: str):
    if a.device != b.device:
        raise ValueError(f'{names}: tensors are on different devices ({a.device} vs {b.device})')


def triple(value, name: str, positive: bool = False):
    """A length-3 float sequence (voxel size) or length-6 (range) check helper."""
    try:
        vals = [float(v) for v in (value.tolist() if hasattr(value, 'tolist') else value)]
    except (TypeError, ValueError):
        raise ValueError(f'{name}: expected a sequence of numbers, got {value!r}') from None
    if not all(np.isfinite(vals)):
        raise ValueError(f'{name}: contains NaN or inf: {vals}')
    if positive and any(v <= 0 for v in vals):
        raise ValueError(f'{name}: every entry must be > 0, got {vals}')
    return vals
