"""Detectors and their parts, with OpenPCDet's module names (so checkpoints' state_dict keys match).

build_network(model_cfg, num_class, dataset) builds MODEL.NAME from the detector registry.
(Moving a collated batch to torch is the runtime's job: pcdet_ext.runtime.batch.load_data_to_gpu.)
"""
from .. import registry
# Importing the sub-packages registers every module under its class name.
from . import backbones_2d, backbones_3d, dense_heads, detectors, map_to_bev, vfe  # noqa: F401
from .detectors import Detector3DTemplate, PointPillar, SECONDNet  # noqa: F401


def build_network(model_cfg, num_class, dataset):
    try:
        cls = registry.get('detector', model_cfg.NAME)
    except KeyError as e:
        raise KeyError(f'MODEL.NAME: {e.args[0]}') from None
    return cls(model_cfg=model_cfg, num_class=num_class, dataset=dataset)


__all__ = ['build_network', 'Detector3DTemplate', 'SECONDNet', 'PointPillar']
