from .vfe_template import VFETemplate
from .mean_vfe import MeanVFE
from .pillar_vfe import PillarVFE

__all__ = {'VFETemplate': VFETemplate, 'MeanVFE': MeanVFE, 'PillarVFE': PillarVFE}
