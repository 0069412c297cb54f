"""Checkpoints in OpenPCDet's format: {epoch, it, model_state, optimizer_state, version}.

Writes are atomic (temp file in the same folder + os.replace), so a kill never leaves a
half-written checkpoint under a real name. The loaders are generic over nn.Module; a model
template can expose them as methods (`load_params_from_file`, `load_params_with_optimizer`).
"""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import nn

import pcdet_ext

CKPT_GLOB = 'checkpoint_epoch_*.pth'


class CheckpointError(RuntimeError):
    pass


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def weights_device_name(model: nn.Module) -> str:
    """Where loaded weights end up, for the log: the model's device. Checkpoints are always read to
    the CPU first, so OpenPCDet's `to_cpu` flag does not decide it."""
    p = next(_unwrap(model).parameters(), None)
    return 'GPU' if p is not None and p.is_cuda else 'CPU'


def model_state_to_cpu(state):
    return {k: v.detach().cpu() for k, v in state.items()}


def checkpoint_state(model: Optional[nn.Module] = None, optimizer=None, epoch=None, it=None) -> dict:
    model_state = model_state_to_cpu(_unwrap(model).state_dict()) if model is not None else None
    return {'epoch': epoch, 'it': it, 'model_state': model_state,
            'optimizer_state': optimizer.state_dict() if optimizer is not None else None,
            'version': f'pcdet_ext+{pcdet_ext.__version__}'}


def save_checkpoint(state: dict, filename) -> Path:
    """Save atomically; `filename` with or without '.pth'. Returns the final path."""
    path = Path(str(filename))
    if path.suffix != '.pth':
        path = path.with_name(path.name + '.pth')
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _epoch_of(path) -> int:
    m = re.search(r'checkpoint_epoch_(\d+)\.pth$', str(path))
    return int(m.group(1)) if m else -1


def list_checkpoints(ckpt_dir) -> List[Path]:
    """Checkpoints in `ckpt_dir`, oldest first (by epoch number, then mtime)."""
    files = [Path(p) for p in glob.glob(str(Path(ckpt_dir) / CKPT_GLOB))]
    return sorted(files, key=lambda p: (_epoch_of(p), p.stat().st_mtime))


def prune_checkpoints(ckpt_dir, max_keep: int) -> List[Path]:
    """Delete the oldest checkpoints so that at most `max_keep` remain; returns the deleted."""
    files = list_checkpoints(ckpt_dir)
    removed = []
    if max_keep is not None and max_keep > 0:
        while len(files) > max_keep:
            p = files.pop(0)
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_checkpoint(filename, map_location='cpu') -> dict:
    filename = Path(filename)
    if not filename.is_file():
        raise CheckpointError(f'checkpoint {filename} does not exist')
    try:
        ckpt = torch.load(str(filename), map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f'checkpoint {filename} cannot be read ({type(e).__name__}: {e})') from None
    if not isinstance(ckpt, dict) or 'model_state' not in ckpt:
        raise CheckpointError(f'checkpoint {filename} has no "model_state" (not an OpenPCDet checkpoint)')
    return ckpt


def _fit_tensor(val: torch.Tensor, target: torch.Tensor) -> Optional[torch.Tensor]:
    """Return val shaped like target when they match directly or as a spconv-1.x sparse-conv weight
    ([kz, ky, kx, in, out] -> our [out, kz, ky, kx, in]); else None."""
    if val.shape == target.shape:
        return val
    if val.dim() == 5 and val.permute(4, 0, 1, 2, 3).shape == target.shape:
        return val.permute(4, 0, 1, 2, 3).contiguous()
    return None


def load_state_dict_partial(model: nn.Module, state: dict, logger=None) -> Tuple[dict, List[str]]:
    """Load the matching part of `state` (shape-checked); returns (update_dict, skipped keys)."""
    model = _unwrap(model)
    own = model.state_dict()
    update, skipped = {}, []
    for k, v in state.items():
        if k in own and isinstance(v, torch.Tensor):
            fitted = _fit_tensor(v, own[k])
            if fitted is not None:
                update[k] = fitted
                continue
        skipped.append(k)
    own.update(update)
    model.load_state_dict(own)
    if logger is not None:
        missing = [k for k in own if k not in update]
        for k in missing:
            logger.info(f'Not updated weight {k}: {tuple(own[k].shape)}')
        for k in skipped:
            logger.info(f'Checkpoint weight not used {k}')
        logger.info(f'==> Done (loaded {len(update)}/{len(own)})')
    return update, skipped


def load_params_from_file(model: nn.Module, filename, logger=None, to_cpu: bool = False,
                          pre_trained_path=None):
    """Load model weights (OpenPCDet `load_params_from_file`): shape-matching keys only."""
    if logger is not None:
        logger.info(f'==> Loading parameters from checkpoint {filename} to {weights_device_name(model)}')
    ckpt = read_checkpoint(filename)
    if logger is not None and 'version' in ckpt:
        logger.info(f'==> Checkpoint trained from version: {ckpt["version"]}')
    state = ckpt['model_state']
    if pre_trained_path is not None:
        pre = read_checkpoint(pre_trained_path)['model_state']
        state = dict(pre, **state)
    load_state_dict_partial(model, state, logger)
    return ckpt


def load_params_with_optimizer(model: nn.Module, filename, to_cpu: bool = False, optimizer=None,
                               logger=None) -> Tuple[int, int]:
    """Load weights and optimizer state for resuming; returns (it, epoch) as OpenPCDet."""
    if logger is not None:
        logger.info(f'==> Loading parameters from checkpoint {filename} to {weights_device_name(model)}')
    ckpt = read_checkpoint(filename)
    own = _unwrap(model).state_dict()
    bad = [k for k in own if k not in ckpt['model_state']]
    if bad:
        raise CheckpointError(f'checkpoint {filename} does not match the model: missing {bad[:5]}'
                              f'{" ..." if len(bad) > 5 else ""}')
    load_state_dict_partial(model, ckpt['model_state'], None)
    if optimizer is not None and ckpt.get('optimizer_state') is not None:
        if logger is not None:
            logger.info(f'==> Loading optimizer parameters from checkpoint {filename}')
        optimizer.load_state_dict(ckpt['optimizer_state'])
    epoch = ckpt.get('epoch', -1)
    it = ckpt.get('it', 0)
    if logger is not None:
        logger.info(f'==> Done (epoch {epoch}, it {it})')
    return (int(it) if it is not None else 0), (int(epoch) if epoch is not None else -1)


def resume_latest(model: nn.Module, ckpt_dir, optimizer=None, logger=None, to_cpu=False):
    """Resume from the newest readable checkpoint in ckpt_dir; returns (it, epoch, path) or
    (0, 0, None) when there is none. An unreadable newest file falls back to the previous one."""
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            it, epoch = load_params_with_optimizer(model, path, to_cpu=to_cpu, optimizer=optimizer, logger=logger)
            return it, epoch, path
        except CheckpointError as e:
            if logger is not None:
                logger.warning(f'skipping checkpoint: {e}')
    return 0, 0, None
