"""ALPI auto-labelling of a KITTI-layout folder from 2D boxes and size priors.

    python tools/alpi_label.py --data_path data/kitti --split train --ratio 30 --steps 2 --out output/alpi
        [--cfg_file cfgs/alpi/alpi_kitti.yaml] [--detections dets.txt] [--pretrained_model ckpt.pth]
        [--step K] [--epochs E] [--set KEY VALUE ...]

Writes <out>/label_2/<id>.txt (3D boxes + scores for every labelled 2D box) and per-step folders
<out>/step_<k>/ with checkpoints, pseudo-labels and reports. --step K runs only step K (earlier
steps must be done; a killed run resumes). Only class and 2D box are read from the label files
(or the detections file, lines `frame_id class x1 y1 x2 y2 score`).
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

DEFAULT_CFG = Path(__file__).resolve().parents[1] / 'cfgs' / 'alpi' / 'alpi_kitti.yaml'


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data_path', required=True, help='KITTI-layout root (training/{velodyne,calib,image_2,label_2})')
    p.add_argument('--split', default=None, help='ImageSets/<split>.txt (default: the config\'s)')
    p.add_argument('--ratio', type=float, default=None, help='proxies per 100 real objects (default 30)')
    p.add_argument('--steps', type=int, default=None, help='pseudo-labelling steps after step 0')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--cfg_file', default=str(DEFAULT_CFG))
    p.add_argument('--detections', default=None, help='2D detections file instead of label_2')
    p.add_argument('--pretrained_model', default=None, help='warm-start weights for every step')
    p.add_argument('--step', type=int, default=None, help='run only this step')
    p.add_argument('--epochs', type=int, default=None, help='override OPTIMIZATION.NUM_EPOCHS')
    p.add_argument('--no_refine', action='store_true', help='skip the refinement stage')
    p.add_argument('--set', dest='set_cfgs', nargs=argparse.REMAINDER, default=None, help='KEY VALUE pairs')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from pcdet_ext.config import ConfigDict, cfg_from_list, cfg_from_yaml_file
    from pcdet_ext.alpi.pipeline import ALPIPipeline
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    if not Path(args.data_path).is_dir():
        raise SystemExit(f'--data_path {args.data_path}: not a directory')
    if args.detections and not Path(args.detections).is_file():
        raise SystemExit(f'--detections {args.detections}: file not found')
    cfg = ConfigDict()
    cfg_from_yaml_file(args.cfg_file, cfg)
    if args.set_cfgs:
        cfg_from_list(args.set_cfgs, cfg)
    if args.epochs is not None:
        cfg.OPTIMIZATION.NUM_EPOCHS = args.epochs
    if args.no_refine:
        cfg.ALPI.REFINE.ENABLED = False
    pipe = ALPIPipeline(cfg, args.out, data_path=args.data_path, split=args.split, ratio=args.ratio,
                        steps=args.steps, detections=args.detections, pretrained_model=args.pretrained_model)
    return pipe.run(only_step=args.step)


if __name__ == '__main__':
    main()
