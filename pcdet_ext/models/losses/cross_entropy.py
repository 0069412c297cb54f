"""Weighted softmax cross-entropy, used for the direction (heading bin) classifier."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class WeightedCrossEntropyLoss(nn.Module):
    def forward(self, input: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """input (B, #anchors, #bins) logits, target (B, #anchors, #bins) one-hot, weights (B, #anchors)
        -> unreduced (B, #anchors) loss."""
        return F.cross_entropy(input.permute(0, 2, 1), target.argmax(dim=-1), reduction='none') * weights
