"""Test-time evaluation over a dataloader (OpenPCDet's eval_one_epoch): predictions ->
dataset.generate_prediction_dicts -> result.pkl -> dataset.evaluation."""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import torch
import tqdm

from .batch import load_data_to_gpu
from .dist import get_dist_info, merge_results_dist


def eval_settings(model_cfg) -> dict:
    """The POST_PROCESSING keys evaluation reads; read by the tools before the config check."""
    pp = model_cfg.get('POST_PROCESSING', None) if model_cfg is not None else None
    if pp is None:
        return {'RECALL_THRESH_LIST': [0.3, 0.5, 0.7], 'EVAL_METRIC': 'kitti'}
    return {'RECALL_THRESH_LIST': list(pp.get('RECALL_THRESH_LIST', [0.3, 0.5, 0.7])),
            'EVAL_METRIC': pp.get('EVAL_METRIC', 'kitti')}


def _atomic_pickle(obj, path: Path):
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    with open(tmp, 'wb') as f:
        pickle.dump(obj, f)
    os.replace(tmp, path)


def eval_one_epoch(model, dataloader, epoch_id, logger, result_dir, settings: dict, class_names=None,
                   save_to_file: bool = False, dist_test: bool = False, device='cpu', tb_log=None) -> dict:
    """Returns the metrics dict on rank 0 ({} on other ranks)."""
    result_dir = Path(result_dir)
    result_dir.mkdir(parents=True, exist_ok=True)
    final_output_dir = result_dir / 'final_result' / 'data'
    if save_to_file:
        final_output_dir.mkdir(parents=True, exist_ok=True)
    threshs = settings['RECALL_THRESH_LIST']
    metric = {'gt_num': 0}
    for t in threshs:
        metric[f'recall_roi_{t}'] = 0
        metric[f'recall_rcnn_{t}'] = 0
    dataset = dataloader.dataset
    class_names = class_names if class_names is not None else dataset.class_names
    rank, world = get_dist_info()
    if logger is not None:
        logger.info(f'*************** EPOCH {epoch_id} EVALUATION *****************')
    model.eval()
    det_annos = []
    start = time.time()
    for batch_dict in tqdm.tqdm(dataloader, desc='eval', dynamic_ncols=True, leave=True, disable=rank != 0):
        load_data_to_gpu(batch_dict, device)
        with torch.no_grad():
            pred_dicts, ret_dict = model(batch_dict)
        for t in threshs:
            metric[f'recall_roi_{t}'] += ret_dict.get(f'roi_{t}', 0)
            metric[f'recall_rcnn_{t}'] += ret_dict.get(f'rcnn_{t}', 0)
        metric['gt_num'] += ret_dict.get('gt', 0)
        det_annos += dataset.generate_prediction_dicts(
            batch_dict, pred_dicts, class_names, output_path=final_output_dir if save_to_file else None)
    elapsed = time.time() - start
    if dist_test:
        det_annos = merge_results_dist(det_annos, len(dataset))
        metrics = merge_results_dist([metric], world)
        metric = {k: sum(float(m[k]) for m in metrics) for k in metric}
    n = max(len(dataloader.dataset), 1)
    if logger is not None:
        logger.info(f'Generate label finished (sec_per_example: {elapsed / n * (world if dist_test else 1):.4f} s).')
    if rank != 0:
        return {}
    ret = {'frames_per_s': n / max(elapsed, 1e-9)}
    gt_num = metric['gt_num']
    for t in threshs:
        ret[f'recall/roi_{t}'] = float(metric[f'recall_roi_{t}']) / max(gt_num, 1)
        ret[f'recall/rcnn_{t}'] = float(metric[f'recall_rcnn_{t}']) / max(gt_num, 1)
        if logger is not None:
            logger.info(f'recall_roi_{t}: {ret[f"recall/roi_{t}"]:.6f}')
            logger.info(f'recall_rcnn_{t}: {ret[f"recall/rcnn_{t}"]:.6f}')
    total_pred = sum(len(a['name']) for a in det_annos)
    if logger is not None:
        logger.info(f'Average predicted number of objects ({len(det_annos)} samples): '
                    f'{total_pred / max(1, len(det_annos)):.3f}')
    _atomic_pickle(det_annos, result_dir / 'result.pkl')
    result_str, result_dict = dataset.evaluation(det_annos, class_names, eval_metric=settings['EVAL_METRIC'],
                                                 output_path=final_output_dir)
    if logger is not None:
        logger.info(result_str)
        logger.info(f'Result is saved to {result_dir}')
    ret.update(result_dict or {})
    if tb_log is not None:
        step = int(epoch_id) if str(epoch_id).isdigit() else 0
        for k, v in ret.items():
            if isinstance(v, (int, float)):
                tb_log.add_scalar(f'eval/{k}', v, step)
    return ret
