"""The training loop (OpenPCDet's train_model / train_one_epoch), rank-0 logging and saving."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import tqdm
from torch.nn.utils import clip_grad_norm_

from .checkpoint import checkpoint_state, prune_checkpoints, save_checkpoint


def train_one_epoch(model, optimizer, train_loader, model_func, lr_scheduler, accumulated_iter: int,
                    grad_norm_clip: float, rank: int, tbar, total_it_each_epoch: int, dataloader_iter,
                    tb_log=None, logger=None, logger_iter_interval: int = 50, cur_epoch: int = 0):
    pbar = None
    if rank == 0:
        pbar = tqdm.tqdm(total=total_it_each_epoch, leave=(cur_epoch + 1 == getattr(tbar, 'total', 0)),
                         desc='train', dynamic_ncols=True)
    t_start = time.time()
    for cur_it in range(total_it_each_epoch):
        try:
            batch = next(dataloader_iter)
        except StopIteration:
            dataloader_iter = iter(train_loader)
            batch = next(dataloader_iter)
        lr_scheduler.step(accumulated_iter)
        cur_lr = lr_scheduler.get_lr()[0]
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, tb_dict, disp_dict = model_func(model, batch)
        if not torch.isfinite(loss):
            # a bad batch must not poison the weights; keep the run going and say so
            if logger is not None:
                logger.warning(f'epoch {cur_epoch} iter {cur_it}: non-finite loss {loss.item()}; step skipped')
            optimizer.zero_grad(set_to_none=True)
            accumulated_iter += 1
            continue
        loss.backward()
        grad_norm = clip_grad_norm_(model.parameters(), grad_norm_clip)
        optimizer.step()
        accumulated_iter += 1
        if rank == 0:
            disp = {'loss': f'{loss.item():.4f}', 'lr': f'{cur_lr:.2e}'}
            disp.update({k: (f'{v:.4f}' if isinstance(v, float) else v) for k, v in (disp_dict or {}).items()})
            pbar.update()
            pbar.set_postfix(disp)
            tbar.set_postfix({'total_it': accumulated_iter})
            if tb_log is not None:
                tb_log.add_scalar('train/loss', loss.item(), accumulated_iter)
                tb_log.add_scalar('meta_data/learning_rate', cur_lr, accumulated_iter)
                tb_log.add_scalar('train/grad_norm', float(grad_norm), accumulated_iter)
                for key, val in (tb_dict or {}).items():
                    tb_log.add_scalar('train/' + key, float(val), accumulated_iter)
            if logger is not None and logger_iter_interval > 0 and (
                    (cur_it + 1) % logger_iter_interval == 0 or cur_it + 1 == total_it_each_epoch):
                elapsed = time.time() - t_start
                logger.info(f'Train: epoch {cur_epoch} iter {cur_it + 1}/{total_it_each_epoch} '
                            f'total_it {accumulated_iter} loss {loss.item():.4f} lr {cur_lr:.3e} '
                            f'grad_norm {float(grad_norm):.3f} time/it {elapsed / (cur_it + 1):.3f}s')
    if pbar is not None:
        pbar.close()
    return accumulated_iter, dataloader_iter


def train_model(model, optimizer, train_loader, model_func, lr_scheduler, optim_cfg, start_epoch: int,
                total_epochs: int, start_iter: int, rank: int, tb_log, ckpt_save_dir, train_sampler=None,
                lr_warmup_scheduler=None, ckpt_save_interval: int = 1, max_ckpt_save_num: int = 50,
                merge_all_iters_to_one_epoch: bool = False, logger=None, logger_iter_interval: int = 50,
                grad_norm_clip: float = 10.0, on_epoch_end=None):
    """Train epochs [start_epoch, total_epochs); rank 0 writes checkpoint_epoch_<n>.pth every
    `ckpt_save_interval` epochs (and after the last) and keeps the newest `max_ckpt_save_num`."""
    accumulated_iter = start_iter
    ckpt_save_dir = Path(ckpt_save_dir)
    total_it_each_epoch = len(train_loader)
    if merge_all_iters_to_one_epoch:
        assert hasattr(train_loader.dataset, 'merge_all_iters_to_one_epoch')
        train_loader.dataset.merge_all_iters_to_one_epoch(merge=True, epochs=total_epochs)
        total_it_each_epoch = len(train_loader) // max(total_epochs, 1)
    if total_it_each_epoch == 0:
        raise ValueError('the training set yields no batch (empty dataset, or fewer frames than the batch size)')
    dataloader_iter = iter(train_loader)
    with tqdm.trange(start_epoch, total_epochs, desc='epochs', dynamic_ncols=True, leave=True,
                     disable=(rank != 0)) as tbar:
        for cur_epoch in tbar:
            if train_sampler is not None and hasattr(train_sampler, 'set_epoch'):
                train_sampler.set_epoch(cur_epoch)
                dataloader_iter = iter(train_loader)
            sched = lr_warmup_scheduler if (lr_warmup_scheduler is not None
                                            and cur_epoch < optim_cfg.WARMUP_EPOCH) else lr_scheduler
            accumulated_iter, dataloader_iter = train_one_epoch(
                model, optimizer, train_loader, model_func, sched, accumulated_iter, grad_norm_clip, rank,
                tbar, total_it_each_epoch, dataloader_iter, tb_log, logger, logger_iter_interval, cur_epoch)
            trained_epoch = cur_epoch + 1
            if rank == 0 and (trained_epoch % ckpt_save_interval == 0 or trained_epoch == total_epochs):
                path = save_checkpoint(checkpoint_state(model, optimizer, trained_epoch, accumulated_iter),
                                       ckpt_save_dir / f'checkpoint_epoch_{trained_epoch}')
                prune_checkpoints(ckpt_save_dir, max_ckpt_save_num)
                if logger is not None:
                    logger.info(f'saved {path}')
            if on_epoch_end is not None:
                on_epoch_end(trained_epoch, accumulated_iter)
    return accumulated_iter
