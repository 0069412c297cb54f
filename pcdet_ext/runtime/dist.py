"""Distributed helpers: torchrun (`--launcher pytorch`) set-up, rank queries, result merging.
Backend: nccl on CUDA, gloo on CPU."""
from __future__ import annotations

import datetime
import os
import random
import time
from typing import List, Tuple

import numpy as np
import torch
import torch.distributed as tdist

_GLOO_DRAIN_S = 0.2  # see destroy()
_HOLDERS = 0  # nested init_dist_pytorch calls sharing the one process group


def is_dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def get_dist_info() -> Tuple[int, int]:
    """(rank, world_size); (0, 1) outside a process group."""
    if is_dist():
        return tdist.get_rank(), tdist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return get_dist_info()[0] == 0


def init_dist_pytorch(tcp_port: int = 18888, local_rank: int = 0, backend: str = None,
                      device: str = 'cpu', timeout_min: int = 30) -> Tuple[int, int]:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT); falls back to localhost:tcp_port when they are missing.
    Returns (world_size, rank).

    Nested use (a driver that holds a group and calls the train / test tools, which init and
    destroy their own): an existing group is reused and counted, and `destroy` only ends it when
    the outermost holder lets go."""
    global _HOLDERS
    if is_dist():
        _HOLDERS = max(_HOLDERS, 1) + 1  # a group made outside this module counts as one holder
        return tdist.get_world_size(), tdist.get_rank()
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        raise RuntimeError('--launcher pytorch expects torchrun\'s environment (RANK, WORLD_SIZE); '
                           'start with: torchrun --nproc_per_node N tools/train.py --launcher pytorch ...')
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ.setdefault('MASTER_PORT', str(tcp_port))
    local_rank = int(os.environ.get('LOCAL_RANK', local_rank))
    if backend is None:
        backend = 'nccl' if str(device).startswith('cuda') else 'gloo'
    if str(device).startswith('cuda'):
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    tdist.init_process_group(backend=backend, init_method='env://',
                             timeout=datetime.timedelta(minutes=timeout_min))
    _HOLDERS = 1
    return tdist.get_world_size(), tdist.get_rank()


def barrier():
    if is_dist():
        tdist.barrier()


def destroy(sync: bool = True):
    """Let go of the process group; it ends when the last holder (see init_dist_pytorch) lets go.

    With `sync` (a normal end; pass False while an error unwinds, when the other ranks may never
    arrive) all ranks meet first, and on gloo the main thread then drops the GIL for a moment: gloo's
    worker threads free each finished collective (and the Python-made tensors it holds, which
    takes the GIL) only after `wait()` has returned, and `destroy_process_group` does not join
    them. A worker still waiting for the GIL when the interpreter shuts down is killed inside a
    C++ destructor and aborts the process ("terminate called without an active exception",
    SIGABRT) after all the work was done."""
    global _HOLDERS
    if is_dist():
        _HOLDERS = max(_HOLDERS - 1, 0)
        if _HOLDERS == 0:
            if sync:
                tdist.barrier()
                if tdist.get_backend() == 'gloo':
                    time.sleep(_GLOO_DRAIN_S)
            tdist.destroy_process_group()


def set_random_seed(seed: int):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def merge_results_dist(results: List, total_size: int) -> List:
    """Gather per-rank result lists produced under a non-shuffled DistributedSampler (rank r got
    indices r, r+W, r+2W, ...) and restore dataset order, dropping the sampler's padding."""
    if not is_dist():
        return list(results)
    _, world = get_dist_info()
    gathered: List[List] = [None] * world
    tdist.all_gather_object(gathered, list(results))
    merged = []
    for i in range(max(len(g) for g in gathered)):
        for g in gathered:
            if i < len(g):
                merged.append(g[i])
    return merged[:total_size]
