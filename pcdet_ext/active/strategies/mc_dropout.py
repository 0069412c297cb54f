"""MC-dropout: frames whose detections vary most over K stochastic (dropout) passes.

Each box of the deterministic pass is matched in every stochastic pass to the same-class box of
highest BEV IoU (>= match_iou; score 0 when nothing matches); a frame's score is the mean over
its boxes of the score variance across passes."""
from __future__ import annotations

import numpy as np

from ...registry import register
from .base import QueryStrategy, order_by_score


def matched_scores(boxes, labels, pass_boxes, pass_scores, pass_labels, match_iou: float) -> np.ndarray:
    """Per deterministic box, the score of its match in one stochastic pass (0 if none)."""
    out = np.zeros(len(boxes))
    if len(boxes) == 0 or len(pass_boxes) == 0:
        return out
    from ...ops.iou3d_nms import boxes_iou_bev
    iou = np.asarray(boxes_iou_bev(np.asarray(boxes, np.float32), np.asarray(pass_boxes, np.float32)))
    iou = np.where(np.asarray(labels)[:, None] == np.asarray(pass_labels)[None, :], iou, 0.0)
    best = iou.argmax(axis=1)
    ok = iou[np.arange(len(boxes)), best] >= match_iou
    out[ok] = np.asarray(pass_scores)[best[ok]]
    return out


@register('query_strategy')
class MCDropout(QueryStrategy):
    DEFAULTS = {'match_iou': 0.3}

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        scores = {}
        for f, s in summaries.items():
            if not s.mc_passes:
                raise ValueError(f'MCDropout: frame {f} has no stochastic passes; score the pool '
                                 f'with score_pool(..., mc_passes=K) (K >= 2)')
            if len(s.mc_passes) < 2:
                raise ValueError(f'MCDropout: frame {f} has {len(s.mc_passes)} pass; need K >= 2')
            if s.num_boxes == 0:
                scores[f] = 0.0
                continue
            m = np.stack([matched_scores(s.boxes, s.labels, p['boxes'], p['scores'], p['labels'],
                                         self.match_iou) for p in s.mc_passes])
            scores[f] = float(m.var(axis=0).mean())
        return order_by_score(list(summaries), scores), scores, {}
