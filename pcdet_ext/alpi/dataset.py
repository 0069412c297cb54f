"""ALPIFrustumDataset: one item per object frustum, for the annotator.

Items are of four kinds (`sample_type`):
- REAL (0): a weak label (class + 2D box) of the split: targets are its 2D box and, for the
  objectness, a depth hint from 2D evidence only (the depth at which the class prior height
  fills the box); no 3D target;
- PROXY (1): a synthetic object injected into a real frustum (proxies.py): exact 3D target;
- PSEUDO (2): a real object whose pseudo-label from the previous step passed the filter: the
  pseudo box is its 3D target (and its 2D box still drives the 2D loss);
- PASTE (3): a pseudo-labelled instance pasted into another object's frustum (copy-paste mode).

3D ground truth is never read: labels come from `read_kitti_weak_labels` (class, 2D box,
truncation, occlusion, score) or from a detections file.

Training cuts real frustums with a jittered 2D box every epoch. To keep that cheap the dataset
keeps, per object, only the points projecting into its 2D box grown by the jitter margin
(capped), and re-cuts from those. Proxies and pasted instances are built once per dataset
(i.e. per ALPI step), seeded, so two runs see the same ones.

Config keys (DATA_CONFIG): DATASET, DATA_PATH, DATA_SPLIT {train, test}, LABEL_DIR 'label_2',
DETECTIONS_FILE None, MIN_SCORE 0, NUM_POINT_FEATURES 4 (columns of the .bin files),
SIZE_PRIORS, FRUSTUM {FrustumExtractor keys}, PROXY {ProxyGenerator keys}, PSEUDO_LABELS None
(a pickle {(frame_id, obj_index): {'box_lidar', 'score'}} of kept pseudo-labels),
CANDIDATE_POINTS 4096, POINT_STORE {MODE 'auto', DIR None, AUTO_FRAMES 1000}, PROGRESS True,
UPPER_BOUND_3D_LABELS False, DEPTH_HINT {MODE 'height', WINDOW [0.85, 1.4], QUANTILE 10, EXTENT 0.5,
MIN_POINTS 3}.

DEPTH_HINT (the objectness target of real objects, from 2D evidence and LiDAR only):
- 'height': the frustum-axis distance at which the prior height fills the 2D box. Biased near
  (the box height is set by the nearest corners): on synthetic Cars median -2.3 m, only 46 %
  within 10 % of the true depth (docs/alpi.md section 11);
- 'lidar': the object's visible surface in the frustum's own points, plus half the prior's mean
  extent along the ray: the densest run of points (window (l + w) / 2) among those between
  WINDOW[0] x and WINDOW[1] x the height hint (+ l), its QUANTILE-th percentile depth (the front
  surface) + EXTENT x (2 / pi)(l + w) (the mean extent of an l x w box over headings). Falls back
  to the height hint with fewer than MIN_POINTS points in the window.

POINT_STORE (memory at scale): the per-object point arrays built once per step (candidate points
of real objects, proxy and pasted frustums, label-mode frustums) are kept in RAM ('memory') or
appended to one unlinked temporary file in DIR (default: the system temp dir) and read back per item
('disk'); 'auto' picks 'disk' for splits of more than AUTO_FRAMES frames. Extrapolated from 400
synthetic frames, a 3712-frame split holds 0.6 GB of them with the KITTI config and 2.5 GB with
600 % proxies (docs/benchmarks.md, tools/bench_alpi_memory.py).

UPPER_BOUND_3D_LABELS (benchmarks only, never the default): the 3D ground truth of every real
object is read from the label files and used as its 3D target, as if every object were a proxy.
It is the fully supervised upper bound the weak annotator is compared with (tools/bench_alpi.py);
it is the one place in the ALPI wing that reads 3D fields, and only when this key is True.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch.utils.data as torch_data

from ..geometry import Calibration
from ..ops.roiaware_pool3d import points_in_boxes_mask
from ..registry import register
from ..utils.array_store import ArrayStore
from .annotator import PASTE, PROXY, PSEUDO, REAL
from .export import evaluate_pseudo_labels, frame_annotation
from .frustum import FrustumExtractor, FrustumSample, rect_to_frustum
from .proxies import ProxyGenerator
from .size_priors import SizePriors
from .weak_labels import ReadReport, WeakLabel, read_detections_file, read_image_shape, read_kitti_weak_labels

logger = logging.getLogger('pcdet_ext.alpi')


def _read_split(root: Path, split: str) -> List[str]:
    path = root / 'ImageSets' / f'{split}.txt'
    if path.is_file():
        return [x.strip() for x in path.read_text().splitlines() if x.strip()]
    velo = root / 'training' / 'velodyne'
    if not velo.is_dir():
        raise FileNotFoundError(f'{path}: split file not found, and no {velo} to list frames from')
    return sorted(p.stem for p in velo.glob('*.bin'))


class FrameReader:
    """KITTI-layout access: points, calibration, image shape (small LRU cache of scans)."""

    def __init__(self, root: Path, num_features: int = 4, cache: int = 4):
        from ..datasets.data_io import read_lidar_bin
        self._read_bin = read_lidar_bin
        self.split_dir = Path(root) / 'training'
        self.num_features = num_features
        self.cache: OrderedDict = OrderedDict()
        self.cache_size = cache

    def points(self, fid: str) -> np.ndarray:
        if fid in self.cache:
            self.cache.move_to_end(fid)
            return self.cache[fid]
        pts = self._read_bin(self.split_dir / 'velodyne' / f'{fid}.bin', self.num_features)
        self.cache[fid] = pts
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return pts

    def calib(self, fid: str) -> Calibration:
        path = self.split_dir / 'calib' / f'{fid}.txt'
        if not path.is_file():
            raise FileNotFoundError(f'{path}: calibration file not found')
        return Calibration(str(path))

    def image_shape(self, fid: str) -> Tuple[int, int]:
        return read_image_shape(str(self.split_dir / 'image_2' / f'{fid}.png'))


def read_upper_bound_3d_labels(root: Path, frame_ids: List[str], labels: Dict[str, List[WeakLabel]],
                               reader: 'FrameReader', label_dir: str = 'label_2') -> Dict[tuple, dict]:
    """UPPER-BOUND MODE ONLY: {(frame_id, obj_index): {'box_lidar', 'score'}} from the 3D fields
    of the label files, for the weak labels given (same obj_index counting as the weak reader)."""
    from ..geometry import boxes3d_kitti_camera_to_lidar
    out = {}
    for fid in frame_ids:
        if not labels.get(fid):
            continue
        path = reader.split_dir / label_dir / f'{fid}.txt'
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.split()]
        calib = reader.calib(fid)
        for lab in labels[fid]:
            tok = lines[lab.obj_index]
            try:
                h, w, l, x, y, z, ry = (float(v) for v in tok[8:15])
            except (ValueError, IndexError):
                raise ValueError(f'{path}: line {lab.obj_index + 1} has no 3D fields; '
                                 f'UPPER_BOUND_3D_LABELS needs full KITTI labels') from None
            if h <= 0 or w <= 0 or l <= 0:
                raise ValueError(f'{path}: line {lab.obj_index + 1} has unknown 3D fields (dimensions {h, w, l}); '
                                 f'UPPER_BOUND_3D_LABELS needs full KITTI labels')
            box = boxes3d_kitti_camera_to_lidar(np.array([[x, y, z, l, h, w, ry]]), calib)[0]
            out[(fid, lab.obj_index)] = {'box_lidar': box, 'score': 1.0}
    return out


def lidar_surface_depth(z, height_hint: float, length: float, width: float, window=(0.85, 1.4),
                        quantile: float = 10.0, extent: float = 0.5, min_points: int = 3) -> float:
    """Depth of an object's centre along its frustum axis from the frustum points' depths `z`:
    the densest run of points within (l + w) / 2 among those between window[0] x and window[1] x
    the height hint (+ l), its `quantile`-th percentile (the visible front surface) plus `extent` x
    the mean extent of an l x w box along a ray over headings, (2 / pi)(l + w). The window drops
    occluders well in front and background well behind; the height hint is returned when it
    holds fewer than `min_points` points."""
    z = np.sort(np.asarray(z, dtype=np.float64).reshape(-1))
    z = z[(z >= window[0] * height_hint) & (z <= window[1] * height_hint + length)]
    if len(z) < max(int(min_points), 1):
        return float(height_hint)
    # densest run (ties: the nearest), then its front
    counts = np.searchsorted(z, z + 0.5 * (length + width), side='right') - np.arange(len(z))
    i = int(np.argmax(counts))
    front = float(np.percentile(z[i:i + counts[i]], quantile))
    return front + extent * (2.0 / np.pi) * (length + width)


def load_weak_labels(root: Path, frame_ids: List[str], class_names, priors: SizePriors, label_dir: str = 'label_2',
                     detections_file: Optional[str] = None, min_score: float = 0.0, reader: FrameReader = None
                     ) -> Tuple[Dict[str, List[WeakLabel]], ReadReport]:
    """Weak labels of every frame, from label files or a detections file (class + 2D box only)."""
    reader = reader or FrameReader(root)
    if detections_file:
        shapes = {}
        known = set(frame_ids)
        by_frame, report = read_detections_file(
            detections_file, class_names=class_names, priors=priors, min_score=min_score,
            image_shapes=lambda f: shapes.setdefault(f, reader.image_shape(f)) if f in known else None)
        unknown = sorted(set(by_frame) - known)
        if unknown:
            report.skip('unknown_frame', detections_file, f'{len(unknown)} frame ids not in the split '
                        f'(e.g. {unknown[:3]})')
        return {f: by_frame.get(f, []) for f in frame_ids}, report
    report = ReadReport()
    out = {}
    for fid in frame_ids:
        out[fid], _ = read_kitti_weak_labels(str(reader.split_dir / label_dir / f'{fid}.txt'), frame_id=fid,
                                             class_names=class_names, priors=priors, min_score=min_score,
                                             image_shape=reader.image_shape(fid), report=report)
    return out, report


@register('dataset')
class ALPIFrustumDataset(torch_data.Dataset):

    def __init__(self, dataset_cfg, class_names, training=True, root_path=None, logger=None, pseudo_labels=None):
        super().__init__()
        cfg = dataset_cfg
        self.dataset_cfg = cfg
        self.training = training
        self.class_names = list(class_names)
        self.logger = logger
        _ = cfg.get('DATASET')
        data_path = cfg.get('DATA_PATH', None)
        self.root_path = Path(root_path) if root_path is not None else Path(str(data_path))
        split_cfg = dict(cfg.get('DATA_SPLIT', {'train': 'train', 'test': 'train'}))
        self.split = split_cfg['train' if training else 'test']
        self.label_dir = str(cfg.get('LABEL_DIR', 'label_2'))
        self.detections_file = cfg.get('DETECTIONS_FILE', None)
        self.min_score = float(cfg.get('MIN_SCORE', 0.0))
        self.num_point_features = int(cfg.get('NUM_POINT_FEATURES', 4))
        self.size_priors = SizePriors(cfg.get('SIZE_PRIORS', None))
        self.size_priors.require(self.class_names)
        self.extractor = FrustumExtractor(cfg.get('FRUSTUM', None))
        self.proxy_generator = ProxyGenerator(cfg.get('PROXY', None), priors=self.size_priors,
                                              extractor=FrustumExtractor({**dict(cfg.get('FRUSTUM', None) or {}),
                                                                          'JITTER_2D': 0.0}))
        pseudo_path = cfg.get('PSEUDO_LABELS', None)
        self.candidate_points = int(cfg.get('CANDIDATE_POINTS', 4096))
        self.progress = bool(cfg.get('PROGRESS', True))
        store_cfg = dict(cfg.get('POINT_STORE', None) or {})
        unknown = sorted(set(store_cfg) - {'MODE', 'DIR', 'AUTO_FRAMES'})
        if unknown or str(store_cfg.get('MODE', 'auto')) not in ('auto', 'memory', 'disk'):
            raise ValueError(f"DATA_CONFIG.POINT_STORE: keys MODE ('auto', 'memory' or 'disk'), DIR, AUTO_FRAMES; "
                             f"got {store_cfg}")
        self.upper_bound_3d = bool(cfg.get('UPPER_BOUND_3D_LABELS', False))
        hint_cfg = dict(cfg.get('DEPTH_HINT', None) or {})
        unknown = sorted(set(hint_cfg) - {'MODE', 'WINDOW', 'QUANTILE', 'EXTENT', 'MIN_POINTS'})
        if unknown:
            raise ValueError(f'DATA_CONFIG.DEPTH_HINT: unknown keys {unknown}; known: MODE, WINDOW, QUANTILE, '
                             f'EXTENT, MIN_POINTS')
        self.depth_hint_mode = str(hint_cfg.get('MODE', 'height'))
        self.depth_hint_window = tuple(float(v) for v in hint_cfg.get('WINDOW', [0.85, 1.4]))
        self.depth_hint_quantile = float(hint_cfg.get('QUANTILE', 10))
        self.depth_hint_extent = float(hint_cfg.get('EXTENT', 0.5))
        self.depth_hint_min_points = int(hint_cfg.get('MIN_POINTS', 3))
        if self.depth_hint_mode not in ('height', 'lidar') or len(self.depth_hint_window) != 2 \
                or not 0 < self.depth_hint_window[0] < self.depth_hint_window[1] \
                or not 0 <= self.depth_hint_quantile <= 100:
            raise ValueError(f"DATA_CONFIG.DEPTH_HINT: MODE must be 'height' or 'lidar', WINDOW [lo, hi] with "
                             f"0 < lo < hi, QUANTILE in [0, 100]; got {hint_cfg}")
        if pseudo_labels is None and pseudo_path:
            if not os.path.isfile(str(pseudo_path)):
                raise FileNotFoundError(f'DATA_CONFIG.PSEUDO_LABELS: {pseudo_path} not found')
            with open(str(pseudo_path), 'rb') as f:
                pseudo_labels = pickle.load(f)
        self.pseudo_labels = dict(pseudo_labels or {})
        self.epoch = 0

        self.reader = FrameReader(self.root_path, self.num_point_features)
        self.frame_ids = _read_split(self.root_path, self.split)
        self.labels, self.report = load_weak_labels(self.root_path, self.frame_ids, self.class_names,
                                                    self.size_priors, self.label_dir, self.detections_file,
                                                    self.min_score, self.reader)
        if self.upper_bound_3d and training:
            # benchmark upper bound: 3D ground truth replaces every pseudo-label (see module doc)
            self.pseudo_labels = read_upper_bound_3d_labels(self.root_path, self.frame_ids, self.labels,
                                                            self.reader, self.label_dir)
        mode = str(store_cfg.get('MODE', 'auto'))
        if mode == 'auto':
            mode = 'disk' if len(self.frame_ids) > int(store_cfg.get('AUTO_FRAMES', 1000)) else 'memory'
        self.store = ArrayStore(mode, store_cfg.get('DIR', None), prefix='alpi_points_')
        self._build()
        if self.logger is not None:
            self.logger.info(f'ALPIFrustumDataset ({self.split}, {"train" if training else "label"}): '
                             f'{len(self)} samples; labels {self.report.summary()}')

    # ------------------------------------------------------------------ build
    def _build(self):
        """One pass over the frames: candidate points (training) or frustums (labelling) of the
        real objects, then proxies and pasted instances (training)."""
        from tqdm import tqdm
        self.items: List[tuple] = []
        self.candidates: Dict[Tuple[str, int], np.ndarray] = {}
        self.samples: List[FrustumSample] = []
        self.injected = []
        self.image_shapes: Dict[str, Tuple[int, int]] = {}
        all_labels = [lab for fid in self.frame_ids for lab in self.labels[fid]]
        # a list, not a set: above RATIO 100 a host appears once per proxy it carries
        proxy_hosts = self.proxy_generator.choose_hosts(all_labels) if self.training else []
        host_of = {}
        for n, i in enumerate(sorted(proxy_hosts)):
            host_of.setdefault(i, []).append(n)
        pasted_src = {}  # (fid, obj_index) -> (points in box, box)
        pos = 0
        for fid in tqdm(self.frame_ids, desc='frustums', disable=not self.progress, leave=False):
            labels = self.labels[fid]
            if not labels:
                continue
            pts, calib = self.reader.points(fid), self.reader.calib(fid)
            shape = self.reader.image_shape(fid)
            self.image_shapes[fid] = shape
            if not self.training:
                samples, _ = self.extractor.extract(pts, calib, labels, frame_id=fid, image_shape=shape,
                                                    report=self.report)
                for s in samples:
                    self.items.append(('real', len(self.samples)))
                    self.samples.append(self._park(s))
                pos += len(labels)
                continue
            self._add_candidates(fid, pts, calib, labels, shape)
            for j, lab in enumerate(labels):
                for n in host_of.get(pos + j, []):
                    inj = self.proxy_generator.make_proxy(fid, pts, calib, lab, n, shape, self.report)
                    if inj is not None:
                        self.items.append(('proxy', len(self.injected)))
                        inj.sample = self._park(inj.sample)
                        self.injected.append(inj)
                key = (fid, lab.obj_index)
                if key in self.pseudo_labels and self.proxy_generator.copy_paste_ratio > 0:
                    box = np.asarray(self.pseudo_labels[key]['box_lidar'], dtype=np.float32)
                    inside = points_in_boxes_mask(pts[:, :3], box[None])
                    inside = np.asarray(inside)[0]
                    if inside.sum() >= self.proxy_generator.min_points:
                        pasted_src[key] = (pts[inside], box, lab.cls)
            pos += len(labels)
        if self.training and pasted_src:
            self._add_pastes(all_labels, pasted_src)

    def _add_candidates(self, fid, pts, calib, labels, shape):
        uv, depth = calib.lidar_to_img(pts[:, :3])
        ahead = depth > self.extractor.min_depth
        grow = 2 * self.extractor.jitter_2d + 0.02
        for lab in labels:
            if lab.height < self.extractor.min_box_height:
                self.report.skip('too_small', f'frame {fid} object {lab.obj_index}', 'small', warn=False)
                continue
            b = lab.box2d
            w, h = b[2] - b[0], b[3] - b[1]
            m = ahead & (uv[:, 0] >= b[0] - grow * w) & (uv[:, 0] <= b[2] + grow * w) & \
                (uv[:, 1] >= b[1] - grow * h) & (uv[:, 1] <= b[3] + grow * h)
            idx = np.nonzero(m)[0]
            inside = ((uv[idx, 0] >= b[0]) & (uv[idx, 0] <= b[2]) & (uv[idx, 1] >= b[1]) & (uv[idx, 1] <= b[3])).sum()
            if inside < self.extractor.min_points:
                self.report.skip('empty_frustum', f'frame {fid} object {lab.obj_index} ({lab.cls})',
                                 f'{int(inside)} LiDAR points in the frustum of 2D box {np.round(b, 1).tolist()}')
                continue
            if len(idx) > self.candidate_points:
                rng = np.random.default_rng([self.extractor.seed, lab.obj_index, len(idx)])
                idx = np.sort(rng.choice(idx, self.candidate_points, replace=False))
            self.candidates[(fid, lab.obj_index)] = self.store.put(pts[idx])
            kind = 'pseudo' if (fid, lab.obj_index) in self.pseudo_labels else 'real'
            self.items.append((kind, (fid, lab)))

    def _add_pastes(self, all_labels, pasted_src):
        n = int(round(len(all_labels) * self.proxy_generator.copy_paste_ratio / 100.0))
        hosts = self.proxy_generator.choose_hosts(all_labels, self.proxy_generator.copy_paste_ratio, purpose=7)
        keys = sorted(pasted_src)
        for k, hi in enumerate(hosts[:n]):
            host = all_labels[hi]
            src = keys[k % len(keys)]
            if src[0] == host.frame_id:
                continue
            points, box, cls = pasted_src[src]
            fid = host.frame_id
            inj = self.proxy_generator.paste_instance(fid, self.reader.points(fid), self.reader.calib(fid), host,
                                                      points, box, cls, k, self.image_shapes.get(fid), self.report)
            if inj is not None:
                self.items.append(('paste', len(self.injected)))
                inj.sample = self._park(inj.sample)
                self.injected.append(inj)

    # ------------------------------------------------------------------ point store
    def _park(self, s: FrustumSample) -> FrustumSample:
        """In 'disk' mode, move a sample's point arrays to the store (refs left in their place)."""
        if self.store.mode == 'memory':
            return s
        return dataclasses.replace(s, points=self.store.put(s.points), point_indices=self.store.put(s.point_indices))

    def sample_points(self, s: FrustumSample) -> FrustumSample:
        """The sample with its point arrays in memory (read back from the store if parked)."""
        if isinstance(s.points, np.ndarray):
            return s
        return dataclasses.replace(s, points=self.store.get(s.points), point_indices=self.store.get(s.point_indices))

    def candidate_points_of(self, fid: str, obj_index: int) -> np.ndarray:
        return self.store.get(self.candidates[(fid, obj_index)])

    # ------------------------------------------------------------------ items
    def __len__(self):
        return len(self.items)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def set_random_seed(self, seed: int):
        pass  # every draw is seeded by (SEED, frame, object, epoch); nothing depends on call order

    def depth_hint(self, s: FrustumSample) -> float:
        """Depth along the frustum axis of a real object, from 2D evidence and its LiDAR points
        only (DEPTH_HINT.MODE, see the module doc)."""
        hint = self.height_depth_hint(s)
        if self.depth_hint_mode == 'lidar':
            hint = self.lidar_depth_hint(self.sample_points(s), hint)
        return hint

    def lidar_depth_hint(self, s: FrustumSample, height_hint: float) -> float:
        l, w = (float(v) for v in self.size_priors[s.cls].mean[:2])
        return lidar_surface_depth(s.points[:max(int(s.num_real_points), 0), 2], height_hint, l, w,
                                   self.depth_hint_window, self.depth_hint_quantile, self.depth_hint_extent,
                                   self.depth_hint_min_points)

    def height_depth_hint(self, s: FrustumSample) -> float:
        """Frustum-axis distance at which the class prior height fills the label's 2D box."""
        calib = s.calibration()
        h = self.size_priors[s.cls].mean[2]
        z = float(calib.P2[1, 1]) * h / max(float(s.box2d[3] - s.box2d[1]), 1.0)
        u, v = 0.5 * (s.box2d[0] + s.box2d[2]), 0.5 * (s.box2d[1] + s.box2d[3])
        p = calib.img_to_rect(np.float64(u), np.float64(v), np.float64(z)).reshape(1, 3)
        return float(rect_to_frustum(p, s.rot, s.origin)[0, 2])

    def _item(self, s: FrustumSample, stype: int, box3d=None) -> dict:
        s = self.sample_points(s)
        calib = s.calibration()
        return {
            'frame_id': s.frame_id, 'obj_index': np.int64(s.obj_index), 'points': s.points.astype(np.float32),
            'box2d': np.asarray(s.box2d, np.float32), 'box2d_input': np.asarray(s.box2d_input, np.float32),
            'box3d': np.zeros(7, np.float32) if box3d is None else np.asarray(box3d, np.float32),
            'box3d_mask': np.float32(box3d is not None), 'sample_type': np.int64(stype),
            'depth_hint': np.float32(self.depth_hint(s)), 'cls_index': np.int64(self.class_names.index(s.cls)),
            'rot': s.rot.astype(np.float32), 'origin': s.origin.astype(np.float32), 'yaw': np.float32(s.yaw),
            'P2': calib.P2.astype(np.float32), 'lidar_to_rect': calib.lidar_to_rect_mat.astype(np.float32),
            'rect_to_lidar': calib.rect_to_lidar_mat.astype(np.float32), 'score': np.float32(s.score)}

    def __getitem__(self, index):
        kind, ref = self.items[index]
        if kind == 'real' and not self.training:
            return self._item(self.samples[ref], REAL)
        if kind in ('proxy', 'paste'):
            inj = self.injected[ref]
            return self._item(inj.sample, PROXY if kind == 'proxy' else PASTE, inj.box_frustum)
        fid, lab = ref
        calib = self.reader.calib(fid)
        cand = self.candidate_points_of(fid, lab.obj_index)
        samples, _ = self.extractor.extract(cand, calib, [lab], frame_id=fid,
                                            training=True, epoch=self.epoch, image_shape=self.image_shapes[fid])
        if not samples:  # the jittered box lost every point: cut with the label box instead
            samples, _ = self.extractor.extract(cand, calib, [lab], frame_id=fid)
        s = samples[0]
        if kind == 'pseudo':
            return self._item(s, PSEUDO, s.from_lidar_boxes(
                np.asarray(self.pseudo_labels[(fid, lab.obj_index)]['box_lidar'])[None])[0])
        return self._item(s, REAL)

    @staticmethod
    def collate_batch(batch_list, _unused=False) -> dict:
        out = {}
        for key in batch_list[0]:
            vals = [b[key] for b in batch_list]
            out[key] = np.array(vals) if key == 'frame_id' else np.stack([np.asarray(v) for v in vals])
        out['batch_size'] = len(batch_list)
        return out

    # ------------------------------------------------------------------ outputs
    def generate_prediction_dicts(self, batch_dict, pred_dicts, class_names, output_path=None) -> List[dict]:
        """One record per frustum: frame_id, obj_index, name, box_lidar, score."""
        out = []
        for i, p in enumerate(pred_dicts):
            out.append({'frame_id': str(batch_dict['frame_id'][i]), 'obj_index': int(batch_dict['obj_index'][i]),
                        'name': class_names[int(p['pred_labels'][0]) - 1],
                        'box_lidar': p['pred_boxes'][0].detach().cpu().numpy().astype(np.float64),
                        'score': float(p['pred_scores'][0])})
        return out

    def predictions_by_frame(self, records: List[dict]) -> Dict[str, Dict[int, dict]]:
        by = {}
        for r in records:
            by.setdefault(r['frame_id'], {})[r['obj_index']] = {'box_lidar': r['box_lidar'], 'score': r['score']}
        return by

    def evaluation(self, det_annos, class_names, **kwargs):
        """KITTI AP + per-object quality of the labelled objects against label files that carry
        3D ground truth (reporting only). ('', {}) when there is none."""
        by = self.predictions_by_frame(det_annos)
        frames = [f for f in self.frame_ids if self.labels[f]]
        annos = [frame_annotation(self.labels[f], by.get(f, {}), self.reader.calib(f)) for f in frames]
        res = evaluate_pseudo_labels(str(self.reader.split_dir / self.label_dir), frames, annos, class_names)
        if res is None:
            return 'no 3D ground truth in the label files: nothing to evaluate', {}
        flat = {f'{c}/{k}': v for c, d in res['ap'].items() for k, v in d.items()}
        return res['table'], flat
