"""Datasets: the OpenPCDet template, KITTI (also the embedded synthetic data), augmentor,
processor, and build_dataloader."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..registry import get as _registry_get
from .dataset_template import DatasetTemplate
from .kitti.kitti_dataset import KittiDataset

__all__ = ['DatasetTemplate', 'KittiDataset', 'build_dataloader', 'build_dataset']


def build_dataset(dataset_cfg, class_names, root_path=None, training=True, logger=None):
    name = dataset_cfg.DATASET
    try:
        cls = _registry_get('dataset', name)
    except KeyError as e:
        raise KeyError(f'DATA_CONFIG.DATASET: {e.args[0]}') from None
    return cls(dataset_cfg=dataset_cfg, class_names=class_names, root_path=root_path,
               training=training, logger=logger)


def _worker_init_fn(worker_id, seed=None):
    """Give each worker its own random streams (torch already derives a distinct
    initial seed per worker, from the loader's generator when one was seeded)."""
    info = torch.utils.data.get_worker_info()
    s = torch.initial_seed() % (2 ** 32) if seed is None else seed + worker_id
    np.random.seed(s % (2 ** 32))
    if info is not None and hasattr(info.dataset, 'set_random_seed'):
        info.dataset.set_random_seed(s)


def build_dataloader(dataset_cfg, class_names, batch_size, dist, root_path=None, workers=4,
                     seed=None, logger=None, training=True, merge_all_iters_to_one_epoch=False,
                     total_epochs=0):
    """(dataset, dataloader, sampler) as OpenPCDet; a DistributedSampler when dist."""
    dataset = build_dataset(dataset_cfg, class_names, root_path=root_path, training=training,
                            logger=logger)
    if merge_all_iters_to_one_epoch:
        if not hasattr(dataset, 'merge_all_iters_to_one_epoch'):
            raise ValueError(f'{type(dataset).__name__} cannot merge all iterations into one epoch')
        dataset.merge_all_iters_to_one_epoch(merge=True, epochs=total_epochs)
    if seed is not None:
        dataset.set_random_seed(seed)
    if dist:
        sampler = DistributedSampler(dataset, shuffle=training,
                                     seed=seed if seed is not None else 0)
    else:
        sampler = None
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    dataloader = DataLoader(dataset, batch_size=batch_size, pin_memory=torch.cuda.is_available(),
                            num_workers=workers, shuffle=(sampler is None) and training,
                            collate_fn=dataset.collate_batch, drop_last=False, sampler=sampler,
                            timeout=0, generator=generator,
                            worker_init_fn=partial(_worker_init_fn, seed=None) if workers > 0 else None,
                            persistent_workers=False)
    return dataset, dataloader, sampler
