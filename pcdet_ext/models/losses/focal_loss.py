"""Sigmoid focal loss (Lin et al. 2017), the anchor classification loss of SECOND/PointPillars."""
import torch
import torch.nn as nn


def sigmoid_cross_entropy_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Numerically stable binary cross-entropy on logits: max(x, 0) - x*t + log(1 + exp(-|x|))."""
    return torch.clamp(logits, min=0) - logits * target + torch.log1p(torch.exp(-torch.abs(logits)))


class SigmoidFocalClassificationLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, alpha: float = 0.25):
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, input: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """input/target (B, #anchors, #classes) logits and one-hot targets; weights (B, #anchors).
        Returns the unreduced (B, #anchors, #classes) loss."""
        p = torch.sigmoid(input)
        alpha_weight = target * self.alpha + (1 - target) * (1 - self.alpha)
        pt = target * (1.0 - p) + (1.0 - target) * p  # probability of the wrong answer
        focal_weight = alpha_weight * torch.pow(pt, self.gamma)
        loss = focal_weight * sigmoid_cross_entropy_with_logits(input, target)
        if weights.dim() == 2 or (weights.dim() == 1 and target.dim() == 2):
            weights = weights.unsqueeze(-1)
        return loss * weights
