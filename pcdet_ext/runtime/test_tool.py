"""`tools/test.py` / `pcdet-ext-test`: evaluate one checkpoint (--ckpt) or every checkpoint of a
run as it appears (--eval_all [--ckpt_dir]), OpenPCDet's flags and output layout."""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch

from ..config import check_unused_keys, log_config_to_file
from . import dist as dist_utils
from .checkpoint import list_checkpoints, load_params_from_file
from .common import (TRAIN_ONLY_KEYS, add_common_args, output_dir_for, start_run,
                     resolve_root_path, split_batch, timestamp)
from .eval_loop import eval_one_epoch, eval_settings
from .logger import close_logger, create_logger, create_tb_writer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description='pcdet_ext evaluation (OpenPCDet-compatible flags)')
    add_common_args(p)
    p.add_argument('--eval_tag', type=str, default='default', help='eval tag for this experiment')
    p.add_argument('--eval_all', action='store_true', default=False, help='evaluate all checkpoints')
    p.add_argument('--ckpt_dir', type=str, default=None, help='checkpoint folder for --eval_all')
    p.add_argument('--infer_time', action='store_true', default=False, help='(frames/s is always logged)')
    return p


def _epoch_id(ckpt) -> str:
    nums = re.findall(r'\d+', Path(str(ckpt)).name)
    return nums[-1] if nums else 'no_number'


def _record_file(eval_output_dir: Path, split: str) -> Path:
    return eval_output_dir / f'eval_list_{split}.txt'


def repeat_eval_ckpt(model, test_loader, args, settings, eval_output_dir, logger, ckpt_dir, split,
                     dist_test, device, class_names, rank):
    """Evaluate each checkpoint once (newest epochs >= --start_epoch), waiting up to
    --max_waiting_mins for new ones; evaluated epochs are listed in eval_list_<split>.txt."""
    record = _record_file(eval_output_dir, split)
    if rank == 0:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.touch(exist_ok=True)
    tb_log = create_tb_writer(eval_output_dir / f'tensorboard_{split}', rank)
    results = {}
    wait_start = time.time()
    while True:
        done = set(record.read_text().split()) if record.exists() else set()
        todo = [p for p in list_checkpoints(ckpt_dir)
                if _epoch_id(p) not in done and (not _epoch_id(p).isdigit() or int(_epoch_id(p)) >= args.start_epoch)]
        if not todo:
            if time.time() - wait_start > args.max_waiting_mins * 60:
                break
            logger.info(f'waiting for checkpoints in {ckpt_dir} ...')
            time.sleep(30)
            continue
        ckpt = todo[0]
        time.sleep(0 if (time.time() - ckpt.stat().st_mtime) > 5 else 5)  # let a writer finish
        epoch = _epoch_id(ckpt)
        load_params_from_file(model, ckpt, logger=logger, to_cpu=dist_test)
        model.to(device)
        results[epoch] = eval_one_epoch(model, test_loader, epoch, logger, eval_output_dir / f'epoch_{epoch}' / split,
                                        settings, class_names=class_names, save_to_file=args.save_to_file,
                                        dist_test=dist_test, device=device, tb_log=tb_log)
        if rank == 0:
            with open(record, 'a') as f:
                f.write(f'{epoch}\n')
        dist_utils.barrier()
        wait_start = time.time()
    if tb_log is not None:
        tb_log.close()
    return results


def main(argv=None, build_dataloader_fn=None, build_network_fn=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg, device, build_dataloader_fn, build_network_fn, dist_test, world, rank = start_run(
        args, build_dataloader_fn, build_network_fn)
    batch_size = split_batch(args.batch_size, cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU, world)
    class_names = list(cfg.CLASS_NAMES)
    settings = eval_settings(cfg.get('MODEL'))
    split = str(cfg.DATA_CONFIG.get('DATA_SPLIT', {}).get('test', 'val'))

    output_dir = output_dir_for(cfg, args)
    eval_output_dir = output_dir / 'eval'
    if not args.eval_all:
        if args.ckpt is None:
            raise SystemExit('test.py: give --ckpt FILE, or --eval_all [--ckpt_dir DIR]')
        eval_output_dir = eval_output_dir / f'epoch_{_epoch_id(args.ckpt)}' / split
    else:
        eval_output_dir = eval_output_dir / 'eval_all_default'
    if args.eval_tag != 'default':
        eval_output_dir = eval_output_dir / args.eval_tag
    if rank == 0:
        eval_output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / 'log').mkdir(parents=True, exist_ok=True)
    dist_utils.barrier()
    logger = create_logger(output_dir / 'log' / f'log_eval_{timestamp()}.txt', rank=rank)
    logger.info('**********************Start logging**********************')
    logger.info(f'device {device}, processes {world}, batch size per process {batch_size}')
    for key, val in vars(args).items():
        logger.info(f'{key:16} {val}')
    log_config_to_file(cfg, logger=logger)

    test_set, test_loader, _ = build_dataloader_fn(
        dataset_cfg=cfg.DATA_CONFIG, class_names=class_names, batch_size=batch_size, dist=dist_test,
        root_path=resolve_root_path(cfg), workers=args.workers, logger=logger, training=False)
    model = build_network_fn(model_cfg=cfg.MODEL, num_class=len(class_names), dataset=test_set)
    check_unused_keys(cfg, ignore=TRAIN_ONLY_KEYS)

    with torch.no_grad():
        if args.eval_all:
            ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else output_dir / 'ckpt'
            results = repeat_eval_ckpt(model, test_loader, args, settings, eval_output_dir, logger, ckpt_dir,
                                       split, dist_test, device, class_names, rank)
        else:
            if args.pretrained_model is not None:
                load_params_from_file(model, args.pretrained_model, logger=logger, to_cpu=dist_test)
            load_params_from_file(model, args.ckpt, logger=logger, to_cpu=dist_test)
            model.to(device)
            results = {_epoch_id(args.ckpt): eval_one_epoch(
                model, test_loader, _epoch_id(args.ckpt), logger, eval_output_dir, settings,
                class_names=class_names, save_to_file=args.save_to_file, dist_test=dist_test, device=device)}
    close_logger(logger)
    if dist_test:
        dist_utils.destroy()
    return {'output_dir': output_dir, 'eval_output_dir': eval_output_dir, 'results': results}


