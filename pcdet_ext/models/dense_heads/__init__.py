from .anchor_head_template import AnchorHeadTemplate
from .anchor_head_single import AnchorHeadSingle

__all__ = {'AnchorHeadTemplate': AnchorHeadTemplate, 'AnchorHeadSingle': AnchorHeadSingle}
