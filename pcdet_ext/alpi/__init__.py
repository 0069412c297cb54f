"""ALPI: 3D auto-labelling from 2D boxes and per-class size priors (DESIGN.md section 4).

Foundation pieces: weak_labels (2D-only label readers), size_priors, frustum (extraction,
frustum frame, box mapping, on-disk store), losses (2D projection, size prior, corner,
heading bins), pseudo_label_filter. See docs/alpi.md.
"""
from .size_priors import DEFAULT_SIZE_PRIORS, SizePrior, SizePriors
from .weak_labels import (ReadReport, WeakLabel, read_detections_file, read_image_shape,
                          read_kitti_weak_labels, read_weak_label_dir)
from .frustum import (FrustumExtractor, FrustumSample, FrustumStore, FrustumWriter, collate_frustums,
                      frustum_boxes_to_lidar_torch, load_frame_frustums, write_frustum_split)
from .pseudo_label_filter import PseudoLabelFilter
from .proxies import ProxyGenerator, inject_object, scan_object
from .annotator import ALPIAnnotator  # registers the 'ALPIAnnotator' detector
from .dataset import ALPIFrustumDataset  # registers the 'ALPIFrustumDataset' dataset
from .export import evaluate_pseudo_labels, write_label_files


def _declare_pipeline_keys():
    # The ALPI block is read by the pipeline (tools/alpi_label.py), not by tools/train.py.
    from ..config import register_informational_key
    register_informational_key('ALPI')
    register_informational_key('ALPI.*')


_declare_pipeline_keys()
