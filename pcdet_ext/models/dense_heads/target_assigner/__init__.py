from .anchor_generator import AnchorGenerator
from .axis_aligned_target_assigner import AxisAlignedTargetAssigner

__all__ = ['AnchorGenerator', 'AxisAlignedTargetAssigner']
