"""Weighted smooth-L1 box regression loss with per-code weights."""
from typing import Optional, Sequence

import torch
import torch.nn as nn


def smooth_l1_loss(diff: torch.Tensor, beta: float) -> torch.Tensor:
    if beta < 1e-5:
        return torch.abs(diff)
    n = torch.abs(diff)
    return torch.where(n < beta, 0.5 * n ** 2 / beta, n - 0.5 * beta)


class WeightedSmoothL1Loss(nn.Module):
    def __init__(self, beta: float = 1.0 / 9.0, code_weights: Optional[Sequence[float]] = None):
        super().__init__()
        self.beta = beta
        # Not persistent: OpenPCDet checkpoints do not carry it, but it must follow .to(device).
        cw = torch.tensor(code_weights, dtype=torch.float32) if code_weights is not None else None
        self.register_buffer('code_weights', cw, persistent=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor, weights: Optional[torch.Tensor] = None):
        """input/target (B, #anchors, #codes), weights (B, #anchors) -> unreduced (B, #anchors, #codes)."""
        target = torch.where(torch.isnan(target), input, target)  # NaN targets are ignored
        diff = input - target
        if self.code_weights is not None:
            if self.code_weights.numel() != diff.shape[-1]:
                raise ValueError(f'LOSS_WEIGHTS.code_weights has {self.code_weights.numel()} entries '
                                 f'but boxes are encoded with {diff.shape[-1]} codes')
            diff = diff * self.code_weights.view(1, 1, -1).to(diff.dtype)
        loss = smooth_l1_loss(diff, self.beta)
        if weights is not None:
            loss = loss * weights.unsqueeze(-1)
        return loss
