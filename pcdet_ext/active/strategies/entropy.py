"""Entropy: frames whose boxes the model is least sure of (mean binary entropy of box scores)."""
from __future__ import annotations

import numpy as np

from ...registry import register
from .base import QueryStrategy, binary_entropy, order_by_score


def frame_entropy(scores) -> float:
    """Mean binary entropy of a frame's box scores; 0 for a frame without boxes."""
    scores = np.asarray(scores)
    return float(binary_entropy(scores).mean()) if len(scores) else 0.0


@register('query_strategy')
class Entropy(QueryStrategy):
    DEFAULTS: dict = {}

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        scores = {f: frame_entropy(s.scores) for f, s in summaries.items()}
        return order_by_score(list(summaries), scores), scores, {}
