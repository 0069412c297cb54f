"""The ALPI annotator: a frustum network (F-ConvNet family) over depth slices along the ray.

Points arrive in the frustum frame (+z along the 2D box's centre ray). Depth anchors z_k lie
every ANCHOR_STRIDE metres in DEPTH_RANGE; slice k holds the points with |z - z_k| <=
SLICE_WIDTH / 2 (slices overlap when the width exceeds the stride). A shared point MLP sees each
point relative to its slice centre, a max-pool per slice gives the slice feature (plus a point
count feature), and a 1-D conv stack along the depth axis, fed the class one-hot, gives per
anchor: an objectness logit, a centre offset (x, y from the ray, z from the anchor), heading
bins + normalised residuals, and a size residual to the class prior.

Losses (weights in LOSS_CONFIG.WEIGHTS):
- objectness (sigmoid focal) on every sample; positive anchors from the 3D target for proxies
  and pseudo-labelled instances, and for real objects from the 2D evidence only (the depth at
  which the class prior height fills the 2D box, `depth_hint`, with a relative tolerance);
- centre / heading / size / corner losses on 3D-supervised samples (proxies, pseudo-labels;
  a pseudo-label's terms scaled by WEIGHTS.pseudo_3d: its box is the previous step's guess);
- the depth-invariant 2D projection loss on real objects (pseudo-labelled ones included): the
  boxes of the positive anchors and of the top-scoring anchor, projected with the real camera;
- the batch size-prior loss on real objects' top boxes when USE_SIZE_PRIOR_LOSS (step 1 on);
- optionally (WEIGHTS.depth_hint > 0) a smooth-L1 pull of real objects' centre depth on those
  same anchors towards the depth hint (best with DATA_CONFIG.DEPTH_HINT.MODE 'lidar').

Train / eval contract as OpenPCDet detectors: forward(batch_dict) -> (ret_dict{'loss'},
tb_dict, disp_dict) in training, (pred_dicts, recall_dicts) in eval.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register
from .frustum import frustum_boxes_to_lidar_torch
from .losses import (box_projection_loss, corner_loss, decode_heading, decode_size, encode_heading, encode_size,
                     heading_bin_loss, size_prior_loss, smooth_l1)
from .size_priors import SizePriors

# sample_type values (set by the dataset)
REAL, PROXY, PSEUDO, PASTE = 0, 1, 2, 3

_WEIGHT_KEYS = ('objectness', 'center', 'heading_cls', 'heading_res', 'size', 'corner', 'proj_2d', 'size_prior',
                'depth_hint', 'pseudo_3d')
_DEFAULT_WEIGHTS = {'objectness': 1.0, 'center': 1.0, 'heading_cls': 1.0, 'heading_res': 2.0, 'size': 1.0,
                    'corner': 1.0, 'proj_2d': 1.0, 'size_prior': 0.5, 'depth_hint': 0.0, 'pseudo_3d': 1.0}


def _mlp(channels: List[int], conv=nn.Conv1d) -> nn.Sequential:
    layers = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [conv(cin, cout, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Elementwise sigmoid focal loss (targets in {0, 1})."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    pt = p * targets + (1 - p) * (1 - targets)
    w = alpha * targets + (1 - alpha) * (1 - targets)
    return w * (1 - pt).pow(gamma) * ce


@register('detector')
class ALPIAnnotator(nn.Module):
    """Config keys (MODEL): NAME, DEPTH_RANGE [1, 70], ANCHOR_STRIDE 2.0, SLICE_WIDTH 4.0,
    POINT_MLP [64, 128], DEPTH_CONV [128, 128], NUM_HEADING_BIN 12, POINT_FEATURES 1 (extra
    point columns after xyz), OBJECTNESS {POS_RADIUS 1.5, IGNORE_RADIUS 3.0, POS_RADIUS_2D 0.12,
    IGNORE_RADIUS_2D 0.3, ALPHA 0.25, GAMMA 2.0}, LOSS_CONFIG {WEIGHTS {...}, PROJECTION_LOSS
    'depth_invariant' | 'pixel', USE_SIZE_PRIOR_LOSS False}. Size priors come from the dataset."""

    def __init__(self, model_cfg, num_class, dataset=None):
        super().__init__()
        cfg = model_cfg
        _ = cfg.get('NAME')
        self.model_cfg = cfg
        self.num_class = int(num_class)
        names = getattr(dataset, 'class_names', None)
        # without a dataset (unit use), the KITTI classes in their usual order
        self.class_names = list(names) if names else ['Car', 'Pedestrian', 'Cyclist'][:self.num_class]
        priors = getattr(dataset, 'size_priors', None) or SizePriors()
        mean, std = priors.tensors(self.class_names)
        self.register_buffer('prior_mean', mean)
        self.register_buffer('prior_std', std)
        self.register_buffer('global_step', torch.LongTensor(1).zero_())

        d0, d1 = (float(v) for v in cfg.get('DEPTH_RANGE', [1.0, 70.0]))
        self.stride = float(cfg.get('ANCHOR_STRIDE', 2.0))
        self.slice_width = float(cfg.get('SLICE_WIDTH', 4.0))
        if not (0 <= d0 < d1) or self.stride <= 0 or self.slice_width < self.stride:
            raise ValueError(f'ALPIAnnotator: need 0 <= DEPTH_RANGE[0] < DEPTH_RANGE[1], ANCHOR_STRIDE > 0 and '
                             f'SLICE_WIDTH >= ANCHOR_STRIDE; got {[d0, d1]}, {self.stride}, {self.slice_width}')
        self.register_buffer('anchors', torch.arange(d0, d1 + 1e-6, self.stride, dtype=torch.float32))
        self.num_anchors = int(self.anchors.numel())
        self.num_heading_bin = int(cfg.get('NUM_HEADING_BIN', 12))
        self.point_features = int(cfg.get('POINT_FEATURES', 1))
        point_mlp = [int(c) for c in cfg.get('POINT_MLP', [64, 128])]
        depth_conv = [int(c) for c in cfg.get('DEPTH_CONV', [128, 128])]
        obj = cfg.get('OBJECTNESS', {}) or {}
        self.pos_radius = float(obj.get('POS_RADIUS', 1.5))
        self.ignore_radius = float(obj.get('IGNORE_RADIUS', 3.0))
        self.pos_radius_2d = float(obj.get('POS_RADIUS_2D', 0.12))
        self.ignore_radius_2d = float(obj.get('IGNORE_RADIUS_2D', 0.3))
        self.focal_alpha = float(obj.get('ALPHA', 0.25))
        self.focal_gamma = float(obj.get('GAMMA', 2.0))
        loss_cfg = cfg.get('LOSS_CONFIG', {}) or {}
        weights = dict(loss_cfg.get('WEIGHTS', {}) or {})
        unknown = sorted(set(weights) - set(_WEIGHT_KEYS))
        if unknown:
            raise ValueError(f'MODEL.LOSS_CONFIG.WEIGHTS: unknown keys {unknown}; known: {list(_WEIGHT_KEYS)}')
        self.loss_weights = {**_DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}
        self.projection_mode = str(loss_cfg.get('PROJECTION_LOSS', 'depth_invariant'))
        self.use_size_prior_loss = bool(loss_cfg.get('USE_SIZE_PRIOR_LOSS', False))
        # Box regression of 3D-supervised samples on every anchor within REG_RADIUS m of the
        # target (not only the objectness positives): at labelling time the top anchor of a real
        # object may sit a few metres off (its objectness is learnt from the 2D depth hint).
        self.reg_radius = float(loss_cfg.get('REG_RADIUS', 0.0))
        # 2D loss on 'top' (the top-objectness anchor only) or 'positive' anchors too; PROJ_2D_GRAD
        # 'centre' lets it move only the centre (heading and size are learnt from 3D targets and
        # the size prior), 'centre_heading' the centre and heading (not the size, which the 2D
        # box trades against depth), 'all' every box parameter.
        # PROJ_2D_GRAD may be one mode or {class: mode} (classes not named: 'all'): a car's length
        # trades against its depth in the 2D box, a pedestrian's tight prior size does not.
        self.proj_2d_anchors = str(loss_cfg.get('PROJ_2D_ANCHORS', 'positive'))
        grad = loss_cfg.get('PROJ_2D_GRAD', 'all')
        if isinstance(grad, dict):
            unknown = sorted(set(grad) - set(self.class_names))
            if unknown:
                raise ValueError(f'MODEL.LOSS_CONFIG.PROJ_2D_GRAD: classes {unknown} not in CLASS_NAMES '
                                 f'{self.class_names}')
            self.proj_2d_grad = {c: str(grad.get(c, 'all')) for c in self.class_names}
        else:
            self.proj_2d_grad = {c: str(grad) for c in self.class_names}
        bad = sorted({m for m in self.proj_2d_grad.values() if m not in ('all', 'centre', 'centre_heading')})
        if self.proj_2d_anchors not in ('top', 'positive') or bad:
            raise ValueError(f"MODEL.LOSS_CONFIG: PROJ_2D_ANCHORS must be 'top' or 'positive' and PROJ_2D_GRAD "
                             f"'all', 'centre' or 'centre_heading' (or {{class: mode}}), got "
                             f"{self.proj_2d_anchors!r}, {grad!r}")
        # per class: may the 2D loss move the size / the heading
        self.register_buffer('proj_2d_moves_size', torch.tensor(
            [self.proj_2d_grad[c] == 'all' for c in self.class_names]), persistent=False)
        self.register_buffer('proj_2d_moves_heading', torch.tensor(
            [self.proj_2d_grad[c] != 'centre' for c in self.class_names]), persistent=False)

        # point MLP over (x, y, z - z_k, |z|/scale, features); a slice feature is its max-pool
        # plus log(1 + count), then the class one-hot and the anchor depth.
        self.point_net = _mlp([4 + self.point_features] + point_mlp)
        cin = point_mlp[-1] + 1 + self.num_class + 1
        convs = []
        for cout in depth_conv:
            convs += [nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.depth_net = nn.Sequential(*convs)
        nb = self.num_heading_bin
        self.head = nn.Conv1d(cin, 1 + 3 + 2 * nb + 3, 1)
        nn.init.constant_(self.head.bias[:1], -2.0)  # objectness starts near the focal prior

    # ------------------------------------------------------------------ helpers
    def update_global_step(self):
        self.global_step += 1

    @property
    def mode(self):
        return 'TRAIN' if self.training else 'TEST'

    def _slice_features(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3 + C) -> (B, C', K) slice features by scatter max over slice memberships."""
        B, P, _ = points.shape
        K = self.num_anchors
        z = points[:, :, 2]
        half = self.slice_width / 2
        # each point belongs to the anchors within half a slice width: at most ceil(w / s) + 1
        span = int(torch.ceil(torch.tensor(self.slice_width / self.stride)).item()) + 1
        first = torch.ceil((z - half - self.anchors[0]) / self.stride).long()
        feats, seg = [], []
        extra = points[:, :, 3:3 + self.point_features]
        if extra.shape[2] < self.point_features:
            extra = F.pad(extra, (0, self.point_features - extra.shape[2]))
        batch_idx = torch.arange(B, device=points.device)[:, None].expand(B, P)
        for j in range(span):
            k = first + j
            zk = self.anchors[k.clamp(0, K - 1)]
            ok = (k >= 0) & (k < K) & ((z - zk).abs() <= half)
            rel = torch.stack([points[:, :, 0], points[:, :, 1], z - zk, z / 40.0], dim=2)
            feats.append(torch.cat([rel, extra], dim=2)[ok])
            seg.append((batch_idx * K + k)[ok])
        x = torch.cat(feats, dim=0)
        seg = torch.cat(seg, dim=0)
        C = self.point_net[-3].out_channels
        out = points.new_zeros(B * K, C)
        count = points.new_zeros(B * K)
        if x.shape[0]:
            f = self.point_net(x.t()[None])[0].t()  # (N, C), ReLU output >= 0, so 0 = empty
            out = out.scatter_reduce(0, seg[:, None].expand(-1, C), f, reduce='amax', include_self=True)
            count = count.index_add(0, seg, torch.ones_like(seg, dtype=count.dtype))
        out = torch.cat([out, torch.log1p(count)[:, None]], dim=1)
        return out.view(B, K, C + 1).transpose(1, 2)

    def predict_anchors(self, batch_dict) -> Dict[str, torch.Tensor]:
        points = batch_dict['points']
        if points.dim() != 3:
            raise ValueError(f'ALPIAnnotator: points must be (B, P, 3 + C) frustum points, got {tuple(points.shape)}')
        cls = batch_dict['cls_index'].long()
        B, K = points.shape[0], self.num_anchors
        x = self._slice_features(points.float())
        onehot = F.one_hot(cls, self.num_class).float()[:, :, None].expand(B, self.num_class, K)
        depth = (self.anchors / 40.0)[None, None].expand(B, 1, K)
        x = self.depth_net(torch.cat([x, onehot, depth], dim=1))
        out = self.head(x).transpose(1, 2)  # (B, K, ch)
        nb = self.num_heading_bin
        obj = out[..., 0]
        centre = torch.stack([out[..., 1], out[..., 2], self.anchors[None] + out[..., 3]], dim=2)
        hcls = out[..., 4:4 + nb]
        hres = torch.tanh(out[..., 4 + nb:4 + 2 * nb])
        size_res = out[..., 4 + 2 * nb:4 + 2 * nb + 3]
        prior = self.prior_mean[cls][:, None].expand(B, K, 3)
        sizes = decode_size(size_res, prior)
        hbin = hcls.argmax(dim=2)
        heading = decode_heading(hbin, hres.gather(2, hbin[..., None])[..., 0], nb, normalize=True)
        boxes = torch.cat([centre, sizes, heading[..., None]], dim=2)  # (B, K, 7) frustum frame
        return {'objectness': obj, 'centre': centre, 'heading_cls': hcls, 'heading_res': hres,
                'size_res': size_res, 'boxes': boxes, 'prior': prior}

    def objectness_targets(self, batch_dict) -> torch.Tensor:
        """(B, K) in {1 positive, 0 negative, -1 ignore}, from the 3D target's depth where a
        3D target exists (proxies, pseudo-labels), else from the 2D-evidence depth hint."""
        a = self.anchors[None]
        has3d = batch_dict['box3d_mask'] > 0.5
        z3 = batch_dict['box3d'][:, 2:3]
        hint = batch_dict['depth_hint'][:, None]
        d3 = (a - z3).abs()
        d2 = (a - hint).abs() / hint.clamp(min=1.0)
        pos = torch.where(has3d[:, None], d3 <= self.pos_radius, d2 <= self.pos_radius_2d)
        ign = torch.where(has3d[:, None], d3 <= self.ignore_radius, d2 <= self.ignore_radius_2d)
        tgt = torch.zeros_like(d3)
        tgt[ign] = -1.0
        tgt[pos] = 1.0
        # always one positive: the nearest anchor
        near = torch.where(has3d, d3.argmin(dim=1), d2.argmin(dim=1))
        tgt[torch.arange(tgt.shape[0], device=tgt.device), near] = 1.0
        return tgt

    def to_lidar(self, boxes_f: torch.Tensor, batch_dict, rows: torch.Tensor) -> torch.Tensor:
        return frustum_boxes_to_lidar_torch(boxes_f, batch_dict['rot'][rows], batch_dict['origin'][rows],
                                            batch_dict['yaw'][rows], batch_dict['rect_to_lidar'][rows])

    # ------------------------------------------------------------------ loss
    def get_loss(self, batch_dict, pred) -> tuple:
        w = self.loss_weights
        tgt = self.objectness_targets(batch_dict)
        valid = (tgt >= 0).float()
        pos = tgt > 0.5
        obj_l = (sigmoid_focal(pred['objectness'], pos.float(), self.focal_alpha, self.focal_gamma) * valid).sum()
        obj_l = obj_l / pos.float().sum().clamp(min=1.0)
        tb = {'loss_objectness': obj_l.item()}
        total = w['objectness'] * obj_l

        has3d = batch_dict['box3d_mask'] > 0.5
        reg = pos
        if self.reg_radius > 0:
            reg = pos | ((self.anchors[None] - batch_dict['box3d'][:, 2:3]).abs() <= self.reg_radius)
        rows, cols = torch.nonzero(reg & has3d[:, None], as_tuple=True)
        if rows.numel():
            gt = batch_dict['box3d'][rows]
            # per-row weights: 1 for exact targets (proxies, pastes), pseudo_3d for pseudo-labels
            rw = torch.where(batch_dict['sample_type'][rows].long() == PSEUDO,
                             torch.full_like(gt[:, 0], w['pseudo_3d']), torch.ones_like(gt[:, 0]))

            def wmean(x):
                return (x * rw).sum() / rw.numel()
            centre_l = wmean(smooth_l1(pred['centre'][rows, cols] - gt[:, 0:3], 1.0 / 9).sum(dim=1))
            hc, hr = heading_bin_loss(pred['heading_cls'][rows, cols], pred['heading_res'][rows, cols], gt[:, 6])
            hc, hr = wmean(hc), wmean(hr)
            size_t = encode_size(gt[:, 3:6], pred['prior'][rows, cols])
            size_l = wmean(smooth_l1(pred['size_res'][rows, cols] - size_t, 1.0 / 9).sum(dim=1))
            # corner loss on the differentiable box (soft heading: the residual of the target bin)
            box = pred['boxes'][rows, cols].clone()
            nb = self.num_heading_bin
            tbin, _ = encode_heading(gt[:, 6], nb)
            box[:, 6] = decode_heading(tbin, pred['heading_res'][rows, cols].gather(1, tbin[:, None])[:, 0], nb, True)
            box[:, 3:6] = decode_size(pred['size_res'][rows, cols], pred['prior'][rows, cols])
            box[:, 0:3] = pred['centre'][rows, cols]
            corner_l = wmean(corner_loss(self.to_lidar(box, batch_dict, rows), self.to_lidar(gt, batch_dict, rows)))
            total = total + w['center'] * centre_l + w['heading_cls'] * hc + w['heading_res'] * hr \
                + w['size'] * size_l + w['corner'] * corner_l
            tb.update(loss_center=centre_l.item(), loss_heading_cls=hc.item(),
                      loss_heading_res=hr.item(), loss_size=size_l.item(), loss_corner=corner_l.item())

        stype = batch_dict['sample_type'].long()
        real = (stype == REAL) | (stype == PSEUDO)
        top = pred['objectness'].argmax(dim=1)
        sel = pos.clone() if self.proj_2d_anchors == 'positive' else torch.zeros_like(pos)
        sel[torch.arange(sel.shape[0], device=sel.device), top] = True
        rows2, cols2 = torch.nonzero(sel & real[:, None], as_tuple=True)
        if rows2.numel() and w['proj_2d'] > 0:
            box = pred['boxes'][rows2, cols2].clone()
            box[:, 3:6] = decode_size(pred['size_res'][rows2, cols2], pred['prior'][rows2, cols2])
            cls2 = batch_dict['cls_index'][rows2].long()
            size_ok = self.proj_2d_moves_size[cls2][:, None]
            head_ok = self.proj_2d_moves_heading[cls2][:, None]
            box = torch.cat([box[:, :3], torch.where(size_ok, box[:, 3:6], box[:, 3:6].detach()),
                             torch.where(head_ok, box[:, 6:], box[:, 6:].detach())], dim=1)
            proj_l = box_projection_loss(self.to_lidar(box, batch_dict, rows2), batch_dict['lidar_to_rect'][rows2],
                                         batch_dict['P2'][rows2], batch_dict['box2d'][rows2], mode=self.projection_mode)
            total = total + w['proj_2d'] * proj_l
            tb['loss_proj_2d'] = proj_l.item()
        # the 2D loss turns any size error into a depth error (a box 6 % too tall sits 6 % too far);
        # the depth hint (LiDAR surface, DATA_CONFIG.DEPTH_HINT) anchors real objects' depth directly
        hint_rows = sel & (stype == REAL)[:, None]
        if w['depth_hint'] > 0 and hint_rows.any():
            r3, c3 = torch.nonzero(hint_rows, as_tuple=True)
            dz = pred['centre'][r3, c3, 2] - batch_dict['depth_hint'][r3]
            hint_l = smooth_l1(dz, 1.0).mean()
            total = total + w['depth_hint'] * hint_l
            tb['loss_depth_hint'] = hint_l.item()
        if self.use_size_prior_loss and real.any() and w['size_prior'] > 0:
            ridx = torch.nonzero(real, as_tuple=True)[0]
            sizes = decode_size(pred['size_res'][ridx, top[ridx]], pred['prior'][ridx, top[ridx]])
            sp = size_prior_loss(sizes, batch_dict['cls_index'][ridx].long(), self.prior_mean, self.prior_std)
            total = total + w['size_prior'] * sp
            tb['loss_size_prior'] = sp.item()
        tb['loss'] = total.item()
        return total, tb

    # ------------------------------------------------------------------ forward
    def forward(self, batch_dict):
        pred = self.predict_anchors(batch_dict)
        if self.training:
            loss, tb = self.get_loss(batch_dict, pred)
            return {'loss': loss}, tb, {}
        return self.post_processing(batch_dict, pred), {}

    @torch.no_grad()
    def post_processing(self, batch_dict, pred) -> List[dict]:
        """One box per frustum: the top objectness anchor's box, score = its probability.
        With batch_dict['depth_prior'] (B,) (>= 0 where known) the search is restricted to the
        anchors within batch_dict['depth_window'] metres of it (the refinement stage)."""
        obj = pred['objectness']
        B = obj.shape[0]
        if 'depth_prior' in batch_dict:
            prior = torch.as_tensor(batch_dict['depth_prior'], dtype=obj.dtype, device=obj.device)[:, None]
            window = float(batch_dict.get('depth_window', 3.0))
            outside = ((self.anchors[None] - prior).abs() > window) & (prior >= 0)
            outside[outside.all(dim=1)] = False  # prior beyond the anchors: no restriction
            obj = obj.masked_fill(outside, float('-inf'))
        top = obj.argmax(dim=1)
        rows = torch.arange(B, device=top.device)
        boxes_f = pred['boxes'][rows, top]
        scores = torch.sigmoid(pred['objectness'][rows, top])
        boxes_l = self.to_lidar(boxes_f, batch_dict, rows)
        labels = batch_dict['cls_index'].long() + 1
        batch_dict['pred_boxes_frustum'] = boxes_f
        return [{'pred_boxes': boxes_l[i:i + 1], 'pred_scores': scores[i:i + 1], 'pred_labels': labels[i:i + 1],
                 'pred_boxes_frustum': boxes_f[i:i + 1]} for i in range(B)]
