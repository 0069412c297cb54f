from .data_processor import DataProcessor, mask_points_by_range
from .point_feature_encoder import PointFeatureEncoder

__all__ = ['DataProcessor', 'PointFeatureEncoder', 'mask_points_by_range']
