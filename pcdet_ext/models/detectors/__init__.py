from .detector3d_template import Detector3DTemplate
from .second_net import SECONDNet
from .pointpillar import PointPillar

__all__ = {'Detector3DTemplate': Detector3DTemplate, 'SECONDNet': SECONDNet, 'PointPillar': PointPillar}
