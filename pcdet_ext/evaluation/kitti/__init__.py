"""The KITTI object benchmark protocol (image boxes, BEV, 3D, AOS; R11 and R40)."""
from .annotations import (empty_annotation, get_label_anno, get_label_annos, parse_label_lines,
                          read_ids, validate_annos)
from .eval import do_eval, get_mAP, get_mAP_R40, get_official_eval_result

__all__ = ['empty_annotation', 'get_label_anno', 'get_label_annos', 'parse_label_lines',
           'read_ids', 'validate_annos', 'do_eval', 'get_mAP', 'get_mAP_R40',
           'get_official_eval_result']
