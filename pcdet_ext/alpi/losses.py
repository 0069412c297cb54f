"""ALPI losses (torch, differentiable): the 2D projection loss, the size-prior loss, the corner
loss, and the heading bin / size residual encodings the annotator's heads regress.

2D projection loss. The predicted box's 8 corners are projected with the real camera and the
enclosing box (x1, y1, x2, y2) is compared with the label's 2D box. `depth_invariant` divides
each side's error by the target box width (x1, x2) or height (y1, y2) before smooth-L1, so a
given relative 2D error costs the same at 10 m and at 40 m; `pixel` is the plain smooth-L1 in
pixels (the ablation), which weighs near objects (large boxes) far more than distant ones.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..geometry import boxes_to_corners_3d, project_boxes_lidar_to_image_torch

PROJECTION_LOSS_MODES = ('depth_invariant', 'pixel')


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == 'mean':
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == 'sum':
        return loss.sum()
    if reduction == 'none':
        return loss
    raise ValueError(f'reduction must be mean, sum or none, got {reduction!r}')


def smooth_l1(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Elementwise smooth-L1 of an error x (0.5 x^2 / beta below beta, |x| - beta / 2 above)."""
    if beta <= 0:
        return x.abs()
    ax = x.abs()
    return torch.where(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


# ----------------------------------------------------------------------------- 2D projection

def box2d_side_errors(pred_box2d: torch.Tensor, target_box2d: torch.Tensor,
                      normalize: bool = True, min_size: float = 1.0) -> torch.Tensor:
    """(N, 4) side errors pred - target; divided by the target width (x sides) or height
    (y sides) when normalize. min_size (px) guards the division for degenerate targets."""
    diff = pred_box2d - target_box2d
    if not normalize:
        return diff
    w = (target_box2d[:, 2] - target_box2d[:, 0]).clamp(min=min_size)
    h = (target_box2d[:, 3] - target_box2d[:, 1]).clamp(min=min_size)
    return diff / torch.stack([w, h, w, h], dim=1)


def projection_loss_2d(pred_box2d: torch.Tensor, target_box2d: torch.Tensor,
                       mode: str = 'depth_invariant', beta: Optional[float] = None,
                       weights: Optional[torch.Tensor] = None, reduction: str = 'mean') -> torch.Tensor:
    """Smooth-L1 between 2D boxes (N, 4), summed over the 4 sides -> per box, then reduced.

    beta defaults to 0.05 (a 5 % relative error) for depth_invariant and 1 px for pixel.
    weights (N,) scale each box (e.g. 0 for proxies, which get 3D losses instead).
    """
    if mode not in PROJECTION_LOSS_MODES:
        raise ValueError(f'2D projection loss mode must be one of {PROJECTION_LOSS_MODES}, got {mode!r}')
    if pred_box2d.shape != target_box2d.shape or pred_box2d.ndim != 2 or pred_box2d.shape[1] != 4:
        raise ValueError(f'projection_loss_2d: pred {tuple(pred_box2d.shape)} and target '
                         f'{tuple(target_box2d.shape)} must both be (N, 4)')
    normalize = mode == 'depth_invariant'
    beta = (0.05 if normalize else 1.0) if beta is None else beta
    err = box2d_side_errors(pred_box2d, target_box2d.to(pred_box2d.dtype), normalize=normalize)
    loss = smooth_l1(err, beta).sum(dim=1)
    if weights is not None:
        loss = loss * weights.to(loss.dtype)
    return _reduce(loss, reduction)


def projected_boxes_2d(boxes_lidar: torch.Tensor, lidar_to_rect: torch.Tensor,
                       P2: torch.Tensor) -> torch.Tensor:
    """(N, 7) LiDAR boxes -> (N, 4) enclosing image_2 boxes of their projected corners
    (unclipped, differentiable); per-box (N, 4, 4) / (N, 3, 4) matrices allowed."""
    return project_boxes_lidar_to_image_torch(boxes_lidar, lidar_to_rect, P2)


def box_projection_loss(boxes_lidar: torch.Tensor, lidar_to_rect: torch.Tensor, P2: torch.Tensor,
                        target_box2d: torch.Tensor, mode: str = 'depth_invariant',
                        beta: Optional[float] = None, weights: Optional[torch.Tensor] = None,
                        reduction: str = 'mean') -> torch.Tensor:
    """The ALPI 2D loss from predicted LiDAR boxes: project, enclose, compare per side."""
    pred = projected_boxes_2d(boxes_lidar, lidar_to_rect, P2)
    # A corner just in front of the camera projects far away; keep such outliers finite.
    pred = torch.nan_to_num(pred, nan=0.0, posinf=1e6, neginf=-1e6)
    return projection_loss_2d(pred, target_box2d, mode=mode, beta=beta, weights=weights,
                              reduction=reduction)


# ----------------------------------------------------------------------------- size prior

def size_prior_loss(pred_sizes: torch.Tensor, cls_index: torch.Tensor, prior_mean: torch.Tensor,
                    prior_std: torch.Tensor, mode: str = 'batch', min_count: int = 2,
                    beta: float = 1.0) -> torch.Tensor:
    """Keep predicted sizes (N, 3: l, w, h) consistent with the class priors (C, 3).

    mode 'batch': per class with at least min_count boxes in the batch, smooth-L1 of the
    normalised deviation of the batch mean from the prior mean, (m - mu) / sigma, plus that of
    the batch std from the prior std, (s - sigma) / sigma; averaged over the classes present.
    It constrains the distribution, not each box, so individual sizes stay free to fit.
    mode 'nll': mean per-box Gaussian negative log-likelihood 0.5 ((d - mu) / sigma)^2.
    Returns a 0-dim tensor (0 when no class qualifies, still part of the graph).
    """
    if pred_sizes.ndim != 2 or pred_sizes.shape[1] != 3:
        raise ValueError(f'size_prior_loss: pred_sizes must be (N, 3), got {tuple(pred_sizes.shape)}')
    mean = prior_mean.to(pred_sizes)
    std = prior_std.to(pred_sizes)
    cls_index = cls_index.long()
    if mode == 'nll':
        if pred_sizes.shape[0] == 0:
            return pred_sizes.sum() * 0
        z = (pred_sizes - mean[cls_index]) / std[cls_index]
        return 0.5 * (z * z).sum(dim=1).mean()
    if mode != 'batch':
        raise ValueError(f"size_prior_loss: mode must be 'batch' or 'nll', got {mode!r}")
    terms = []
    for c in torch.unique(cls_index).tolist():
        sizes = pred_sizes[cls_index == c]
        if sizes.shape[0] < min_count:
            continue
        m = sizes.mean(dim=0)
        s = sizes.std(dim=0, unbiased=False)
        terms.append(smooth_l1((m - mean[c]) / std[c], beta).sum() +
                     smooth_l1((s - std[c]) / std[c], beta).sum())
    if not terms:
        return pred_sizes.sum() * 0
    return torch.stack(terms).mean()


# ----------------------------------------------------------------------------- corner loss

def corner_loss(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, beta: float = 1.0,
                reduction: str = 'none') -> torch.Tensor:
    """Mean smooth-L1 corner distance between (N, 7) LiDAR-convention boxes, taking the
    smaller of the distances to the target and to the target turned by pi (a box reversed in
    heading has the same corners up to order). Per box (N,) with reduction 'none'."""
    pred_c = boxes_to_corners_3d(pred_boxes)
    gt_c = boxes_to_corners_3d(gt_boxes)
    flipped = gt_boxes.clone()
    flipped[:, 6] = flipped[:, 6] + math.pi
    gt_cf = boxes_to_corners_3d(flipped)
    dist = torch.minimum(torch.norm(pred_c - gt_c, dim=2), torch.norm(pred_c - gt_cf, dim=2))
    return _reduce(smooth_l1(dist, beta).mean(dim=1), reduction)


# ----------------------------------------------------------------------------- heading bins

def _bin_width(num_bins: int) -> float:
    if num_bins < 1:
        raise ValueError(f'NUM_HEADING_BIN must be >= 1, got {num_bins}')
    return 2 * math.pi / num_bins


def encode_heading(angle: torch.Tensor, num_bins: int = 12, normalize: bool = False
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Angle -> (bin index, residual from the bin centre). Bin k is centred on k * 2 pi / NB;
    the residual lies in [-pi / NB, pi / NB) (in [-1, 1) of that half-width when normalize)."""
    width = _bin_width(num_bins)
    shifted = torch.remainder(angle + width / 2, 2 * math.pi)
    bins = torch.floor(shifted / width).long().clamp(max=num_bins - 1)
    residual = shifted - bins.to(angle.dtype) * width - width / 2
    return bins, residual / (width / 2) if normalize else residual


def decode_heading(bins: torch.Tensor, residual: torch.Tensor, num_bins: int = 12,
                   normalize: bool = False) -> torch.Tensor:
    """(bin index, residual) -> angle in [-pi, pi)."""
    width = _bin_width(num_bins)
    res = residual * (width / 2) if normalize else residual
    angle = bins.to(res.dtype) * width + res
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def heading_bin_loss(bin_logits: torch.Tensor, residuals: torch.Tensor, target_angle: torch.Tensor,
                     beta: float = 1.0 / 9) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-box (cross-entropy over bins, smooth-L1 of the target bin's normalised residual).
    bin_logits, residuals: (N, NB); residuals are normalised (half bin width = 1)."""
    num_bins = bin_logits.shape[1]
    bins, res = encode_heading(target_angle, num_bins, normalize=True)
    cls = F.cross_entropy(bin_logits, bins, reduction='none')
    pred_res = residuals.gather(1, bins[:, None])[:, 0]
    return cls, smooth_l1(pred_res - res.to(pred_res.dtype), beta)


def decode_heading_logits(bin_logits: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
    """Heading from the most likely bin and its normalised residual."""
    bins = bin_logits.argmax(dim=1)
    return decode_heading(bins, residuals.gather(1, bins[:, None])[:, 0], bin_logits.shape[1],
                          normalize=True)


# ----------------------------------------------------------------------------- size residual

def encode_size(sizes: torch.Tensor, prior_mean: torch.Tensor) -> torch.Tensor:
    """Size residual to the class prior, relative: (d - mu) / mu (F-PointNet's encoding)."""
    return (sizes - prior_mean) / prior_mean


def decode_size(residual: torch.Tensor, prior_mean: torch.Tensor, min_size: float = 0.05) -> torch.Tensor:
    """Inverse of encode_size, floored at min_size metres so a box never turns inside out."""
    return (prior_mean * (1 + residual)).clamp(min=min_size)
