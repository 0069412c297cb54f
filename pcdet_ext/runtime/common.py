"""Pieces shared by the train and test tools: config loading, devices, output layout, builders."""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..config import ConfigDict, ConfigError, cfg_from_list, cfg_from_yaml_file, default_root_dir, exp_group_path

# sections a test-only run knowingly does not build (their typos are caught by train.py)
TRAIN_ONLY_KEYS = ('OPTIMIZATION', 'DATA_CONFIG.DATA_AUGMENTOR', '*.train')


def add_common_args(parser: argparse.ArgumentParser):
    parser.add_argument('--cfg_file', type=str, required=True, help='config file (YAML)')
    parser.add_argument('--batch_size', type=int, default=None, help='total batch size over all processes')
    parser.add_argument('--workers', type=int, default=4, help='data-loader workers per process')
    parser.add_argument('--extra_tag', type=str, default='default', help='extra tag for this experiment')
    parser.add_argument('--ckpt', type=str, default=None, help='checkpoint to start from')
    parser.add_argument('--pretrained_model', type=str, default=None, help='pretrained weights')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none')
    parser.add_argument('--tcp_port', type=int, default=18888, help='tcp port for distributed training')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None,
                        help='local rank (set by torch.distributed.launch; torchrun uses LOCAL_RANK)')
    parser.add_argument('--set', dest='set_cfgs', default=None, nargs=argparse.REMAINDER,
                        help='set extra config keys: --set A.B value C.D value')
    parser.add_argument('--max_waiting_mins', type=int, default=0, help='max waiting minutes for new checkpoints')
    parser.add_argument('--start_epoch', type=int, default=0)
    parser.add_argument('--save_to_file', action='store_true', default=False)
    parser.add_argument('--device', type=str, default='auto', help='auto (CUDA when available), cpu, cuda, cuda:N')
    parser.add_argument('--output_root', type=str, default=None,
                        help='folder that holds output/ (default: the repo root in a checkout, else the cwd)')


def load_config(args) -> ConfigDict:
    cfg = ConfigDict()
    cfg.ROOT_DIR = default_root_dir()
    cfg.LOCAL_RANK = 0
    cfg_from_yaml_file(args.cfg_file, cfg)
    cfg.TAG = Path(args.cfg_file).stem
    cfg.EXP_GROUP_PATH = exp_group_path(args.cfg_file)
    if args.set_cfgs is not None:
        cfg_from_list(args.set_cfgs, cfg)
    return cfg


def resolve_device(name: str) -> torch.device:
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(name)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f'--device {name}: CUDA is not available on this machine (use --device cpu)')
    return dev


def output_dir_for(cfg, args) -> Path:
    # absolute: paths under it are written into configs that resolve relative paths against DATA_PATH
    root = Path(args.output_root).resolve() if args.output_root else Path(cfg.ROOT_DIR).resolve()
    return root / 'output' / cfg.EXP_GROUP_PATH / cfg.TAG / args.extra_tag


def timestamp() -> str:
    return datetime.datetime.now().strftime('%Y%m%d-%H%M%S')


def resolve_root_path(cfg) -> Optional[Path]:
    """DATA_PATH as written (relative to the cwd, OpenPCDet habit), else relative to the repo root."""
    data_path = cfg.DATA_CONFIG.get('DATA_PATH', None) if 'DATA_CONFIG' in cfg.keys() else None
    if not data_path:
        return None
    p = Path(str(data_path))
    if p.is_absolute() or p.exists():
        return p
    alt = Path(cfg.ROOT_DIR) / p
    return alt if alt.exists() else p


def default_builders() -> Tuple:
    from ..datasets import build_dataloader
    from ..models import build_network
    return build_dataloader, build_network


def split_batch(total: Optional[int], per_gpu_default: int, world: int) -> int:
    if total is None:
        return per_gpu_default
    if total % world != 0:
        raise SystemExit(f'--batch_size {total} must be divisible by the number of processes ({world})')
    return total // world


def start_run(args, build_dataloader_fn=None, build_network_fn=None):
    """Shared prologue of the train and test tools: config, device, builders, distributed set-up.

    Returns (cfg, device, build_dataloader_fn, build_network_fn, distributed, world, rank).
    """
    import torch
    from . import dist as dist_utils
    try:
        cfg = load_config(args)
    except ConfigError as e:   # a broken yaml or a bad --set key: one line, no traceback
        raise SystemExit(f'error: {e}') from None
    device = resolve_device(args.device)
    if build_dataloader_fn is None or build_network_fn is None:
        bd, bn = default_builders()
        build_dataloader_fn = build_dataloader_fn or bd
        build_network_fn = build_network_fn or bn
    distributed = args.launcher == 'pytorch'
    if distributed:
        world, rank = dist_utils.init_dist_pytorch(args.tcp_port, args.local_rank or 0, device=str(device))
        if device.type == 'cuda':
            device = torch.device('cuda', torch.cuda.current_device())
    else:
        world, rank = 1, 0
    cfg.LOCAL_RANK = rank
    return cfg, device, build_dataloader_fn, build_network_fn, distributed, world, rank
