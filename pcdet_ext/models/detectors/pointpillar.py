"""PointPillars (Lang et al. 2019): PillarVFE -> PointPillarScatter -> 2D backbone -> anchor head."""
from ...registry import register
from .second_net import _SingleStageDetector


@register('detector')
class PointPillar(_SingleStageDetector):
    pass
