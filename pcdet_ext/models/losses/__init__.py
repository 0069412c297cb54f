"""Detection losses with OpenPCDet's semantics (per-element, weighted; the caller reduces)."""
from .focal_loss import SigmoidFocalClassificationLoss, sigmoid_cross_entropy_with_logits
from .smooth_l1 import WeightedSmoothL1Loss, smooth_l1_loss
from .cross_entropy import WeightedCrossEntropyLoss

__all__ = ['SigmoidFocalClassificationLoss', 'sigmoid_cross_entropy_with_logits', 'WeightedSmoothL1Loss',
           'smooth_l1_loss', 'WeightedCrossEntropyLoss']
