"""Per-frame summaries of a model's view of the unlabelled pool.

Scoring runs a detector over the pool through its per-box inference hook
(`forward_with_box_features`) and keeps, per frame, only a small `FrameSummary`: boxes, scores,
labels, class probabilities, pooled box features, the frame feature and the number of points in
each predicted box. Frames are streamed; no point cloud outlives its batch.

The pool is read through `LabelFreeKittiDataset`, a KittiDataset whose frame infos are built
from the frame ids alone (calib + image header): no info pickle (which holds ground truth) and
no label file is ever opened for these frames.

Scoring can be split across torchrun ranks (a non-shuffled DistributedSampler); `merge_summaries`
gathers the per-rank dicts.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from ..datasets.data_io import atomic_pickle_dump, load_pickle
from ..datasets.kitti.kitti_dataset import KittiDataset
from ..datasets.kitti.kitti_infos import frame_info


@dataclass
class FrameSummary:
    """One frame as a model sees it. labels are 1-based class indices into class_names."""
    frame_id: str
    boxes: np.ndarray                      # (K, 7) LiDAR boxes
    scores: np.ndarray                     # (K,)
    labels: np.ndarray                     # (K,) int, 1-based
    cls_probs: np.ndarray                  # (K, C)
    box_features: Optional[np.ndarray] = None   # (K, F)
    frame_feature: Optional[np.ndarray] = None  # (F,)
    box_num_points: Optional[np.ndarray] = None  # (K,) points inside each predicted box
    mc_passes: Optional[List[dict]] = None  # stochastic passes: {boxes, scores, labels}
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        k = len(self.scores)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(k, 7)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(k)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(k)
        probs = np.asarray(self.cls_probs, dtype=np.float32)
        # a frame without boxes may come as (0,) or (0, C): keep C when known
        self.cls_probs = probs.reshape(k, -1) if k else \
            probs.reshape(0, probs.shape[-1] if probs.ndim == 2 else 0)
        if self.box_features is not None:
            feats = np.asarray(self.box_features, dtype=np.float32)
            self.box_features = feats.reshape(k, -1) if k else \
                feats.reshape(0, feats.shape[-1] if feats.ndim == 2 else 0)
        if self.frame_feature is not None:
            self.frame_feature = np.asarray(self.frame_feature, dtype=np.float32).reshape(-1)
        if self.box_num_points is not None:
            self.box_num_points = np.asarray(self.box_num_points, dtype=np.int64).reshape(k)

    def above(self, score_thresh: float) -> 'FrameSummary':
        """The boxes scoring >= score_thresh, every per-box field cut alike (stochastic passes
        dropped: they were run at the scoring threshold). Scored at a lower threshold and cut here,
        a frame equals its scoring at `score_thresh`: NMS keeps boxes best first, so boxes below it
        never suppress or displace one above it."""
        k = self.scores >= score_thresh
        cut = lambda a: None if a is None else a[k]  # noqa: E731
        return FrameSummary(self.frame_id, self.boxes[k], self.scores[k], self.labels[k], self.cls_probs[k],
                            cut(self.box_features), self.frame_feature, cut(self.box_num_points), None,
                            dict(self.extra))

    @property
    def num_boxes(self) -> int:
        return int(len(self.scores))

    def expected_boxes(self) -> float:
        """Predicted box count until annotation: the sum of box scores (a soft count)."""
        return float(self.scores.sum())

    def expected_per_class(self, num_class: int) -> np.ndarray:
        out = np.zeros(num_class, dtype=np.float64)
        np.add.at(out, self.labels - 1, self.scores.astype(np.float64))
        return out


Summaries = Dict[str, FrameSummary]


# ---------------------------------------------------------------------------- label-free data
class LabelFreeKittiDataset(KittiDataset):
    """KittiDataset over an explicit list of frame ids whose labels must not be read.

    Infos are built from calib and the image header only (`frame_info(has_label=False)`), so
    neither label_2 files nor the info pickles (which embed ground truth) are opened; the
    dataset is always in test mode (no augmentation, no gt)."""

    def __init__(self, dataset_cfg, class_names, frame_ids: Sequence[str], root_path=None,
                 logger=None, split_folder: str = 'training'):
        self._label_free_ids = [str(f) for f in frame_ids]
        self._split_folder = split_folder
        super().__init__(dataset_cfg=dataset_cfg, class_names=class_names, training=False,
                         root_path=root_path, logger=logger)

    def include_kitti_data(self, mode):
        split_dir = self.root_path / self._split_folder
        for fid in self._label_free_ids:
            info = frame_info(split_dir, fid, has_label=False, count_inside_pts=False)
            self.kitti_infos.append(info)
        self.root_split_path = split_dir

    def get_label(self, idx):
        raise PermissionError(f'LabelFreeKittiDataset: labels of frame {idx} are not readable '
                              f'(unlabelled pool)')

    def get_road_plane(self, idx):
        return None

    def evaluation(self, det_annos, class_names, **kwargs):
        raise PermissionError('LabelFreeKittiDataset has no ground truth to evaluate against')


def build_label_free_dataloader(dataset_cfg, class_names, frame_ids: Sequence[str], root_path=None,
                                batch_size: int = 1, workers: int = 0, dist: bool = False, logger=None):
    """(dataset, dataloader) over frame_ids in order; a non-shuffled DistributedSampler when dist."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    if len(frame_ids) == 0:
        raise ValueError('build_label_free_dataloader: the pool is empty (no frame ids)')
    dataset = LabelFreeKittiDataset(dataset_cfg, class_names, frame_ids, root_path=root_path, logger=logger)
    sampler = DistributedSampler(dataset, shuffle=False) if dist else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler,
                        num_workers=workers, collate_fn=dataset.collate_batch, drop_last=False)
    return dataset, loader


# ---------------------------------------------------------------------------- MC dropout
class InferenceDropout:
    """Context manager turning on dropout at inference for MC-dropout passes.

    Dropout layers of the model are switched to train mode; a model without any (SECOND and
    PointPillars have none) gets feature dropout on the BEV map fed to the dense head, via a
    forward hook on backbone_2d (or map_to_bev_module)."""

    def __init__(self, model, p: float = 0.2):
        if not 0.0 < p < 1.0:
            raise ValueError(f'InferenceDropout: p must be in (0, 1), got {p}')
        self.model, self.p = model, float(p)
        self._handle = None
        self._dropouts = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]

    def __enter__(self):
        for m in self._dropouts:
            m.train()
        if not self._dropouts:
            target = getattr(self.model, 'backbone_2d', None) or getattr(self.model, 'map_to_bev_module', None)
            if target is None:
                raise ValueError('InferenceDropout: the model has no dropout layer and no backbone_2d / '
                                 'map_to_bev_module to hook feature dropout onto')
            p = self.p

            def hook(_module, _inputs, out):
                key = 'spatial_features_2d' if 'spatial_features_2d' in out else 'spatial_features'
                out[key] = torch.nn.functional.dropout(out[key], p=p, training=True)
                return out
            self._handle = target.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        for m in self._dropouts:
            m.eval()
        if self._handle is not None:
            self._handle.remove()
        return False


# ---------------------------------------------------------------------------- scoring
def _np(x):
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _box_point_counts(points: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0 or len(points) == 0:
        return np.zeros(len(boxes), dtype=np.int64)
    from ..ops.roiaware_pool3d import points_in_boxes_mask
    mask = points_in_boxes_mask(points[:, :3].float().cpu(), torch.as_tensor(boxes))
    return _np(torch.as_tensor(mask).sum(dim=1)).astype(np.int64)


def summaries_from_predictions(batch_dict, pred_dicts) -> List[FrameSummary]:
    """Turn one batch's hooked predictions into FrameSummary objects (numpy, CPU)."""
    out = []
    points = batch_dict.get('points')
    for b, pd in enumerate(pred_dicts):
        boxes = _np(pd['pred_boxes']).reshape(-1, 7)
        fid = str(batch_dict['frame_id'][b])
        pts = None
        if points is not None:
            pts = points[points[:, 0] == b][:, 1:] if torch.is_tensor(points) else \
                torch.as_tensor(points[points[:, 0] == b][:, 1:])
        out.append(FrameSummary(
            frame_id=fid, boxes=boxes, scores=_np(pd['pred_scores']), labels=_np(pd['pred_labels']),
            cls_probs=_np(pd['pred_cls_probs']) if 'pred_cls_probs' in pd else np.zeros((len(boxes), 0)),
            box_features=_np(pd['pred_box_features']) if 'pred_box_features' in pd else None,
            frame_feature=_np(pd['frame_feature']) if 'frame_feature' in pd else None,
            box_num_points=_box_point_counts(pts, boxes) if pts is not None else None))
    return out


def score_pool(model, dataloader, mc_passes: int = 0, dropout_p: float = 0.2, seed: int = 0,
               progress: bool = False) -> Summaries:
    """Run `model` over a label-free dataloader and return {frame_id: FrameSummary}.

    mc_passes > 0 adds that many stochastic passes per batch (InferenceDropout, torch seeded with
    seed + pass index so the passes are reproducible); each summary's `mc_passes` holds them."""
    ds = getattr(dataloader, 'dataset', None)
    if not isinstance(ds, LabelFreeKittiDataset) and not getattr(ds, 'label_free', False):
        raise ValueError('score_pool: the dataloader must read a LabelFreeKittiDataset (unlabelled '
                         'frames are never opened for labels); build it with build_label_free_dataloader')
    if mc_passes < 0:
        raise ValueError(f'score_pool: mc_passes must be >= 0, got {mc_passes}')
    from ..runtime.batch import load_data_to_gpu
    device = next(model.parameters()).device
    model.eval()
    result: Summaries = {}
    it = dataloader
    if progress:
        from tqdm import tqdm
        it = tqdm(dataloader, desc='scoring pool', leave=False)
    for batch_dict in it:
        load_data_to_gpu(batch_dict, device)
        base = dict(batch_dict)  # the inputs, before modules add their outputs
        pred_dicts, _ = model.forward_with_box_features(batch_dict)
        frames = summaries_from_predictions(batch_dict, pred_dicts)
        if mc_passes:
            passes = [[] for _ in frames]
            with InferenceDropout(model, dropout_p):
                for k in range(mc_passes):
                    torch.manual_seed(seed + k)
                    preds_k, _ = model.forward_with_box_features(dict(base))
                    for b, pd in enumerate(preds_k):
                        passes[b].append({'boxes': _np(pd['pred_boxes']).reshape(-1, 7),
                                          'scores': _np(pd['pred_scores']).reshape(-1),
                                          'labels': _np(pd['pred_labels']).astype(np.int64).reshape(-1)})
            model.eval()
            for f, p in zip(frames, passes):
                f.mc_passes = p
        for f in frames:
            result[f.frame_id] = f
        del batch_dict, pred_dicts
    return result


def load_detector(model_cfg, class_names, ckpt, dataset, device):
    """The detector of `model_cfg` with the weights of `ckpt`, in eval mode on `device`."""
    from ..models import build_network
    from ..runtime.checkpoint import load_params_from_file
    torch.manual_seed(0)  # modules without checkpoint weights (none expected) start the same on every rank
    model = build_network(model_cfg, num_class=len(class_names), dataset=dataset)
    load_params_from_file(model, ckpt)
    return model.to(device).eval()


@contextlib.contextmanager
def score_threshold(model, score_thresh: Optional[float]):
    """The detector's post-processing score threshold set to `score_thresh` inside the block (None:
    unchanged). Set both where this runtime reads it (`score_thresh`) and in the config that an
    OpenPCDet detector reads at each call (model_cfg.POST_PROCESSING.SCORE_THRESH)."""
    net = getattr(model, 'module', model)  # DistributedDataParallel holds the detector
    post = getattr(getattr(net, 'model_cfg', None), 'POST_PROCESSING', None)
    if score_thresh is None:
        yield
        return
    old_attr = getattr(net, 'score_thresh', None)
    had_key = post is not None and 'SCORE_THRESH' in post
    old_key = post['SCORE_THRESH'] if had_key else None
    net.score_thresh = float(score_thresh)
    if post is not None:
        post['SCORE_THRESH'] = float(score_thresh)
    try:
        yield
    finally:
        net.score_thresh = old_attr
        if had_key:
            post['SCORE_THRESH'] = old_key
        elif post is not None:
            del post['SCORE_THRESH']


def score_frames(cfg, frame_ids: Sequence[str], model_or_ckpt, root_path=None, batch_size: int = 4,
                 workers: int = 0, device='cpu', mc_passes: int = 0, dropout_p: float = 0.2, seed: int = 0,
                 dist: bool = False, progress: bool = False, score_thresh: Optional[float] = None) -> Summaries:
    """Score `frame_ids` (read label-free) with a detector or a checkpoint of cfg.MODEL.

    score_thresh: the detector's post-processing score threshold for this scoring only (None: its
    POST_PROCESSING.SCORE_THRESH); a model passed in gets its own back afterwards.

    dist=True (torch.distributed initialised, e.g. under torchrun): each rank scores its share
    of the frames (a non-shuffled DistributedSampler) and every rank returns the merged dict."""
    class_names = list(cfg.CLASS_NAMES)
    ds, loader = build_label_free_dataloader(cfg.DATA_CONFIG, class_names, frame_ids, root_path=root_path,
                                             batch_size=batch_size, workers=workers, dist=dist)
    model = model_or_ckpt
    if isinstance(model_or_ckpt, (str, os.PathLike)):
        model = load_detector(cfg.MODEL, class_names, model_or_ckpt, ds, device)
    was_training = model.training
    try:
        with score_threshold(model, score_thresh), torch.no_grad():
            out = score_pool(model, loader, mc_passes=mc_passes, dropout_p=dropout_p, seed=seed, progress=progress)
    finally:
        model.train(was_training)
    return merge_summaries(out) if dist else out


def summaries_above(summaries: Summaries, score_thresh: float) -> Summaries:
    """Every frame's boxes scoring >= score_thresh (FrameSummary.above)."""
    return {f: s.above(score_thresh) for f, s in summaries.items()}


def merge_summaries(local: Summaries) -> Summaries:
    """Gather per-rank summaries (torch.distributed initialised) into one dict on every rank;
    a plain copy otherwise. Frames scored twice (sampler padding) are kept once."""
    import torch.distributed as tdist
    if not (tdist.is_available() and tdist.is_initialized()):
        return dict(local)
    gathered: List[Optional[Summaries]] = [None] * tdist.get_world_size()
    tdist.all_gather_object(gathered, dict(local))
    merged: Summaries = {}
    for part in gathered:
        for fid, s in part.items():
            merged.setdefault(fid, s)
    return merged


def save_summaries(summaries: Summaries, path) -> None:
    atomic_pickle_dump({'version': 1, 'summaries': summaries}, path)


def load_summaries(path) -> Summaries:
    obj = load_pickle(path, what='pool summaries')
    if not isinstance(obj, dict) or 'summaries' not in obj:
        raise ValueError(f'{path}: not a summaries file (expected the dict written by save_summaries)')
    return obj['summaries']


def check_summaries(summaries, what: str = 'summaries') -> Summaries:
    """A dict {frame_id: FrameSummary}, or a list of FrameSummary; empty is an error."""
    if isinstance(summaries, (list, tuple)) and all(isinstance(s, FrameSummary) for s in summaries):
        summaries = {s.frame_id: s for s in summaries}
    if not isinstance(summaries, dict):
        raise ValueError(f'{what}: expected a dict frame_id -> FrameSummary, got {type(summaries).__name__}')
    if not summaries:
        raise ValueError(f'{what}: the pool is empty (no frame summaries)')
    bad = [k for k, v in summaries.items() if not isinstance(v, FrameSummary)]
    if bad:
        raise ValueError(f'{what}: entries {bad[:3]} are not FrameSummary objects')
    return summaries


def iter_sorted(summaries: Summaries) -> Iterable[FrameSummary]:
    for fid in sorted(summaries):
        yield summaries[fid]
