"""CPSP pre-training through the runtime's training tool.

`train_tool.main` takes a `build_dataloader_fn`; the one built here returns a CPSPDataset for
training (the KITTI val split for testing) and a sampler whose `set_epoch` moves the dataset to
the epoch's pseudo-scenes and, every `refresh_interval` epochs, refreshes the pseudo bank with
the model being trained. Refreshed banks are saved per epoch (`banks_epoch_<e>.pkl`), so a
resumed run reloads them instead of recomputing from a different model state.
"""
from __future__ import annotations

import copy
import logging
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..config import ConfigDict
from .cpsp import CPSPBanks
from .cpsp_dataset import CPSPDataset
from .round_data import labelled_training_cfg

log = logging.getLogger(__name__)

CPSP_DATASET_KEYS = ('NUM_SCENES', 'OBJECTS_PER_SCENE', 'NEGATIVES_PER_SCENE', 'LABELLED_FRAME_SHARE',
                     'GROUND_ALIGN', 'OBJECT_ROTATION')


class EpochHookSampler(DistributedSampler):
    """Shuffling sampler (one replica unless distributed) whose set_epoch also calls
    `dataset.set_epoch(e)` and an optional hook (bank refresh) before the epoch's iterator."""

    def __init__(self, dataset, dist: bool, seed: int, hook: Optional[Callable[[int], None]] = None):
        if dist:
            super().__init__(dataset, shuffle=True, seed=seed)
        else:
            super().__init__(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
        self.hook = hook

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        # augmentation streams per epoch: a run resumed at epoch e draws what an uninterrupted one does
        self.dataset.set_random_seed([self.seed, epoch])
        if self.hook is not None:
            self.hook(epoch)


def _worker_init(worker_id: int, seed: int = 0) -> None:
    ds = torch.utils.data.get_worker_info().dataset
    ds.set_random_seed([seed, ds.epoch, worker_id + 1])


def cpsp_dataset_cfg(data_cfg, cpsp_options: dict, bank_file, infos_path, dbinfos_path):
    """DATA_CONFIG copy for CPSPDataset: CPSP section set by code, gt_sampling disabled (and
    pointed at the round's labelled database, so nothing loads the full training set's)."""
    cfg = labelled_training_cfg(data_cfg, infos_path, dbinfos_path)
    cfg.DATASET = 'CPSPDataset'
    cfg.CPSP = ConfigDict({**{k: copy.deepcopy(v) for k, v in cpsp_options.items() if k in CPSP_DATASET_KEYS},
                           'BANK_FILE': str(bank_file), 'SEED': int(cpsp_options.get('SEED', 0))})
    aug = cfg.get('DATA_AUGMENTOR', None)
    if aug is not None and not isinstance(aug, (list, tuple)):
        disabled = list(aug.get('DISABLE_AUG_LIST', []) or [])
        if 'gt_sampling' not in disabled:
            aug['DISABLE_AUG_LIST'] = disabled + ['gt_sampling']
    return cfg


class BankRefresher:
    """The sampler hook: at the start of epoch e, make the dataset's banks those of the latest
    refresh epoch r = (e // K) * K (the initial banks when r == 0), loading a saved refresh or,
    when none was saved, scoring the unlabelled pool with the current model."""

    def __init__(self, dataset: CPSPDataset, out_dir, interval: int, score_fn: Callable[[], dict],
                 initial_banks: CPSPBanks, rank: int = 0):
        self.dataset, self.out_dir, self.interval = dataset, Path(out_dir), int(interval)
        self.score_fn, self.initial_banks, self.rank = score_fn, initial_banks, rank
        self.current = 0

    def bank_file(self, epoch: int) -> Path:
        return self.out_dir / f'banks_epoch_{epoch}.pkl'

    def __call__(self, epoch: int) -> None:
        if self.interval <= 0:
            return
        r = (epoch // self.interval) * self.interval
        if r == self.current:
            return
        if r == 0:
            self.dataset.banks = self.initial_banks
        elif self.bank_file(r).is_file():
            self.dataset.banks = CPSPBanks.load(self.bank_file(r))
        else:
            if r != epoch:
                log.warning(f'CPSP: banks of epoch {r} were not saved; refreshing with the model of epoch {epoch}')
            self.dataset.refresh_banks(self.score_fn())
            if self.rank == 0:
                self.dataset.banks.save(self.bank_file(r))
        self.current = r


def make_cpsp_builders(cpsp_cfg_fn: Callable, initial_banks: CPSPBanks, out_dir, interval: int,
                       score_unlabelled: Callable, sampler_seed: int):
    """(build_dataloader_fn, build_network_fn, holder) for train_tool.main.

    cpsp_cfg_fn(data_cfg): the CPSP copy of the DATA_CONFIG the training tool hands over;
    score_unlabelled(model, dist): summaries of the unlabelled pool with `model`;
    holder['model'] is the network being trained."""
    from ..datasets import build_dataloader
    from ..models import build_network
    holder = {}

    def build_dataloader_fn(dataset_cfg, class_names, batch_size, dist, root_path=None, workers=4, seed=None,
                            logger=None, training=True, merge_all_iters_to_one_epoch=False, total_epochs=0):
        if not training:
            return build_dataloader(dataset_cfg, class_names, batch_size, dist, root_path=root_path, workers=workers,
                                    seed=seed, logger=logger, training=False)
        if merge_all_iters_to_one_epoch:
            raise ValueError('CPSP training refreshes its banks between epochs: '
                             '--merge_all_iters_to_one_epoch is not supported')
        dataset = CPSPDataset(cpsp_cfg_fn(dataset_cfg), class_names, training=True, root_path=root_path, logger=logger,
                              banks=initial_banks)
        rank = torch.distributed.get_rank() if dist else 0
        refresher = BankRefresher(dataset, out_dir, interval,
                                  lambda: score_unlabelled(holder['model'], dist), initial_banks, rank)
        sampler = EpochHookSampler(dataset, dist, sampler_seed, hook=refresher)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            collate_fn=dataset.collate_batch, drop_last=False,
                            pin_memory=torch.cuda.is_available(), persistent_workers=False,
                            worker_init_fn=partial(_worker_init, seed=sampler_seed) if workers > 0 else None)
        return dataset, loader, sampler

    def build_network_fn(model_cfg, num_class, dataset):
        holder['model'] = build_network(model_cfg, num_class=num_class, dataset=dataset)
        return holder['model']

    return build_dataloader_fn, build_network_fn, holder
