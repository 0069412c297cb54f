"""Core-set (Sener & Savarese 2018): greedy k-center on pooled frame features.

The labelled frames are the initial centres; each step picks the pool frame farthest from every
centre so far. A frame's score is its distance to the nearest centre when it is picked."""
from __future__ import annotations

import numpy as np

from ...registry import register
from .base import QueryStrategy, greedy_stop, order_by_score, stack_features


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :], 0.0)


@register('query_strategy')
class Coreset(QueryStrategy):
    DEFAULTS = {'reserve_factor': 2.0}

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        ids = sorted(summaries)
        x = stack_features(summaries, ids, 'frame_feature', 'Coreset')
        lab_ids = sorted(labelled)
        if lab_ids:
            c = stack_features(labelled, lab_ids, 'frame_feature', 'Coreset (labelled)')
            mind = np.sqrt(_sq_dist(x, c).min(axis=1))
        else:  # no centre yet: the first pick is a seeded random frame
            mind = np.full(len(ids), np.inf)
        expected = self.expected(summaries)
        picked, scores = [], {}
        free = np.ones(len(ids), dtype=bool)
        first_random = not lab_ids
        while free.any() and not greedy_stop(picked, expected, budget_boxes, self.reserve_factor):
            if first_random:
                i = int(rng.integers(len(ids)))
                first_random = False
                scores[ids[i]] = float('inf')
            else:
                cand = np.where(free, mind, -1.0)
                i = int(np.argmax(cand))
                scores[ids[i]] = float(mind[i])
            picked.append(ids[i])
            free[i] = False
            mind = np.minimum(mind, np.sqrt(_sq_dist(x, x[i:i + 1])[:, 0]))
        rest = [ids[i] for i in np.where(free)[0]]
        scores.update({f: float(mind[ids.index(f)]) for f in rest})
        finite = [v for v in scores.values() if np.isfinite(v)]
        cap = (max(finite) if finite else 0.0) + 1.0
        scores = {f: (v if np.isfinite(v) else cap) for f, v in scores.items()}
        return picked + order_by_score(rest, scores), scores, {}
