"""`tools/train.py` / `pcdet-ext-train`: OpenPCDet's training entry point on our runtime.

    python tools/train.py --cfg_file cfgs/synthetic_models/second_cpu.yaml [--epochs N] ...
    torchrun --nproc_per_node 2 tools/train.py --launcher pytorch --cfg_file ...
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from torch import nn

from ..config import check_unused_keys, log_config_to_file
from . import dist as dist_utils
from .checkpoint import load_params_from_file, load_params_with_optimizer, resume_latest
from .batch import model_fn_decorator
from .common import (add_common_args, output_dir_for, resolve_root_path, split_batch, start_run,
                     timestamp)
from .eval_loop import eval_one_epoch, eval_settings
from .logger import close_logger, create_logger, create_tb_writer
from .optimization import build_optimizer, build_scheduler
from .train_loop import train_model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description='pcdet_ext training (OpenPCDet-compatible flags)')
    add_common_args(p)
    p.add_argument('--epochs', type=int, default=None, help='number of epochs (default: OPTIMIZATION.NUM_EPOCHS)')
    p.add_argument('--sync_bn', action='store_true', default=False, help='SyncBatchNorm (CUDA only)')
    p.add_argument('--fix_random_seed', action='store_true', default=False)
    p.add_argument('--ckpt_save_interval', type=int, default=1, help='epochs between checkpoints')
    p.add_argument('--max_ckpt_save_num', type=int, default=30, help='checkpoints to keep')
    p.add_argument('--merge_all_iters_to_one_epoch', action='store_true', default=False)
    p.add_argument('--num_epochs_to_eval', type=int, default=0, help='(OpenPCDet flag; the final model is evaluated)')
    p.add_argument('--logger_iter_interval', type=int, default=50)
    p.add_argument('--skip_eval', action='store_true', default=False, help='no evaluation after training')
    return p


def main(argv=None, build_dataloader_fn=None, build_network_fn=None) -> dict:
    """Run training; returns {output_dir, ckpt_dir, start_epoch, epochs, eval, rank, model}."""
    args = build_parser().parse_args(argv)
    cfg, device, build_dataloader_fn, build_network_fn, dist_train, world, rank = start_run(
        args, build_dataloader_fn, build_network_fn)

    # keys only the tools read: read them now, before the unused-key check
    optim_cfg = cfg.OPTIMIZATION
    batch_size = split_batch(args.batch_size, optim_cfg.BATCH_SIZE_PER_GPU, world)
    cfg_epochs = optim_cfg.NUM_EPOCHS  # read even when --epochs overrides it
    epochs = args.epochs if args.epochs is not None else cfg_epochs
    grad_norm_clip = float(optim_cfg.get('GRAD_NORM_CLIP', 10.0))
    class_names = list(cfg.CLASS_NAMES)
    settings = eval_settings(cfg.get('MODEL'))
    test_split = cfg.DATA_CONFIG.get('DATA_SPLIT', {}).get('test', 'val') if 'DATA_CONFIG' in cfg.keys() else 'val'

    if args.fix_random_seed:
        dist_utils.set_random_seed(666 + rank)

    output_dir = output_dir_for(cfg, args)
    ckpt_dir = output_dir / 'ckpt'
    if rank == 0:
        for sub in ('ckpt', 'eval', 'log', 'tensorboard'):
            (output_dir / sub).mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob('.checkpoint_epoch_*.tmp*'):  # left by a kill during a save
            stale.unlink(missing_ok=True)
    dist_utils.barrier()
    logger = create_logger(output_dir / 'log' / f'train_{timestamp()}.log', rank=rank)
    logger.info('**********************Start logging**********************')
    logger.info(f'device {device}, processes {world}, batch size per process {batch_size}, epochs {epochs}')
    for key, val in vars(args).items():
        logger.info(f'{key:16} {val}')
    log_config_to_file(cfg, logger=logger)
    if rank == 0:
        shutil.copy(args.cfg_file, output_dir / Path(args.cfg_file).name)
    tb_log = create_tb_writer(output_dir / 'tensorboard', rank)

    seed = 666 if args.fix_random_seed else None
    root_path = resolve_root_path(cfg)
    train_set, train_loader, train_sampler = build_dataloader_fn(
        dataset_cfg=cfg.DATA_CONFIG, class_names=class_names, batch_size=batch_size, dist=dist_train,
        root_path=root_path, workers=args.workers, seed=seed, logger=logger, training=True,
        merge_all_iters_to_one_epoch=args.merge_all_iters_to_one_epoch, total_epochs=epochs)
    test_set, test_loader, _ = build_dataloader_fn(
        dataset_cfg=cfg.DATA_CONFIG, class_names=class_names, batch_size=batch_size, dist=dist_train,
        root_path=root_path, workers=args.workers, seed=seed, logger=logger, training=False)

    model = build_network_fn(model_cfg=cfg.MODEL, num_class=len(class_names), dataset=train_set)
    if args.sync_bn:
        if device.type == 'cuda' and dist_train:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning('--sync_bn needs CUDA and --launcher pytorch; ignored')
    model.to(device)
    optimizer = build_optimizer(model, optim_cfg)

    start_epoch = it = 0
    if args.pretrained_model is not None:
        load_params_from_file(model, args.pretrained_model, logger=logger, to_cpu=dist_train)
    if args.ckpt is not None:
        it, start_epoch = load_params_with_optimizer(model, args.ckpt, to_cpu=dist_train,
                                                     optimizer=optimizer, logger=logger)
    else:
        it, start_epoch, path = resume_latest(model, ckpt_dir, optimizer=optimizer, logger=logger, to_cpu=dist_train)
        if path is not None:
            logger.info(f'resumed from {path} (epoch {start_epoch}, it {it})')
    start_epoch = max(start_epoch, 0)

    model.train()  # before the DDP wrap, as OpenPCDet (supports frozen parts)
    if dist_train:
        ids = [device.index] if device.type == 'cuda' else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    lr_scheduler, lr_warmup_scheduler = build_scheduler(
        optimizer, total_iters_each_epoch=len(train_loader), total_epochs=epochs,
        last_epoch=start_epoch, optim_cfg=optim_cfg)

    check_unused_keys(cfg)  # a config key no module read is a typo: fail before any long work

    logger.info(f'**********************Start training {cfg.EXP_GROUP_PATH}/{cfg.TAG}({args.extra_tag})'
                f'**********************')
    train_model(model, optimizer, train_loader, model_fn_decorator(device), lr_scheduler, optim_cfg,
                start_epoch=start_epoch, total_epochs=epochs, start_iter=it, rank=rank, tb_log=tb_log,
                ckpt_save_dir=ckpt_dir, train_sampler=train_sampler, lr_warmup_scheduler=lr_warmup_scheduler,
                ckpt_save_interval=args.ckpt_save_interval, max_ckpt_save_num=args.max_ckpt_save_num,
                merge_all_iters_to_one_epoch=args.merge_all_iters_to_one_epoch, logger=logger,
                logger_iter_interval=args.logger_iter_interval, grad_norm_clip=grad_norm_clip)
    logger.info('**********************End training**********************')

    eval_ret = {}
    if not args.skip_eval:
        result_dir = output_dir / 'eval' / 'eval_with_train' / f'epoch_{epochs}' / str(test_split)
        eval_ret = eval_one_epoch(model.module if dist_train else model, test_loader, epochs, logger,
                                  result_dir, settings, class_names=class_names, save_to_file=args.save_to_file,
                                  dist_test=dist_train, device=device, tb_log=tb_log)
    if tb_log is not None:
        tb_log.close()
    dist_utils.barrier()
    close_logger(logger)
    if dist_train:
        dist_utils.destroy()
    return {'output_dir': output_dir, 'ckpt_dir': ckpt_dir, 'start_epoch': start_epoch, 'epochs': epochs,
            'eval': eval_ret, 'rank': rank, 'model': model.module if dist_train else model}
