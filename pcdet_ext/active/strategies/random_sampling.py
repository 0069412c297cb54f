"""Random: a seeded permutation of the pool (the baseline every strategy must beat)."""
from __future__ import annotations

from ...registry import register
from .base import QueryStrategy


@register('query_strategy')
class Random(QueryStrategy):
    DEFAULTS: dict = {}

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        ids = sorted(summaries)
        perm = rng.permutation(len(ids))
        ranked = [ids[i] for i in perm]
        # score: position in the draw, so that the ranking reads best-first like the others
        scores = {f: float(len(ids) - i) for i, f in enumerate(ranked)}
        return ranked, scores, {}
