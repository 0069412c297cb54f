"""Run a trained detector on a few frames and write PNGs: a bird's-eye view with predicted (red)
and ground-truth (green) boxes, and the boxes projected on image_2 when the frame has an image.

    python tools/demo.py --cfg_file cfgs/synthetic_models/second_cpu.yaml \
        --ckpt output/synthetic_models/second_cpu/default/ckpt/checkpoint_epoch_N.pth \
        --data_path data/synthetic [--num_frames 4] [--out_dir demo_output]

--data_path is a KITTI-layout root (training/{velodyne,calib,label_2,image_2}, ImageSets, infos);
frames come from the config's test split.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pcdet_ext.runtime.checkpoint import load_params_from_file  # noqa: E402
from pcdet_ext.runtime.batch import load_data_to_gpu  # noqa: E402
from pcdet_ext.runtime.common import default_builders, load_config, resolve_device  # noqa: E402
from pcdet_ext.runtime.logger import create_logger  # noqa: E402
from pcdet_ext.utils.visualization import draw_bev, draw_image_boxes  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='pcdet_ext demo: BEV and image_2 PNGs of detections')
    p.add_argument('--cfg_file', required=True)
    p.add_argument('--ckpt', required=True, help='checkpoint to load')
    p.add_argument('--data_path', required=True, help='KITTI-layout dataset root')
    p.add_argument('--num_frames', type=int, default=4)
    p.add_argument('--score_thresh', type=float, default=0.3, help='draw predictions above this score')
    p.add_argument('--out_dir', default='demo_output')
    p.add_argument('--device', default='auto')
    p.add_argument('--set', dest='set_cfgs', default=None, nargs=argparse.REMAINDER)
    return p.parse_args(argv)


def _image(dataset, frame_id):
    base = Path(getattr(dataset, 'root_split_path', dataset.root_path))
    path = base / 'image_2' / f'{frame_id}.png'
    if not path.is_file():
        return None
    from PIL import Image
    return np.asarray(Image.open(path).convert('RGB'))


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    device = resolve_device(args.device)
    logger = create_logger(None)
    build_dataloader, build_network = default_builders()
    dataset, _, _ = build_dataloader(dataset_cfg=cfg.DATA_CONFIG, class_names=list(cfg.CLASS_NAMES), batch_size=1,
                                     dist=False, root_path=Path(args.data_path), workers=0, logger=logger,
                                     training=False)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=dataset)
    load_params_from_file(model, args.ckpt, logger=logger, to_cpu=device.type == 'cpu')
    model.to(device).eval()
    out_dir = Path(args.out_dir)
    written = []
    for idx in range(min(args.num_frames, len(dataset))):
        batch = dataset.collate_batch([dataset[idx]])
        frame_id = str(batch['frame_id'][0])
        load_data_to_gpu(batch, device)
        with torch.no_grad():
            pred_dicts, _ = model(batch)
        pred = pred_dicts[0]
        keep = pred['pred_scores'] >= args.score_thresh
        boxes, scores, labels = (pred['pred_boxes'][keep], pred['pred_scores'][keep], pred['pred_labels'][keep])
        pts = batch['points'][:, 1:4].cpu().numpy() if 'points' in batch else None
        gt = batch['gt_boxes'][0].cpu().numpy() if 'gt_boxes' in batch else None
        if gt is not None:
            gt = gt[np.abs(gt[:, 3:6]).sum(1) > 0]  # drop collate padding
        kw = dict(pred_boxes=boxes, pred_scores=scores, pred_labels=labels, gt_boxes=gt,
                  class_names=list(cfg.CLASS_NAMES))
        written.append(draw_bev(pts, out_dir / f'{frame_id}_bev.png', pc_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE,
                                title=f'{frame_id}: {len(boxes)} predictions (red), ground truth (green)', **kw))
        img = _image(dataset, frame_id)
        if img is not None and hasattr(dataset, 'get_calib'):
            written.append(draw_image_boxes(img, dataset.get_calib(frame_id), out_dir / f'{frame_id}_image.png',
                                            title=frame_id, **kw))
        logger.info(f'{frame_id}: {len(boxes)} boxes above {args.score_thresh}')
    logger.info(f'wrote {len(written)} PNGs to {out_dir}')
    return written


if __name__ == '__main__':
    main()
