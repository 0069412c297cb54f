"""Bridge into a real OpenPCDet: put every registered pcdet_ext class into OpenPCDet's `__all__`
dicts in place, so that OpenPCDet's own builders (which look names up in those dicts) build our
modules by config NAME.

OpenPCDet keeps one dict per family, each the `__all__` of a package:
    pcdet.datasets.__all__, pcdet.models.detectors.__all__, pcdet.models.backbones_3d.__all__,
    pcdet.models.backbones_3d.vfe.__all__, pcdet.models.backbones_2d.__all__,
    pcdet.models.backbones_2d.map_to_bev.__all__, pcdet.models.dense_heads.__all__,
    pcdet.models.roi_heads.__all__.
"""
from __future__ import annotations

import importlib
import logging
from typing import Dict, List

from .registry import REGISTRIES

# registry family -> OpenPCDet module whose `__all__` dict holds that family
OPENPCDET_DICTS = {
    'dataset': 'pcdet.datasets',
    'detector': 'pcdet.models.detectors',
    'backbone_3d': 'pcdet.models.backbones_3d',
    'vfe': 'pcdet.models.backbones_3d.vfe',
    'backbone_2d': 'pcdet.models.backbones_2d',
    'map_to_bev': 'pcdet.models.backbones_2d.map_to_bev',
    'dense_head': 'pcdet.models.dense_heads',
    'roi_head': 'pcdet.models.roi_heads',
}

logger = logging.getLogger(__name__)


def _import_our_modules():
    """Importing the packages runs their @register decorators."""
    for mod in ('pcdet_ext.datasets', 'pcdet_ext.models', 'pcdet_ext.active'):
        try:
            importlib.import_module(mod)
        except ImportError as e:  # a half-built tree should not break the bridge for the rest
            logger.warning('pcdet_ext.bridge: could not import %s: %s', mod, e)


def _pcdet_available() -> bool:
    try:
        importlib.import_module('pcdet')
    except ImportError:
        return False
    return True


def register_all() -> Dict[str, List[str]]:
    """Insert every pcdet_ext class into OpenPCDet's dicts. Returns {family: [names inserted now]}
    ({} when OpenPCDet is not importable). Idempotent: a name already pointing at our class is
    left alone; a name OpenPCDet already uses for its own class is kept (theirs wins) and logged."""
    if not _pcdet_available():
        return {}
    _import_our_modules()
    inserted: Dict[str, List[str]] = {}
    for family, module_name in OPENPCDET_DICTS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            logger.warning('pcdet_ext.bridge: %s not importable (%s); %s modules not bridged',
                           module_name, e, family)
            continue
        target = getattr(module, '__all__', None)
        if not isinstance(target, dict):
            logger.warning('pcdet_ext.bridge: %s.__all__ is not a dict; %s modules not bridged',
                           module_name, family)
            continue
        for name, cls in REGISTRIES[family].items():
            if name in target:
                if target[name] is not cls:
                    logger.warning('pcdet_ext.bridge: %s.__all__[%r] already holds %r; kept',
                                   module_name, name, target[name])
                continue
            target[name] = cls
            inserted.setdefault(family, []).append(name)
    return inserted
