"""Offline ALPI pseudo-labelling: steps 0..N, a refinement stage, export.

Step 0 trains the annotator from weak labels + proxies, then labels every real object. Step k
(k >= 1) retrains from scratch (same seed) with the pseudo-labels of step k-1 that pass the
PseudoLabelFilter (score, 2D re-projection IoU with the label box, depth range) as 3D-supervised
instances, plus proxies (and pasted instances when PROXY.COPY_PASTE_RATIO > 0), with the batch
size-prior loss on. The refinement stage retrains once more on the final pseudo-labels and
re-predicts each object with the depth search restricted to its pseudo-label's neighbourhood
(REFINE.WINDOW metres); a refined box replaces the pseudo-label only when its 2D re-projection
IoU with the label box is not lower. Finally every labelled 2D box is exported as a KITTI line.

Each step writes <out>/step_<k>/{ckpt/, pseudo_labels.pkl, report.json, report.txt, done.json}
atomically; a killed run resumes from the last checkpoint of the running step and skips
finished steps. Where the label files carry 3D ground truth, each step's pseudo-labels are
evaluated against it (KITTI AP + per-object quality); that is reporting only, never training.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .annotator import ALPIAnnotator
from .dataset import ALPIFrustumDataset
from .export import evaluate_pseudo_labels, frame_annotation, write_label_files
from .pseudo_label_filter import PseudoLabelFilter, paired_iou_2d

logger_default = logging.getLogger('pcdet_ext.alpi')


def _atomic_pickle(obj, path: Path):
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as f:
        pickle.dump(obj, f)
    os.replace(tmp, path)


def _atomic_json(obj, path: Path):
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=float))
    os.replace(tmp, path)


def _plain(d):
    return {k: _plain(v) if isinstance(v, dict) else v for k, v in dict(d).items()}


class ALPIPipeline:
    """cfg: the ALPI config (CLASS_NAMES, DATA_CONFIG, MODEL, OPTIMIZATION, ALPI {STEPS, SEED,
    PSEUDO_FILTER, REFINE {ENABLED, EPOCHS, WINDOW}, WORKERS}). Overrides: data_path, split,
    ratio, steps, detections (file), pretrained_model (warm start of every step's training)."""

    def __init__(self, cfg, out_dir, data_path=None, split=None, ratio=None, steps=None, detections=None,
                 pretrained_model=None, logger=None, progress=True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.logger = logger or logger_default
        self.progress = progress
        self.class_names = list(cfg.CLASS_NAMES)
        dc = copy.deepcopy(_plain(cfg.DATA_CONFIG))
        if data_path is not None:
            dc['DATA_PATH'] = str(data_path)
        if split is not None:
            dc['DATA_SPLIT'] = {'train': split, 'test': split}
        dc.setdefault('DATA_SPLIT', {'train': 'train', 'test': 'train'})
        if dc['DATA_SPLIT'].get('train') != dc['DATA_SPLIT'].get('test'):
            raise ValueError(f"ALPI labels the split it trains on: DATA_SPLIT train and test must match, got "
                             f"{dc['DATA_SPLIT']}")
        dc.setdefault('PROXY', {})
        if ratio is not None:
            dc['PROXY']['RATIO'] = float(ratio)
        if detections is not None:
            dc['DETECTIONS_FILE'] = str(detections)
        dc['PROGRESS'] = bool(progress)
        self.data_cfg = dc
        self.model_cfg = _plain(cfg.MODEL)
        self.optim_cfg = cfg.OPTIMIZATION
        alpi = cfg.get('ALPI', {}) or {}
        self.steps = int(steps if steps is not None else alpi.get('STEPS', 2))
        self.seed = int(alpi.get('SEED', 0))
        self.workers = int(alpi.get('WORKERS', 0))
        # Small CPU matmuls: one intra-op thread is ~10x faster than two on a busy 2-core
        # machine (OpenMP threads spin against each other); 0 keeps torch's default.
        self.torch_threads = int(alpi.get('TORCH_THREADS', 1))
        self.filter = PseudoLabelFilter(alpi.get('PSEUDO_FILTER', {}) or {})
        refine = alpi.get('REFINE', {}) or {}
        self.refine_enabled = bool(refine.get('ENABLED', True))
        self.refine_epochs = int(refine.get('EPOCHS', 0)) or None
        self.refine_window = float(refine.get('WINDOW', 3.0))
        self.pretrained_model = pretrained_model
        self.batch_size = int(self.optim_cfg.BATCH_SIZE_PER_GPU)
        self.epochs = int(self.optim_cfg.NUM_EPOCHS)
        self.grad_clip = float(self.optim_cfg.get('GRAD_NORM_CLIP', 10.0))
        if self.steps < 0:
            raise ValueError(f'--steps must be >= 0, got {self.steps}')
        self._label_set = None
        self.device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        if self.device.type == 'cpu' and self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)

    # ------------------------------------------------------------------ helpers
    def step_dir(self, k) -> Path:
        return self.out / (f'step_{k}' if k != 'refine' else 'refine')

    def is_done(self, k) -> bool:
        return (self.step_dir(k) / 'done.json').is_file()

    def label_set(self) -> ALPIFrustumDataset:
        if self._label_set is None:
            self._label_set = ALPIFrustumDataset(self.data_cfg, self.class_names, training=False)
        return self._label_set

    def load_predictions(self, k) -> Dict[str, Dict[int, dict]]:
        with open(self.step_dir(k) / 'pseudo_labels.pkl', 'rb') as f:
            return pickle.load(f)['predictions']

    def kept_pseudo_labels(self, k) -> Dict[tuple, dict]:
        with open(self.step_dir(k) / 'pseudo_labels.pkl', 'rb') as f:
            data = pickle.load(f)
        return {key: data['predictions'][key[0]][key[1]] for key in data['kept']}

    # ------------------------------------------------------------------ training
    def train(self, k, pseudo: Optional[dict], size_prior_loss: bool, epochs: int) -> ALPIAnnotator:
        from ..runtime import (build_optimizer, build_scheduler, load_params_from_file, resume_latest,
                               train_model)
        from ..runtime.batch import model_fn_decorator
        sdir = self.step_dir(k)
        ds = ALPIFrustumDataset(self.data_cfg, self.class_names, training=True, pseudo_labels=pseudo)
        self.logger.info(f'[{sdir.name}] training set: {len(ds)} frustums '
                         f'({sum(1 for it in ds.items if it[0] == "proxy")} proxies, '
                         f'{sum(1 for it in ds.items if it[0] == "pseudo")} pseudo-labelled, '
                         f'{sum(1 for it in ds.items if it[0] == "paste")} pasted); {ds.report.summary()}')
        if len(ds) == 0:
            raise RuntimeError(f'[{sdir.name}] no usable object in {self.data_cfg["DATA_PATH"]}: nothing to train on '
                               f'({ds.report.summary()})')
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        mcfg = copy.deepcopy(self.model_cfg)
        mcfg.setdefault('LOSS_CONFIG', {})['USE_SIZE_PRIOR_LOSS'] = bool(size_prior_loss)
        from ..config import ConfigDict
        model = ALPIAnnotator(ConfigDict(mcfg), len(self.class_names), ds)
        if self.pretrained_model:
            load_params_from_file(model, self.pretrained_model, logger=self.logger, to_cpu=True)
        model.to(self.device)
        loader = torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=True, num_workers=self.workers,
                                             collate_fn=ds.collate_batch, drop_last=len(ds) > self.batch_size,
                                             generator=torch.Generator().manual_seed(self.seed))
        optimizer = build_optimizer(model, self.optim_cfg)
        it, start_epoch, path = resume_latest(model, sdir / 'ckpt', optimizer=optimizer, logger=self.logger,
                                              to_cpu=True)
        if path is not None:
            self.logger.info(f'[{sdir.name}] resumed from {path} (epoch {start_epoch})')
            loader.generator.manual_seed(self.seed + start_epoch)
        ds.set_epoch(start_epoch)
        sched, _ = build_scheduler(optimizer, len(loader), epochs, start_epoch, self.optim_cfg)

        def on_epoch_end(epoch, _it):
            ds.set_epoch(epoch)
        if start_epoch < epochs:
            train_model(model, optimizer, loader, model_fn_decorator(self.device), sched, self.optim_cfg,
                        start_epoch=start_epoch, total_epochs=epochs, start_iter=it, rank=0,
                        tb_log=None, ckpt_save_dir=sdir / 'ckpt', max_ckpt_save_num=1, logger=self.logger,
                        logger_iter_interval=0, grad_norm_clip=self.grad_clip, on_epoch_end=on_epoch_end)
        return model

    # ------------------------------------------------------------------ labelling
    @torch.no_grad()
    def label(self, model: ALPIAnnotator, depth_prior: Optional[Dict[tuple, float]] = None, window: float = 0.0
              ) -> Dict[str, Dict[int, dict]]:
        """Predict every real object of the split: {frame_id: {obj_index: {box_lidar, score}}}."""
        from ..runtime.batch import load_data_to_gpu
        ds = self.label_set()
        model.eval()
        loader = torch.utils.data.DataLoader(ds, batch_size=max(self.batch_size, 64), shuffle=False,
                                             num_workers=0, collate_fn=ds.collate_batch)
        records = []
        for batch in loader:
            if depth_prior is not None:
                batch['depth_prior'] = np.array([depth_prior.get((str(f), int(o)), -1.0)
                                                 for f, o in zip(batch['frame_id'], batch['obj_index'])], np.float32)
                batch['depth_window'] = np.float32(window)
            load_data_to_gpu(batch, self.device)
            preds, _ = model(batch)
            records += ds.generate_prediction_dicts(batch, preds, self.class_names)
        return ds.predictions_by_frame(records)

    def filter_predictions(self, preds) -> tuple:
        ds = self.label_set()
        kept, counts = [], {}
        for fid, per in preds.items():
            labs = [lab for lab in ds.labels[fid] if lab.obj_index in per]
            if not labs:
                continue
            boxes = np.stack([per[lab.obj_index]['box_lidar'] for lab in labs])
            scores = np.array([per[lab.obj_index]['score'] for lab in labs])
            keep, c = self.filter(boxes, scores, np.stack([lab.box2d for lab in labs]), ds.reader.calib(fid),
                                  [lab.cls for lab in labs], ds.image_shapes.get(fid) or ds.reader.image_shape(fid))
            kept += [(fid, lab.obj_index) for lab, m in zip(labs, keep) if m]
            for key, v in c.items():
                counts[key] = counts.get(key, 0) + int(v)
        return sorted(kept), counts

    def evaluate(self, preds) -> Optional[dict]:
        ds = self.label_set()
        frames = [f for f in ds.frame_ids if ds.labels[f]]
        annos = [frame_annotation(ds.labels[f], preds.get(f, {}), ds.reader.calib(f)) for f in frames]
        try:
            return evaluate_pseudo_labels(str(ds.reader.split_dir / ds.label_dir), frames, annos, self.class_names)
        except (ValueError, FileNotFoundError) as e:  # reporting only: bad GT files must not stop labelling
            self.logger.warning(f'pseudo-labels not evaluated: {e}')
            return None

    def _finish(self, k, preds, t0, extra=None) -> dict:
        sdir = self.step_dir(k)
        kept, counts = self.filter_predictions(preds)
        _atomic_pickle({'predictions': preds, 'kept': kept}, sdir / 'pseudo_labels.pkl')
        ev = self.evaluate(preds)
        report = {'step': k, 'num_labelled': int(sum(len(v) for v in preds.values())), 'filter': counts,
                  'seconds': time.time() - t0, **(extra or {})}
        text = f'ALPI {sdir.name}: {report["num_labelled"]} objects labelled, filter {counts}\n'
        if ev is not None:
            report['ap'] = ev['ap']
            report['quality'] = ev['quality']
            text += ev['table'] + '\n'
            self.plots(sdir, preds, ev)
        else:
            text += 'no 3D ground truth in the label files: pseudo-labels not evaluated\n'
        self.logger.info(text)
        (sdir / 'report.txt.tmp').write_text(text)
        os.replace(sdir / 'report.txt.tmp', sdir / 'report.txt')
        _atomic_json(report, sdir / 'report.json')
        _atomic_json({'step': str(k), 'seconds': report['seconds']}, sdir / 'done.json')
        return report

    def plots(self, sdir: Path, preds, ev, num_frames: int = 2) -> None:
        """quality.png (error histograms) and bev_<id>.png (pseudo vs true boxes) for a few frames."""
        from ..evaluation.pseudo_label_quality import plot_quality_histograms
        from ..geometry import boxes3d_kitti_camera_to_lidar
        from ..utils.visualization import draw_bev
        try:
            plot_quality_histograms(ev['quality_full'], sdir / 'quality.png')
            ds = self.label_set()
            frames = [f for f in ds.frame_ids if ds.labels[f]]
            for fid, gt in list(zip(frames, ev['gt_annos']))[:num_frames]:
                calib = ds.reader.calib(fid)
                keep = np.isin(gt['name'], self.class_names)
                cam = np.concatenate([gt['location'][keep], gt['dimensions'][keep], gt['rotation_y'][keep, None]], 1)
                gt_boxes = boxes3d_kitti_camera_to_lidar(cam, calib) if len(cam) else np.zeros((0, 7))
                per = preds.get(fid, {})
                boxes = np.array([p['box_lidar'] for p in per.values()]).reshape(-1, 7)
                draw_bev(ds.reader.points(fid), sdir / f'bev_{fid}.png', pred_boxes=boxes,
                         pred_scores=np.array([p['score'] for p in per.values()]), gt_boxes=gt_boxes,
                         pc_range=[0, -30, -3, 60, 30, 1], title=f'{sdir.name} {fid}: pseudo (pred) vs 3D GT')
        except Exception as e:  # plots are a convenience: never fail a labelling run for them
            self.logger.warning(f'[{sdir.name}] plots not written: {e}')

    def run_step(self, k: int) -> dict:
        sdir = self.step_dir(k)
        if self.is_done(k):
            self.logger.info(f'[{sdir.name}] already done; skipped')
            return json.loads((sdir / 'report.json').read_text())
        if k > 0 and not self.is_done(k - 1):
            raise RuntimeError(f'step {k} needs step {k - 1}: run it first (or run all steps)')
        sdir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        pseudo = self.kept_pseudo_labels(k - 1) if k > 0 else None
        model = self.train(k, pseudo, size_prior_loss=k >= 1, epochs=self.epochs)
        return self._finish(k, self.label(model), t0, {'pseudo_labels_in': len(pseudo or {})})

    def run_refinement(self) -> dict:
        k = 'refine'
        sdir = self.step_dir(k)
        if self.is_done(k):
            return json.loads((sdir / 'report.json').read_text())
        sdir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        last = self.steps
        pseudo = self.kept_pseudo_labels(last)
        prev = self.load_predictions(last)
        model = self.train(k, pseudo, size_prior_loss=True, epochs=self.refine_epochs or self.epochs)
        ds = self.label_set()
        depth = {}
        for fid, per in prev.items():
            for oi, p in per.items():
                depth[(fid, oi)] = p['box_lidar']
        # the depth prior is the pseudo box's frustum-axis distance: computed per sample below
        samples = {(s.frame_id, s.obj_index): s for s in ds.samples}
        prior = {key: float(samples[key].from_lidar_boxes(np.asarray(b)[None])[0, 2])
                 for key, b in depth.items() if key in samples}
        refined = self.label(model, prior, self.refine_window)
        out, replaced = {}, 0
        for fid, per in prev.items():
            calib = ds.reader.calib(fid)
            shape = ds.image_shapes.get(fid)
            labs = {lab.obj_index: lab for lab in ds.labels[fid]}
            out[fid] = {}
            for oi, p in per.items():
                r = refined.get(fid, {}).get(oi)
                if r is None:
                    out[fid][oi] = p
                    continue
                from ..geometry import boxes3d_lidar_to_imageboxes
                proj = boxes3d_lidar_to_imageboxes(np.stack([p['box_lidar'], r['box_lidar']]), calib, shape)
                iou = paired_iou_2d(proj, np.stack([labs[oi].box2d] * 2))
                better = iou[1] >= iou[0]
                replaced += int(better)
                out[fid][oi] = r if better else p
        return self._finish(k, out, t0, {'replaced': replaced})

    # ------------------------------------------------------------------ all
    def export(self, preds) -> int:
        ds = self.label_set()
        n = write_label_files(str(self.out / 'label_2'), ds.frame_ids, ds.labels, preds, ds.reader.calib)
        self.logger.info(f'exported {n} label lines for {len(ds.frame_ids)} frames to {self.out / "label_2"}')
        return n

    def final_stage(self):
        return 'refine' if self.refine_enabled else self.steps

    def run(self, only_step: Optional[int] = None) -> dict:
        """All steps (resuming finished ones), refinement, export; or just step `only_step`
        (which must follow finished earlier steps)."""
        reports = {}
        if only_step is not None:
            if not 0 <= only_step <= self.steps:
                raise ValueError(f'--step {only_step} outside 0..{self.steps}')
            reports[only_step] = self.run_step(only_step)
            return reports
        for k in range(self.steps + 1):
            reports[k] = self.run_step(k)
        if self.refine_enabled:
            reports['refine'] = self.run_refinement()
        final = self.load_predictions(self.final_stage())
        reports['exported_lines'] = self.export(final)
        _atomic_json({str(k): v for k, v in reports.items()}, self.out / 'summary.json')
        return reports
